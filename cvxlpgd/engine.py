"""Forward solves and backward passes (LPGD and exact) of batches of a compiled problem.

Plain NumPy/SciPy: the torch layer converts tensors and calls :class:`BatchEngine`.
The engine picks the solver (``"auto"``: :mod:`cvxlpgd.selection`), keeps one batch
solver per compiled structure and settings (Moreau's compiled solvers live there),
and runs:

* **forward** — one batched solve; every element's status is checked.
* **LPGD backward** — the perturbed problems of :mod:`cvxlpgd.lpgd` as one batched
  solve per side, warm-started from the forward solution. With ρ = 0 they have the
  forward matrices, so the forward solver's factorizations serve them (a repeated
  backward pass with SCS, whose workspaces carry state from one solve to the next,
  replays the forward on fresh ones first: :meth:`BatchEngine._backward_workspaces`).
  With ρ > 0 a solver built for P' = P + ρI [+ ρAᵀA] does.
* **exact backward** — diffcp's adjoint at the forward solution, per element on the
  executor, or Moreau's implicit derivative of its last solve.
"""

from __future__ import annotations

from concurrent.futures import Executor

import numpy as np

from cvxlpgd.exact import AdjointTask, adjoint_partition, check_diffcp_cones
from cvxlpgd.lpgd import SIDE_NAMES, DataGradient, proximal_batch, proximal_structure
from cvxlpgd.lpgd_batch import LPGDResult, lpgd_backward, warn_fallbacks
from cvxlpgd.parallel import WarmStartMemory, default_workers, run_tasks, split, thread_pool
from cvxlpgd.program import ProgramBatch
from cvxlpgd.selection import choose_solver
from cvxlpgd.solvers import SOLVERS, batch_solver, solver_tolerance
from cvxlpgd.solvers.base import INACCURATE_STATUSES
from cvxlpgd.state import ForwardState, SolveRecord
from cvxlpgd.status import inaccurate_rows, raise_on_failure, report_inaccurate, verify

__all__ = ["BatchEngine"]

