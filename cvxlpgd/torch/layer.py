"""The PyTorch layer: a ``torch.nn.Module`` around :class:`cvxlpgd.engine.batch.BatchEngine`.

A call goes through the layer's custom operators (:mod:`cvxlpgd.torch.operators`), which is
what makes the layer work under ``torch.compile`` and ``torch.func``. Everything the
layer caches (compiled templates, engines with their solvers, warm starts) is rebuilt
on demand, so that a layer can be copied, pickled and saved (``__getstate__``).
"""

from __future__ import annotations

import json
from concurrent.futures import Executor

import torch

from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.compiled import CompiledProblem
from cvxlpgd.engine.runtime import CallKind, LayerRuntime
from cvxlpgd.engine.state import SolverStats
from cvxlpgd.errors import warn_user
from cvxlpgd.problem.naming import describe_layer, layer_signature
from cvxlpgd.solvers.moreau_backend import moreau_devices
from cvxlpgd.torch.inputs import check_arguments
from cvxlpgd.torch.log_transform import LogTransform
from cvxlpgd.torch.operators import call_layer, register
from cvxlpgd.torch.persistence import RebuildsRuntime


class CvxpyLayer(RebuildsRuntime, CompiledProblem, torch.nn.Module):
    r"""A parametrized CVXPY problem as a differentiable PyTorch layer.

    The problem is compiled once, here, into a parametrized cone program. Calling the
    layer solves it for a batch of parameter values; the backward pass returns the
    LPGD gradient replacement (``gradient="lpgd"``) or the exact derivative
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
    exact_backend : {"auto", "active-set", "diffcp", "moreau"}, default "auto"
        Which exact derivative ``gradient="exact"`` computes: from the forward
        solution's active set (LPs and QPs: one linear solve per element, any solver;
        elements where the active set does not determine the derivative go to
        Moreau's for QPs and diffcp's for LPs), diffcp's (the reference; any solver, no
        power cones) or Moreau's own implicit derivative (``solver="MOREAU"``; quadratic
        objectives and every cone Moreau solves). ``"auto"``: the active set's on LPs
        and QPs, else as :func:`cvxlpgd.engine.exact.choose_exact_backend` says.
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

    fallback : bool, optional
        Solve the elements the solver fails on (or solves inaccurately) again with the
        next installed solver, Moreau → Clarabel → SCS, in the forward pass, LPGD's
        re-solves and the exact path; ``solver_stats`` records which solver answered
        and a :class:`cvxlpgd.SolverFallbackWarning` names them. Default: on for
        ``solver="auto"``, off for a named solver.
    active_set : bool, default True
        LPGD on LPs and QPs: answer the perturbed problems from the forward solution's
        active set (one linear solve per element, checked like a solver's answer; the
        others are re-solved), counted in ``solver_stats.active_set_predicted``; not on
        small problems that Moreau re-solves as fast (n + m < 100). False re-solves
        every perturbed problem, and keeps ``exact_backend="auto"`` off the active set.

    Raises
    ------
    TypeError, ValueError
        For a problem that is not DCP/DPP or has integer/boolean variables, parameters
        or outputs that are not lists or do not match the problem, and invalid options.

    Notes
    -----
    The layer works under ``torch.func`` (``grad``, ``vjp``, ``jacrev``; ``vmap`` is one
    batched call) and ``torch.compile`` (two opaque custom operators, one graph), is
    differentiable to first order only (:class:`cvxlpgd.FirstOrderOnlyError`), and can
    be copied, pickled and saved; its solver caches are rebuilt on first use.

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

    def __init__(
        self,
        problem,
        parameters,
        variables,
        *,
        gradient: str = "lpgd",
        tau: float = 0.1,
        rho: float = 0.0,
        lpgd_mode: str = "central",
        exact_mode: str = "lsqr",
        exact_backend: str = "auto",
        solver: str = "auto",
        solver_args: dict | None = None,
        workers: int | None = None,
        executor=None,
        warm_start: bool = False,
        inaccurate: str = "warn",
        gp: bool = False,
        fallback: bool | None = None,
        active_set: bool = True,
    ):
        super().__init__()
        template = self._configure(
            problem,
            parameters,
            variables,
            gradient=gradient,
            tau=tau,
            rho=rho,
            lpgd_mode=lpgd_mode,
            exact_mode=exact_mode,
            exact_backend=exact_backend,
            solver=solver,
            solver_args=solver_args,
            workers=workers,
            warm_start=warm_start,
            inaccurate=inaccurate,
            gp=gp,
            fallback=fallback,
            active_set=active_set,
        )
        self._signature = layer_signature(problem, self.parameters_, self.variables_, gp)
        self._start_runtime()
        self.executor = executor
        self._log_transform = LogTransform(template) if gp else None
        self._stats: SolverStats | None = None
        self._warned_device = False

    def _start_runtime(self) -> None:
        """The members a layer rebuilds instead of copying (see ``RUNTIME``)."""
        self._runtime = LayerRuntime(self, self.__dict__.get("_executor"))
        self._handle = register(self)

    @property
    def executor(self) -> Executor | None:
        """Where batches are solved (None: the built-in thread pool).

        Assigning another executor (or None) takes effect at the next call: the
        layer's solvers are rebuilt for it, e.g. after a process pool broke.
        """
        return self.__dict__.get("_executor")

    @executor.setter
    def executor(self, executor: Executor | None) -> None:
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                "executor must be a concurrent.futures.Executor (e.g. a "
                "ThreadPoolExecutor, a ProcessPoolExecutor or dask's "
                f"Client.get_executor()) or None, got {type(executor).__name__}"
            )
        self.__dict__["_executor"] = executor
        if "_runtime" in self.__dict__:
            self._runtime.set_executor(executor)

    @property
    def solver_stats(self) -> SolverStats | None:
        """Per-element status, iterations and solve time of the last call (forward, and
        backward once it ran), and which solver ran; None before the first call."""
        return self._stats

    # ---- configuration -----------------------------------------------------------------

    def _where(self, device: torch.device) -> str:
        """Where inputs on ``device`` are solved: Moreau's CUDA backend when it can, else
        the CPU (said once)."""
        if device.type != "cuda":
            return "cpu"
        if self.solver in ("AUTO", "MOREAU") and "cuda" in moreau_devices():
            return "cuda"
        if not self._warned_device:
            self._warned_device = True
            warn_user(
                f"inputs are on {device}, but {self.solver} has no CUDA backend here "
                "(Moreau's CUDA backend: pip install moreau[cuda]); the problems are "
                "solved on the CPU and the results moved back",
                RuntimeWarning,
            )
        return "cpu"

    def _engine(self, device: torch.device) -> BatchEngine:
        """The engine for inputs on ``device``."""
        return self._runtime.engine(self._where(device))

    def extra_repr(self) -> str:
        """The layer's configuration, one topic a line, as ``print(layer)`` shows it.

        Returns
        -------
        str
            Parameters and outputs with their shapes (without batch dimension; an
            unnamed parameter or variable also with its position, e.g.
            ``param2 (3,) [unnamed parameters[1]]``), the gradient options
            (``gradient``, ``tau``, ``rho``, ``lpgd_mode``, ``exact_mode``,
            ``exact_backend``) and the solver options (``solver``, with the solver
            ``"auto"`` chose in the last call, ``solver_args``, ``workers``: ``auto``
            for all cores, or the executor's class; and ``warm_start=True``,
            ``active_set=False`` when set).
        """
        return describe_layer(self)

    # ---- call ----------------------------------------------------------------------------

    def forward(
        self,
        *tensors: torch.Tensor,
        gradient: str | None = None,
        tau: float | None = None,
        rho: float | None = None,
        lpgd_mode: str | None = None,
        solver_args: dict | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Solve the problem for the given parameter values.

        Parameters
        ----------
        *tensors : torch.Tensor
            One tensor per parameter, of the parameter's shape or with one leading
            batch dimension (positive values with ``gp=True``). A problem without
            parameters is called as ``layer()``.
        gradient, tau, rho, lpgd_mode : optional
            Override the layer's options for this call only.
        solver_args : dict, optional
            Settings merged over the layer's for this call only.

        Returns
        -------
        tuple of torch.Tensor
            One tensor per output, in the order of ``variables``; with a leading batch
            dimension iff an input had one. Dtype: float64 if any input is float64, else
            the inputs' float dtype (float64 without inputs); device: the inputs' device.

        Raises
        ------
        TypeError, ValueError
            For wrong counts, types, shapes, batch sizes, meta tensors or non-finite
            values; in the backward pass, for NaN or inf in an incoming gradient.
        cvxlpgd.SolverError
            When a problem of the batch is infeasible, unbounded or not solved.
        cvxlpgd.FirstOrderOnlyError
            When the gradient itself is differentiated (``create_graph=True`` and a
            second backward pass, Hessians) or forward-mode AD is used.
        """
        check_arguments(self._specs, tensors)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        key = self._call_key(
            needs_grad,
            gradient=gradient,
            tau=tau,
            rho=rho,
            lpgd_mode=lpgd_mode,
            solver_args=solver_args,
        )
        if self._log_transform is None:
            return call_layer(self, key, tensors)
        outputs = call_layer(self, key, self._log_transform.inputs(tensors))
        return self._log_transform.outputs(outputs)

    def _call_key(self, needs_grad: bool, **overrides) -> str:
        """A string naming a call's options (what the custom operators receive).

        The layer's own options are ``"layer@<signature>"`` (``"layer+grad@…"`` when the
        call needs a gradient): ``torch.compile`` traces that as a constant. The
        signature (:func:`cvxlpgd.problem.naming.layer_signature`) keeps a graph that
        ``torch.compile`` cached on disk for another layer, which a later process
        registered under the same handle, from being reused for this one.
        """
        if all(value is None for value in overrides.values()):
            return f"layer+grad@{self._signature}" if needs_grad else f"layer@{self._signature}"
        return self._override_key(needs_grad, overrides)

    @torch.compiler.disable
    def _override_key(self, needs_grad: bool, overrides: dict) -> str:
        """The key of a call with per-call overrides: JSON, so that it alone describes
        them (the runtime keeps the kinds of call it decoded, a bounded number). Overrides
        JSON cannot hold (objects in ``solver_args``) are kept under a key made of their
        ``repr``, pinned. Not traced by ``torch.compile`` (a graph break): it validates
        the options and registers them.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        try:
            key = self._signature + json.dumps([needs_grad, overrides], sort_keys=True)
            pinned = False
        except TypeError:
            key, pinned = f"#{self._signature}{overrides!r}:{needs_grad}", True
        if self._runtime.known_kind(key) is None:
            self._runtime.kind(
                key, self.options.override(self.solver, **overrides), needs_grad, pinned=pinned
            )
        return key

    def _call_kind(self, key: str) -> CallKind:
        """What the call a key names prepares (options decoded once per kind of call)."""
        kind = self._runtime.known_kind(key)
        if kind is not None:
            return kind
        if key.startswith("layer"):
            return self._runtime.kind(key, self.options, key.startswith("layer+grad"))
        # A JSON key whose kind was dropped (or made before a copy): decode it again.
        needs_grad, overrides = json.loads(key[len(self._signature) :])
        return self._runtime.kind(key, self.options.override(self.solver, **overrides), needs_grad)
