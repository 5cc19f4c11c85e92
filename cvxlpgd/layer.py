"""The PyTorch layer: a thin autograd wrapper around :class:`cvxlpgd.engine.BatchEngine`."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np
import torch

from cvxlpgd.compile import ConeTemplate, compile_problem, validate_problem
from cvxlpgd.diagnostics import warn_if_zero_gradient
from cvxlpgd.engine import BatchEngine, ForwardState, SolverStats
from cvxlpgd.exact import validate_exact_mode
from cvxlpgd.lpgd import validate_lpgd_options
from cvxlpgd.parallel import WarmStartMemory
from cvxlpgd.solvers import SOLVERS, get_backend

GRADIENTS = ("lpgd", "exact")
DEFAULT_TAU = 0.1
DEFAULT_SOLVER = "SCS"


@dataclass(frozen=True)
class CallOptions:
    """The options of one call (layer defaults with the call's overrides).

    Attributes
    ----------
    gradient : str
        ``"lpgd"`` or ``"exact"``.
    tau, rho : float
        LPGD's τ and ρ.
    lpgd_mode : str
        ``"central"``, ``"upper"`` or ``"lower"``.
    exact_mode : str
        diffcp's mode.
    solver_args : dict
        Solver settings.
    """

    gradient: str
    tau: float
    rho: float
    lpgd_mode: str
    exact_mode: str
    solver_args: dict

    def validated(self, solver: str) -> CallOptions:
        """Check every option, for the layer's ``solver``.

        Returns
        -------
        CallOptions
            This object, for chaining.

        Raises
        ------
        ValueError
            For an unknown gradient, τ ≤ 0, ρ < 0, unknown modes, or ρ > 0 with a
            solver that takes no quadratic objective (the proximal term is one).
        TypeError
            When ``solver_args`` is not a dict.
        """
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        validate_lpgd_options(self.tau, self.rho, self.lpgd_mode)
        validate_exact_mode(self.exact_mode)
        if not isinstance(self.solver_args, dict):
            raise TypeError(f"solver_args must be a dict, got {type(self.solver_args).__name__}")
        if self.rho > 0 and not get_backend(solver).supports_quadratic:
            quadratic = [name for name in SOLVERS if get_backend(name).supports_quadratic]
            raise ValueError(f"rho > 0 adds a quadratic proximal term, which {solver} does not "
                             f"accept; use rho=0 or one of {tuple(quadratic)}")
        return self


class CvxpyLayer(torch.nn.Module):
    r"""A parametrized CVXPY problem as a differentiable PyTorch layer.

    The problem is compiled once, here, into a parametrized cone program. Calling the
    layer solves it for a batch of parameter values; the backward pass returns the
    LPGD gradient replacement (``gradient="lpgd"``) or diffcp's exact derivative
    (``gradient="exact"``).

    Parameters
    ----------
    problem : cvxpy.Problem
        A DCP problem that follows the DPP rules.
    parameters : sequence of cvxpy.Parameter
        All parameters of ``problem``, in the order the layer receives tensors.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        The outputs: a variable yields its optimal value, a constraint its dual.
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
    solver : {"SCS", "CLARABEL", "ECOS"}, default "SCS"
        Conic solver. SCS reuses its factorization and warm-starts the LPGD re-solves.
    solver_args : dict, optional
        Solver settings (e.g. ``{"eps_abs": 1e-8}`` for SCS).
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
        cannot warm-start (Clarabel, ECOS); used with SCS on either gradient path.

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
                 exact_mode: str = "lsqr", solver: str = DEFAULT_SOLVER,
                 solver_args: dict | None = None, workers: int | None = None,
                 executor=None, warm_start: bool = False):
        super().__init__()
        if not isinstance(solver, str) or solver.upper() not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
        self.options = CallOptions(gradient=gradient, tau=float(tau), rho=float(rho),
                                   lpgd_mode=lpgd_mode, exact_mode=exact_mode,
                                   solver_args=dict(solver_args or {})).validated(solver.upper())
        if workers is not None and (isinstance(workers, bool) or not isinstance(
                workers, (int, np.integer)) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError("executor must be a concurrent.futures.Executor (e.g. a "
                            "ThreadPoolExecutor, a ProcessPoolExecutor or dask's "
                            f"Client.get_executor()), got {type(executor).__name__}")
        if not isinstance(warm_start, bool):
            raise TypeError(f"warm_start must be True or False, got {warm_start!r}")
        self.solver = solver.upper()
        self.problem = problem
        self.parameters_, self.variables_ = validate_problem(problem, parameters, variables)
        self.workers = None if workers is None else int(workers)
        self.executor = executor
        self.warm_start = warm_start
        self._warm_starts = WarmStartMemory()
        self._templates: dict[bool, ConeTemplate] = {}
        self._template(quadratic=self._solves_quadratic("lpgd"))
        self.last_state: ForwardState | None = None

    @property
    def solver_stats(self) -> SolverStats | None:
        """Per-element status, iterations and solve time of the last call (forward, and
        backward once it ran); None before the first call."""
        return None if self.last_state is None else self.last_state.stats

    # ---- configuration -----------------------------------------------------------------

    def _solves_quadratic(self, gradient: str) -> bool:
        return gradient == "lpgd" and get_backend(self.solver).supports_quadratic

    def _template(self, quadratic: bool) -> ConeTemplate:
        if quadratic not in self._templates:
            template = compile_problem(self.problem, self.parameters_, self.variables_,
                                       quadratic=quadratic)
            if quadratic and not template.quadratic:  # no quadratic term: one form serves both
                self._templates[False] = template
            self._templates[quadratic] = template
        return self._templates[quadratic]

    def extra_repr(self) -> str:
        """The layer's configuration, one topic a line, as ``print(layer)`` shows it.

        Returns
        -------
        str
            Parameters and outputs with their shapes (without batch dimension), the
            gradient options (``gradient``, ``tau``, ``rho``, ``lpgd_mode``,
            ``exact_mode``) and the solver options (``solver``, ``solver_args``,
            ``workers``: ``auto`` for all cores, or the executor's class; and
            ``warm_start=True`` when set).
        """
        def shape(dims):
            return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"

        params = ", ".join(f"{p.name()} {shape(p.shape)}" for p in self.parameters_)
        outputs = self._template(self._solves_quadratic("lpgd")).outputs
        # Dual outputs are labelled with the constraint's text, which may span lines.
        outs = ", ".join(f"{' '.join(slot.name.split())} {shape(slot.shape)}"
                         for slot in outputs)
        o = self.options
        executor = getattr(self, "executor", None)
        workers = getattr(self, "workers", None)
        workers = (type(executor).__name__ if executor is not None
                   else "auto" if workers is None else workers)
        return (f"parameters: {params}\noutputs: {outs}\n"
                f"gradient={o.gradient!r}, tau={o.tau:g}, rho={o.rho:g}, "
                f"lpgd_mode={o.lpgd_mode!r}, exact_mode={o.exact_mode!r}\n"
                f"solver={self.solver!r}, solver_args={o.solver_args!r}, workers={workers}"
                + (", warm_start=True" if getattr(self, "warm_start", False) else ""))

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
            batch dimension.
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
        options = replace(
            self.options,
            gradient=self.options.gradient if gradient is None else gradient,
            tau=self.options.tau if tau is None else float(tau),
            rho=self.options.rho if rho is None else float(rho),
            lpgd_mode=self.options.lpgd_mode if lpgd_mode is None else lpgd_mode,
            solver_args={**self.options.solver_args, **(solver_args or {})},
        ).validated(self.solver)
        inputs = _check_inputs(self.parameters_, tensors)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        call = _Call(layer=self, options=options, inputs=inputs, needs_grad=needs_grad)
        if needs_grad:
            return _LayerFunction.apply(call, *tensors)
        with torch.no_grad():
            return call.run_forward()


@dataclass
class _Inputs:
    values: list[np.ndarray]
    batched: list[bool]
    batch_size: int
    dtype: torch.dtype
    device: torch.device


def _check_inputs(parameters, tensors) -> _Inputs:
    if len(tensors) != len(parameters):
        names = ", ".join(p.name() for p in parameters)
        raise ValueError(f"expected {len(parameters)} tensors (for {names}), got {len(tensors)}")
    batch_sizes, values, batched = {}, [], []
    for param, tensor in zip(parameters, tensors):
        name = param.name()
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"parameter {name!r} must be a torch.Tensor, "
                            f"got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"parameter {name!r} must be a floating-point tensor, "
                            f"got {tensor.dtype}")
        shape = tuple(param.shape)
        got = tuple(tensor.shape)
        if got == shape:
            batched.append(False)
        elif len(got) == len(shape) + 1 and got[1:] == shape:
            batched.append(True)
            batch_sizes[name] = got[0]
        else:
            raise ValueError(f"parameter {name!r} must have shape {shape} or (batch, "
                             f"{', '.join(map(str, shape))}), got {got}")
        value = tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {name!r} has non-finite values (nan or inf)")
        _check_attributes(param, value, batched[-1])
        values.append(value)
    if len(set(batch_sizes.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in batch_sizes.items())
        raise ValueError(f"inconsistent batch sizes ({detail})")
    batch_size = next(iter(batch_sizes.values()), 1)
    if batch_size == 0:
        raise ValueError("batch size is 0: nothing to solve")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all parameters must be on one device, got {sorted(map(str, devices))}")
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else tensors[0].dtype
    return _Inputs(values, batched, batch_size, dtype, tensors[0].device)


def _check_attributes(param, value: np.ndarray, batched: bool) -> None:
    """Values must respect the parameter's declared sign/symmetry (DPP relies on them)."""
    name = param.name()
    attrs = param.attributes
    if attrs.get("nonneg") and np.any(value < 0):
        raise ValueError(f"parameter {name!r} is declared nonneg but has negative values")
    if attrs.get("nonpos") and np.any(value > 0):
        raise ValueError(f"parameter {name!r} is declared nonpos but has positive values")
    if any(attrs.get(a) for a in ("symmetric", "PSD", "NSD")):
        matrices = value if batched else value[None]
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), atol=1e-8):
            raise ValueError(f"parameter {name!r} is declared symmetric but its value is not")
        if attrs.get("PSD") and np.min(np.linalg.eigvalsh(matrices)) < -1e-8:
            raise ValueError(f"parameter {name!r} is declared PSD but has a negative eigenvalue")
        if attrs.get("NSD") and np.max(np.linalg.eigvalsh(matrices)) > 1e-8:
            raise ValueError(f"parameter {name!r} is declared NSD but has a positive eigenvalue")


