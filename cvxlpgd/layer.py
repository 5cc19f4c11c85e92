"""The PyTorch layer: a thin autograd wrapper around :class:`cvxlpgd.engine.BatchEngine`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch

from cvxlpgd.compile import compile_problem, validate_problem
from cvxlpgd.diagnostics import warn_if_zero_gradient
from cvxlpgd.engine import BatchEngine
from cvxlpgd.errors import warn_user
from cvxlpgd.geometric import LogTransform
from cvxlpgd.inputs import Inputs, check_inputs
from cvxlpgd.options import DEFAULT_SOLVER, DEFAULT_TAU, CallOptions, validate_solver
from cvxlpgd.parallel import WarmStartMemory
from cvxlpgd.solvers import supports_quadratic
from cvxlpgd.solvers.moreau_backend import moreau_devices
from cvxlpgd.state import ForwardState, SolverStats
from cvxlpgd.template import ConeTemplate


class CvxpyLayer(torch.nn.Module):
    r"""A parametrized CVXPY problem as a differentiable PyTorch layer.

    The problem is compiled once, here, into a parametrized cone program. Calling the
    layer solves it for a batch of parameter values; the backward pass returns the
    LPGD gradient replacement (``gradient="lpgd"``) or diffcp's exact derivative
    (``gradient="exact"``).

    Parameters
    ----------
    problem : cvxpy.Problem
        A DCP problem that follows the DPP rules (``quad_form(x, Q)`` with a PSD
        parameter Q in the objective included), or a DGP problem with ``gp=True``.
    parameters : sequence of cvxpy.Parameter
        All parameters of ``problem``, in the order the layer receives tensors.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        The outputs: a variable yields its optimal value, a constraint its dual. A
        constraint whose dual has several parts (SOC, exponential and power cones) is
        requested part by part, as ``con.dual_variables[i]``.
    gradient : {"lpgd", "exact"}, default "lpgd"
        Which backward pass to use.
    tau : float, default 0.1
        LPGD perturbation strength τ > 0. Small τ approaches the exact derivative;
        larger τ gives informative gradients where the derivative is zero (LPs).
    rho : float, default 0.0
        LPGD proximal weight ρ ≥ 0.
    lpgd_mode : {"central", "upper", "lower"}, default "central"
        Finite difference used by LPGD.
    exact_mode : {"lsqr", "dense", "lsmr"}, default "lsqr"
        diffcp's mode for ``gradient="exact"``.
    exact_backend : {"diffcp", "moreau"}, default "diffcp"
        Which exact derivative ``gradient="exact"`` computes: diffcp's (the reference;
        any solver, no power cones) or Moreau's own implicit derivative
        (``solver="MOREAU"``; quadratic objectives and every cone Moreau solves).
    solver : {"auto", "MOREAU", "SCS", "CLARABEL", "ECOS"}, default "auto"
        Conic solver. ``"auto"`` picks Moreau for batches of small and medium problems
        and SCS for one large problem (or when Moreau is not installed); the choice
        is in ``solver_stats.solver``. Moreau solves a whole batch in one call; SCS
        reuses its factorization and warm-starts the LPGD re-solves.
    solver_args : dict, optional
        Solver settings (e.g. ``{"eps_abs": 1e-8}`` for SCS, ``{"tol_gap_abs": 1e-10}``
        for Moreau); with ``solver="auto"``, a dictionary per solver name
        (``{"SCS": {...}, "MOREAU": {...}}``).
    workers : int, optional
        Threads of the built-in pool that solve a batch in parallel (default: all
        cores). Results do not depend on it.
    executor : concurrent.futures.Executor, optional
        Run the batch on this executor instead of the built-in thread pool: another
        ``ThreadPoolExecutor``, a ``ProcessPoolExecutor``, or a dask.distributed
        ``Client.get_executor()``. Executors other than thread pools receive plain,
        picklable data and keep no solver state between forward and backward (the
        backward re-solves warm-started from the forward solution instead).
    warm_start : bool, default False
        Warm-start each forward solve from the previous call's solution at the same
        batch position (training loops whose parameters change a little per step).
        Ignored when the batch size changed since that call, and for solvers that
        cannot warm-start (Clarabel, ECOS).
    inaccurate : {"warn", "raise"}, default "warn"
        Solutions that are not accurate to the solver's tolerance (iteration limit,
        ``AlmostSolved``, residuals above the tolerance) are used with one
        :class:`cvxlpgd.InaccurateSolutionWarning` per call naming them, or raise
        :class:`cvxlpgd.SolverError` with ``"raise"``.
    gp : bool, default False
        ``problem`` is a geometric program (DGP): it is compiled in log space, and the
        layer takes positive parameter values and returns variables in the user's
        space (``log`` in, ``exp`` out; gradients by the chain rule). Duals are those
        of the log-space problem, as CVXPY's ``dual_value`` after ``solve(gp=True)``.

    Raises
    ------
    TypeError, ValueError
        For a problem that is not DCP/DPP, parameters or outputs that do not match the
        problem, and invalid options.

    Examples
    --------
    >>> import cvxpy as cp, torch
    >>> x = cp.Variable(2)
    >>> c = cp.Parameter(2)
    >>> problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x >= -1])
    >>> layer = CvxpyLayer(problem, parameters=[c], variables=[x])
    >>> (x_star,) = layer(torch.tensor([1.0, -1.0], requires_grad=True))
    >>> torch.allclose(x_star, torch.tensor([-0.5, 0.5]), atol=1e-4)
    True
    """

    def __init__(self, problem, parameters, variables, *, gradient: str = "lpgd",
                 tau: float = DEFAULT_TAU, rho: float = 0.0, lpgd_mode: str = "central",
                 exact_mode: str = "lsqr", exact_backend: str = "diffcp",
                 solver: str = DEFAULT_SOLVER, solver_args: dict | None = None,
                 workers: int | None = None, executor=None, warm_start: bool = False,
                 inaccurate: str = "warn", gp: bool = False):
        super().__init__()
        solver = validate_solver(solver)
        self.options = CallOptions(gradient=gradient, tau=float(tau), rho=float(rho),
                                   lpgd_mode=lpgd_mode, exact_mode=exact_mode,
                                   exact_backend=exact_backend,
                                   solver_args=dict(solver_args or {}),
                                   inaccurate=inaccurate).validated(solver)
        if workers is not None and (isinstance(workers, bool) or not isinstance(
                workers, (int, np.integer)) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError("executor must be a concurrent.futures.Executor (e.g. a "
                            "ThreadPoolExecutor, a ProcessPoolExecutor or dask's "
                            f"Client.get_executor()), got {type(executor).__name__}")
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
        if not isinstance(gp, bool):
            raise TypeError(f"gp must be True or False, got {gp!r}")
        self.gp = gp
        self.solver = solver
        self.problem = problem
        self.parameters_, self.variables_ = validate_problem(problem, parameters, variables,
                                                             gp=gp)
        self.workers = None if workers is None else int(workers)
        self.executor = executor
        self.warm_start = warm_start
        self._warm_starts = WarmStartMemory()
        self._templates: dict[bool, ConeTemplate] = {}
        self._engines: dict[str, BatchEngine] = {}
        template = self._template(quadratic=self._solves_quadratic(None))
        if self.options.gradient == "exact":  # a form it cannot compile fails here, not later
            self._template(quadratic=self._solves_quadratic(self.options.exact_backend))
        self._log_transform = LogTransform(template) if gp else None
        self._stats: SolverStats | None = None
        self._warned_device = False

    @property
    def solver_stats(self) -> SolverStats | None:
        """Per-element status, iterations and solve time of the last call (forward, and
        backward once it ran), and which solver ran; None before the first call."""
        return self._stats

    # ---- configuration -----------------------------------------------------------------

    def _solves_quadratic(self, exact_backend: str | None) -> bool:
        """Whether a call solves the QP form (P kept) or the conic one.

        ``exact_backend`` is the exact derivative the call prepares (None: LPGD or none).
        """
        if exact_backend == "diffcp":
            return False  # diffcp differentiates the conic form only
        return self.solver == "AUTO" or supports_quadratic(self.solver)

    def _template(self, quadratic: bool) -> ConeTemplate:
        if quadratic not in self._templates:
            template = compile_problem(self.problem, self.parameters_, self.variables_,
                                       quadratic=quadratic, gp=self.gp)
            if quadratic and not template.quadratic:  # no quadratic term: one form serves both
                self._templates[False] = template
            self._templates[quadratic] = template
        return self._templates[quadratic]

    def _engine(self, device: torch.device) -> BatchEngine:
        """The engine for inputs on ``device`` (Moreau solves on CUDA when it can)."""
        where = "cpu"
        if device.type == "cuda":
            if self.solver in ("AUTO", "MOREAU") and "cuda" in moreau_devices():
                where = "cuda"
            elif not self._warned_device:
                self._warned_device = True
                warn_user(f"inputs are on {device}, but {self.solver} has no CUDA backend here "
                          "(Moreau's CUDA backend: pip install moreau[cuda]); the problems are "
                          "solved on the CPU and the results moved back", RuntimeWarning)
        engine = self._engines.get(where)
        if engine is None:
            engine = self._engines[where] = BatchEngine(
                self.solver, executor=self.executor, workers=self.workers,
                warm_starts=self._warm_starts if self.warm_start else None, device=where)
        return engine

    def extra_repr(self) -> str:
        """The layer's configuration, one topic a line, as ``print(layer)`` shows it.

        Returns
        -------
        str
            Parameters and outputs with their shapes (without batch dimension), the
            gradient options (``gradient``, ``tau``, ``rho``, ``lpgd_mode``,
            ``exact_mode``, ``exact_backend``) and the solver options (``solver``, with
            the solver ``"auto"`` chose in the last call, ``solver_args``, ``workers``:
            ``auto`` for all cores, or the executor's class; and ``warm_start=True``
            when set).
        """
        def shape(dims):
            return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"

        params = ", ".join(f"{p.name()} {shape(p.shape)}" for p in self.parameters_)
        outputs = self._template(self._solves_quadratic(None)).outputs
        # Dual outputs are labelled with the constraint's text, which may span lines.
        outs = ", ".join(f"{' '.join(slot.name.split())} {shape(slot.shape)}"
                         for slot in outputs)
        o = self.options
        executor = getattr(self, "executor", None)
        workers = getattr(self, "workers", None)
        workers = (type(executor).__name__ if executor is not None
                   else "auto" if workers is None else workers)
        solver = self.solver.lower() if self.solver == "AUTO" else self.solver
        if self.solver == "AUTO" and self._stats is not None:
            solver += f" (last call: {self._stats.solver})"
        return (f"parameters: {params}\noutputs: {outs}\n"
                f"gradient={o.gradient!r}, tau={o.tau:g}, rho={o.rho:g}, "
                f"lpgd_mode={o.lpgd_mode!r}, exact_mode={o.exact_mode!r}, "
                f"exact_backend={o.exact_backend!r}\n"
                f"solver={solver!r}, solver_args={o.solver_args!r}, workers={workers}"
                + (", warm_start=True" if getattr(self, "warm_start", False) else "")
                + (", gp=True" if getattr(self, "gp", False) else ""))

    # ---- call ----------------------------------------------------------------------------

    def forward(self, *tensors: torch.Tensor, gradient: str | None = None,
                tau: float | None = None, rho: float | None = None,
                lpgd_mode: str | None = None, solver_args: dict | None = None
                ) -> tuple[torch.Tensor, ...]:
        """Solve the problem for the given parameter values.

        Parameters
        ----------
        *tensors : torch.Tensor
            One tensor per parameter, of the parameter's shape or with one leading
            batch dimension (positive values with ``gp=True``).
        gradient, tau, rho, lpgd_mode : optional
            Override the layer's options for this call only.
        solver_args : dict, optional
            Settings merged over the layer's for this call only.

        Returns
        -------
        tuple of torch.Tensor
            One tensor per output, in the order of ``variables``; with a leading batch
            dimension iff an input had one. Dtype: float64 if any input is float64, else
            the inputs' float dtype; device: the inputs' device.

        Raises
        ------
        TypeError, ValueError
            For wrong counts, types, shapes, batch sizes or non-finite values.
        cvxlpgd.SolverError
            When a problem of the batch is infeasible, unbounded or not solved.
        """
        options = self.options.override(self.solver, gradient=gradient, tau=tau, rho=rho,
                                        lpgd_mode=lpgd_mode, solver_args=solver_args)
        if self._log_transform is not None:
            tensors = self._log_transform.inputs(tensors)
        inputs = check_inputs(self.parameters_, tensors)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        call = _Call(layer=self, options=options, inputs=inputs, needs_grad=needs_grad)
        if needs_grad:
            outputs = _LayerFunction.apply(call, *tensors)
        else:
            with torch.no_grad():
                outputs = call.run_forward()
        if self._log_transform is not None:
            outputs = self._log_transform.outputs(outputs)
        return outputs


@dataclass
class _Call:
    """One call of the layer: its options, inputs, and (after forward) its state."""

    layer: CvxpyLayer
    options: CallOptions
    inputs: Inputs
    needs_grad: bool
    state: ForwardState | None = None
    engine: BatchEngine | None = None

    @property
    def exact(self) -> bool:
        return self.needs_grad and self.options.gradient == "exact"

    def run_forward(self) -> tuple[torch.Tensor, ...]:
        layer, inputs, options = self.layer, self.inputs, self.options
        exact_backend = options.exact_backend if self.exact else None
        template = layer._template(quadratic=layer._solves_quadratic(exact_backend))
        theta = template.stack_parameters(inputs.values, inputs.batch_size)
        batch = template.program_data(theta, inputs.batched)
        self.engine = layer._engine(inputs.device)
        lpgd = self.needs_grad and options.gradient == "lpgd"
        state = self.engine.forward(template, batch, settings=options.solver_args,
                                    exact_backend=exact_backend, exact_mode=options.exact_mode,
                                    lpgd_tau=options.tau if lpgd else None,
                                    inaccurate=options.inaccurate)
        layer._stats = state.stats
        if self.needs_grad:
            self.state = state
        outputs = template.recover_outputs(state.x, state.y)
        return tuple(self._to_torch(out) for out in outputs)

    def run_backward(self, grad_outputs) -> list[torch.Tensor]:
        state, inputs, options = self.state, self.inputs, self.options
        template = state.template
        B = inputs.batch_size
        grads = [None if g is None else g.detach().to("cpu", torch.float64).numpy()
                 for g in grad_outputs]
        dx, dy = template.output_adjoint(grads, B)
        if self.exact:
            data_grad = self.engine.backward_exact(state, dx, dy)
        else:
            result = self.engine.backward_lpgd(state, dx, dy, tau=options.tau, rho=options.rho,
                                               mode=options.lpgd_mode,
                                               inaccurate=options.inaccurate)
            data_grad = result.gradient
            # ZeroGradientWarning (once per layer) when τ moved no perturbed solution.
            warn_if_zero_gradient(self.layer, state, result, dx, dy, options)
        param_grads = template.parameter_gradient(*data_grad.parts())
        result = []
        for grad, batched in zip(param_grads, inputs.batched):
            grad = grad if batched else grad.sum(axis=0)
            result.append(torch.from_numpy(np.array(grad, order="C")))
        return result

    def _to_torch(self, array: np.ndarray) -> torch.Tensor:
        if not any(self.inputs.batched):
            array = array[0]
        return torch.from_numpy(np.array(array, order="C")).to(
            dtype=self.inputs.dtype, device=self.inputs.device)


class _LayerFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call: _Call, *tensors):
        ctx.call = call
        ctx.tensor_meta = [(t.dtype, t.device) for t in tensors]
        return call.run_forward()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_outputs):
        call: _Call = ctx.call
        if not any(call.inputs.batched):
            grad_outputs = tuple(g.unsqueeze(0) for g in grad_outputs)
        grads = call.run_backward(grad_outputs)
        out = []
        for grad, (dtype, device), needed in zip(grads, ctx.tensor_meta,
                                                 ctx.needs_input_grad[1:]):
            out.append(grad.to(dtype=dtype, device=device) if needed else None)
        return (None, *out)