class BatchEngine:
    """Solve batches of compiled problems and differentiate them.

    Parameters
    ----------
    solver : str, default "AUTO"
        ``"AUTO"`` or one of :data:`cvxlpgd.solvers.SOLVERS`.
    settings : dict, optional
        Default solver settings (a call may bring others).
    executor : concurrent.futures.Executor, optional
        Where the per-element solvers' partitions (and diffcp's adjoints) run.
        Default: the process-wide thread pool with ``workers`` threads.
    workers : int, optional
        Size of the default thread pool (default: all cores).
    partitions : int, optional
        Partitions of a batch for the per-element solvers (see
        :class:`~cvxlpgd.solvers.pooled.PooledSolver`).
    warm_starts : WarmStartMemory, optional
        Warm-start each forward solve from the solution this memory holds for the
        same batch position, and store the new solutions in it.
    share_factorizations : bool, default True
        Per-element solvers: let elements with the same A and P share a workspace.
    device : str, default "cpu"
        Where Moreau solves.
    """

    def __init__(self, solver: str = "AUTO", settings: dict | None = None, *,
                 executor: Executor | None = None, workers: int | None = None,
                 partitions: int | None = None, warm_starts: WarmStartMemory | None = None,
                 share_factorizations: bool = True, device: str = "cpu"):
        name = solver.upper() if isinstance(solver, str) else solver
        if name != "AUTO" and name not in SOLVERS:
            raise ValueError(f"solver must be 'auto' or one of {SOLVERS}, got {solver!r}")
        self.solver = name
        self.settings = dict(settings or {})
        self.executor = executor
        self.workers = workers
        self.partitions = partitions
        self.warm_starts = warm_starts
        self.share_factorizations = share_factorizations
        self.device = device
        self._solvers: dict[tuple, tuple] = {}

    # ---- solvers ---------------------------------------------------------------------

    def resolve(self, structure, batch_size: int, shared_matrices: bool = True) -> str:
        """The concrete solver for a batch (``"AUTO"`` decides by :func:`choose_solver`)."""
        if self.solver != "AUTO":
            return self.solver
        return choose_solver(structure, batch_size, shared_matrices=shared_matrices,
                             executor=self.executor is not None)[0]

    def settings_for(self, name: str, settings: dict | None) -> dict:
        """Settings of solver ``name``: ``settings`` may map solver names to their own."""
        settings = self.settings if settings is None else settings
        if settings and all(isinstance(k, str) and k.upper() in SOLVERS for k in settings):
            by_solver = {k.upper(): v for k, v in settings.items()}
            return dict(by_solver.get(name, {}))
        return dict(settings)

    def batch_solver(self, owner, variant: str, structure, name: str, settings: dict,
                     enable_grad: bool = False):
        """The cached batch solver of ``owner``'s structure ``variant`` (built once)."""
        key = (id(owner), variant, name, repr(sorted(settings.items())), enable_grad)
        entry = self._solvers.get(key)
        if entry is None:
            solver = batch_solver(name, structure, settings, executor=self.executor,
                                  workers=self.workers, partitions=self.partitions,
                                  share_factorizations=self.share_factorizations,
                                  device=self.device, enable_grad=enable_grad)
            # The owner is kept with its solver, so its id stays its own.
            entry = self._solvers[key] = (owner, solver)
        return entry[1]

    def call_settings(self, name: str, settings: dict | None, lpgd_tau: float | None,
                      exact_backend: str | None) -> dict:
        """The settings solver ``name`` gets for a call.

        The user's settings (see :meth:`settings_for`) over, when an LPGD backward pass
        with ``lpgd_tau`` will follow, :func:`lpgd_tolerances`; with Moreau's exact
        derivative, Moreau's interior-point method (its derivative is smooth; the
        active-set method's, Moreau's choice for small QPs, jumps with the active set).

        Parameters
        ----------
        name : str
            The solver.
        settings : dict or None
            The call's settings (None: the engine's).
        lpgd_tau : float or None
            τ of the LPGD backward pass to come, or None.
        exact_backend : str or None
            The exact derivative to come, or None.

        Returns
        -------
        dict
        """
        call_settings = self.settings_for(name, settings)
        if lpgd_tau is not None:
            call_settings = {**lpgd_tolerances(name, lpgd_tau), **call_settings}
        if exact_backend == "moreau":
            call_settings = {"solver": "ipm", **call_settings}
        return call_settings

    def tolerance(self, template, name: str, settings: dict) -> float:
        """The solver's tolerance for these settings (cached: Moreau's settings objects
        take milliseconds to build).

        Parameters
        ----------
        template : ConeTemplate
            The compiled problem.
        name : str
            The solver.
        settings : dict
            Its settings for the call.

        Returns
        -------
        float
        """
        key = (id(template), "tolerance", name, repr(sorted(settings.items())))
        entry = self._solvers.get(key)
        if entry is None:
            entry = self._solvers[key] = (template, solver_tolerance(name, settings,
                                                                     template.structure))
        return entry[1]

    def clear(self) -> None:
        """Forget every cached solver (Moreau's compiled solvers with them)."""
        self._solvers.clear()

    # ---- forward ---------------------------------------------------------------------

    def forward(self, template, batch: ProgramBatch, *, settings: dict | None = None,
                exact_backend: str | None = None, exact_mode: str = "lsqr",
                lpgd_tau: float | None = None, inaccurate: str = "warn") -> ForwardState:
        """Solve every element of ``batch``.

        Parameters
        ----------
        template : ConeTemplate
            The compiled problem (its conic-only form for ``exact_backend="diffcp"``).
        batch : ProgramBatch
            Its data.
        settings : dict, optional
            The call's solver settings (default: the engine's).
        exact_backend : {None, "diffcp", "moreau"}
            Prepare this exact derivative; None for LPGD or no gradient.
        exact_mode : str, default "lsqr"
            diffcp's mode.
        lpgd_tau : float, optional
            An LPGD backward pass with this τ will follow: interior-point solvers get
            the tolerances of :func:`lpgd_tolerances` (settings the user gave win).
        inaccurate : {"warn", "raise"}
            What inaccurate solutions get (see :mod:`cvxlpgd.status`).

        Returns
        -------
        ForwardState

        Raises
        ------
        SolverError
            Naming the status and the first failing batch index.
        ValueError
            For cones the exact backend cannot differentiate, or Moreau's derivative
            with another solver.
        """
        structure = template.structure
        name = self.resolve(structure, batch.batch_size, batch.shared_matrices)
        if exact_backend == "diffcp":
            check_diffcp_cones(structure.cones)
        if exact_backend == "moreau" and name != "MOREAU":
            raise ValueError(f"exact_backend='moreau' needs solver='MOREAU' (this call solves "
                             f"with {name}); use exact_backend='diffcp'")
        call_settings = self.call_settings(name, settings, lpgd_tau, exact_backend)
        solver = self.batch_solver(template, "forward", structure, name, call_settings,
                                   enable_grad=exact_backend == "moreau")
        tolerance = self.tolerance(template, name, call_settings)
        warm = None
        if self.warm_starts is not None and solver.supports_warm_start:
            warm = self.warm_starts.lookup(template, batch.batch_size)
        reuse: dict = {}
        solution = verify(solver.solve(batch, warm, reuse), batch, structure, tolerance)
        raise_on_failure(solution)
        state = ForwardState(template, batch, solution, solver, call_settings, reuse=reuse,
                             exact_backend=exact_backend, exact_mode=exact_mode,
                             warm_started=warm is not None, tolerance=tolerance,
                             warm_start=warm)
        report_inaccurate([(int(i), solution.status[i], "forward")
                           for i in np.flatnonzero(inaccurate_rows(solution))], inaccurate)
        if exact_backend == "moreau":
            state.moreau_solves = solver.solve_count[batch.batch_size]
        if self.warm_starts is not None and solver.supports_warm_start:
            self.warm_starts.store(template, *solution.point)
        return state

    # ---- backward --------------------------------------------------------------------

    def backward_lpgd(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray, *,
                      tau: float, rho: float, mode: str, ds: np.ndarray | None = None,
                      inaccurate: str = "warn") -> LPGDResult:
        """LPGD data gradients of every element (see :mod:`cvxlpgd.lpgd_batch`).

        Raises
        ------
        SolverError
            When a perturbed problem is not solved even after the fallbacks (side and
            batch index named), or is inaccurate with ``inaccurate="raise"``.
        """
        template, batch = state.template, state.batch
        structure = template.structure
        solver = state.solver
        solve_batch, solve_structure = batch, structure
        if rho > 0:
            slack_term = ds is not None and bool(np.any(ds))
            proximal = self._proximal(template, slack_term)
            solve_structure = proximal.structure
            solver = self.batch_solver(template, f"proximal{int(slack_term)}",
                                       solve_structure, solver.name, state.settings)
            solve_batch = proximal_batch(batch, rho, proximal, structure)
        reuse = self._backward_workspaces(state, solver) if rho == 0 else {}

        def solve_sides(requests, rows):
            warm = None
            if solver.supports_warm_start:
                warm = tuple(array[rows] for array in state.solution.point)
            return [verify(solver.solve(side_batch, warm, reuse), side_batch, solve_structure,
                           state.tolerance) for _, side_batch in requests]

        result = lpgd_backward(solve_sides, solve_batch, structure, state.solution, dx, dy, ds,
                               tau=tau, rho=rho, mode=mode,
                               matrices=template.parametrized_matrices())
        state.stats.backward, entries = _backward_records(batch.batch_size, result)
        state.stats.fallbacks = dict(result.fallbacks)
        warn_fallbacks(result.fallbacks, tau, mode)
        report_inaccurate(entries, inaccurate)
        return result

    @staticmethod
    def _backward_workspaces(state: ForwardState, solver) -> dict:
        """Where the ρ = 0 re-solves find their factorizations.

        The forward's own, normally. A solver that carries state from one solve on a
        workspace to the next (SCS: its acceleration memory and adaptive scale) would
        then make a second backward pass of the same forward start from where the first
        left off; so the first pass takes the forward workspaces, and a later one
        replays the forward solves on fresh workspaces first — the state the first pass
        found — and gets bitwise the same gradient. (The replay costs a factorization
        and a forward solve, paid only by repeated backward passes.)
        """
        if solver.solves_independently:
            return state.reuse
        if not state.reuse.get("used_by_backward"):
            state.reuse["used_by_backward"] = True
            return state.reuse
        fresh: dict = {}
        solver.solve(state.batch, state.warm_start, fresh)
        return fresh

    def _proximal(self, template, slack_term: bool):
        key = (id(template), "proximal-structure", slack_term)
        entry = self._solvers.get(key)
        if entry is None:
            entry = self._solvers[key] = (template, proximal_structure(template.structure,
                                                                       slack_term))
        return entry[1]

    def backward_exact(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray
                       ) -> DataGradient:
        """The exact data gradients of every element (diffcp's adjoint or Moreau's)."""
        if state.exact_backend == "moreau":
            return self._moreau_backward(state, dx, dy)
        structure, batch = state.template.structure, state.batch
        parts = split(batch.batch_size, (self.partitions or default_workers()) * 4)
        tasks = []
        for part in parts:
            rows = slice(part.start, part.stop)
            tasks.append((AdjointTask(structure, batch.rows(rows),
                                      tuple(a[rows] for a in state.solution.point),
                                      dx[rows], dy[rows], state.exact_mode),))
        executor = self.executor
        if executor is None:
            single = len(tasks) == 1 or self.workers == 1
            executor = None if single else thread_pool(self.workers or default_workers())
        blocks = run_tasks(adjoint_partition, tasks, executor)
        return DataGradient(*(np.concatenate(parts) for parts in
                              zip(*(block.parts()[:3] for block in blocks))), dP_data=None)

    def _moreau_backward(self, state: ForwardState, dx, dy) -> DataGradient:
        solver, B = state.solver, state.batch.batch_size
        if solver.solve_count.get(B) != state.moreau_solves:
            # Another batch of this size was solved since: re-solve this one (from its
            # solution) so that Moreau's derivative is this batch's.
            solution = verify(solver.solve(state.batch, state.solution.point), state.batch,
                              state.template.structure, state.tolerance)
            raise_on_failure(solution, what="re-solve for Moreau's derivative")
        raw = solver.backward(B, dx, dy)
        return DataGradient(raw["dc"], raw["db"], raw["dA_data"], raw["dP_data"])