@dataclass
class _Call:
    """One call of the layer: its options, inputs, and (after forward) its state."""

    layer: CvxpyLayer
    options: CallOptions
    inputs: _Inputs
    needs_grad: bool
    state: ForwardState | None = None

    @property
    def exact(self) -> bool:
        return self.needs_grad and self.options.gradient == "exact"

    def run_forward(self) -> tuple[torch.Tensor, ...]:
        layer, inputs = self.layer, self.inputs
        template = layer._template(
            quadratic=not self.exact and get_backend(layer.solver).supports_quadratic)
        theta = template.stack_parameters(inputs.values, inputs.batch_size)
        engine = BatchEngine(layer.solver, self.options.solver_args,
                             executor=layer.executor, workers=layer.workers,
                             warm_starts=layer._warm_starts if layer.warm_start else None)
        batch = engine.program_data(template, theta, inputs.batched)
        if self.exact:
            state = engine.forward_exact(template, batch, self.options.exact_mode)
        else:
            state = engine.forward(template, batch, keep_workspaces=self.needs_grad)
        self.state = state
        self.engine = engine
        layer.last_state = state
        outputs = template.recover_outputs(state.x, state.y)
        return tuple(self._to_torch(out) for out in outputs)

    def run_backward(self, grad_outputs) -> list[torch.Tensor | None]:
        template, inputs, options = self.state.template, self.inputs, self.options
        B = inputs.batch_size
        grads = [None if g is None else g.detach().to("cpu", torch.float64).numpy()
                 for g in grad_outputs]
        dx, dy = template.output_adjoint(grads, B)
        if self.exact:
            data_grad = self.engine.backward_exact(self.state, dx, dy)
        else:
            data_grad = self.engine.backward_lpgd(self.state, dx, dy, tau=options.tau,
                                                  rho=options.rho, mode=options.lpgd_mode)
            # ZeroGradientWarning (once per layer) when τ moved no perturbed solution.
            warn_if_zero_gradient(self.layer, self.state, data_grad, dx, dy, options)
        param_grads = template.parameter_gradient(data_grad.dc, data_grad.db,
                                                  data_grad.dA_data, data_grad.dP_data)
        self.state.data_gradient = data_grad
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