def lpgd_tolerances(solver: str, tau: float) -> dict:
    """Interior-point tolerances for a call whose LPGD backward uses ``tau``.

    LPGD divides differences of solutions by τ, so a solution error δ becomes δ/τ in
    the gradient; and an interior-point solution stopped at tolerance ε can be off by
    about √ε (measured: Moreau's LPGD gradient on a power-cone problem at τ = 1e-4 is
    7 % off with its default 1e-8 and 0.03 % off with 1e-12). Asking δ ≤ 1e-3 τ gives
    ``tol = clip(1e-6 τ², 1e-12, 1e-8)`` for the gap and feasibility tolerances of
    Moreau and Clarabel (1e-8, their default, down to τ = 0.1). Moreau's active-set
    method, its choice for small QPs, is accurate to about 2e-6 only: below τ = 0.01
    Moreau is asked for its interior-point method instead. SCS's default is tightened
    for every call (``eps = 1e-7``); ECOS keeps its 1e-8.

    Parameters
    ----------
    solver : str
        The solver name.
    tau : float
        LPGD's τ.

    Returns
    -------
    dict
        Settings to merge under the user's (empty for SCS and ECOS).
    """
    if solver not in ("MOREAU", "CLARABEL"):
        return {}
    tol = float(np.clip(LPGD_TOLERANCE_PER_TAU_SQUARED * tau ** 2, 1e-12, 1e-8))
    tighter = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
    if solver == "MOREAU" and tau < ACTIVE_SET_MIN_TAU:
        tighter["solver"] = "ipm"
    return tighter


#: Interior-point tolerance per τ² on the LPGD path (see :func:`lpgd_tolerances`).
LPGD_TOLERANCE_PER_TAU_SQUARED = 1e-6
#: Below this τ Moreau's active-set error (≈ 2e-6) would exceed 1e-4 relative after the
#: division by τ: the interior-point method is used instead.
ACTIVE_SET_MIN_TAU = 1e-2


def _backward_records(batch_size: int, result: LPGDResult):
    """Per element, the record of the last solve of each side; and inaccurate entries."""
    records: list[dict[str, SolveRecord]] = [{} for _ in range(batch_size)]
    for indices, sign, solution in result.solves:
        for index, record in zip(indices, SolveRecord.rows_of(solution)):
            records[int(index)][SIDE_NAMES[sign]] = record
    entries = [(i, record.status, f"LPGD {side}") for i, sides in enumerate(records)
               for side, record in sides.items() if record.status in INACCURATE_STATUSES]
    return records, entries
