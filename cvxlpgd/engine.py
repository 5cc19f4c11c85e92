"""Forward solves and backward passes (LPGD and exact) of batches of a compiled problem.

Plain NumPy/SciPy: the torch layer converts tensors and calls :class:`BatchEngine`.
The engine picks the solver (``"auto"``: :mod:`cvxlpgd.selection`), keeps one batch
solver per compiled structure and settings (Moreau's compiled solvers live there),
and runs:

* **forward** — one batched solve; every element's status is checked.
* **LPGD backward** — the perturbed problems of :mod:`cvxlpgd.lpgd` as one batched
  solve per side, warm-started from the forward solution. With ρ = 0 they have the
  forward matrices, so the forward solver's factorizations serve them (SCS: fresh
  ones per backward pass, because an SCS workspace carries acceleration memory from
  one solve to the next and a second backward pass must give the same result).
  With ρ > 0 a solver built for P' = P + ρI [+ ρAᵀA] does.
* **exact backward** — diffcp's adjoint at the forward solution, per element on the
  executor, or Moreau's implicit derivative of its last solve.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from cvxlpgd.errors import SolverError
from cvxlpgd.exact import AdjointTask, adjoint_partition, check_diffcp_cones
from cvxlpgd.lpgd import (
    SIDE_NAMES,
    DataGradient,
    lpgd_backward,
    proximal_batch,
    proximal_structure,
)
from cvxlpgd.parallel import WarmStartMemory, default_workers, run_tasks, split, thread_pool
from cvxlpgd.program import ProgramBatch
from cvxlpgd.selection import choose_solver
from cvxlpgd.solvers import SOLVERS, batch_solver
from cvxlpgd.solvers.base import BatchSolution
from cvxlpgd.state import ForwardState, SolveRecord

__all__ = ["BatchEngine", "LPGDGradient"]


@dataclass
class LPGDGradient:
    """An LPGD backward pass's result.

    Attributes
    ----------
    gradient : DataGradient
        Data gradients, one row per element.
    sides : dict
        The perturbed solutions by side (+1, −1), rows of the ``active`` elements.
    active : numpy.ndarray
        Batch indices that were re-solved (incoming gradient nonzero).
    """

    gradient: DataGradient
    sides: dict[int, BatchSolution]
    active: np.ndarray


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

    def resolve(self, structure, batch_size: int) -> str:
        """The concrete solver for a batch (``"AUTO"`` decides by :func:`choose_solver`)."""
        if self.solver != "AUTO":
            return self.solver
        return choose_solver(structure, batch_size)[0]

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

    def clear(self) -> None:
        """Forget every cached solver (Moreau's compiled solvers with them)."""
        self._solvers.clear()

    # ---- forward ---------------------------------------------------------------------

    def forward(self, template, batch: ProgramBatch, *, settings: dict | None = None,
                exact_backend: str | None = None, exact_mode: str = "lsqr") -> ForwardState:
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
        name = self.resolve(structure, batch.batch_size)
        if exact_backend == "diffcp":
            check_diffcp_cones(structure.cones)
        if exact_backend == "moreau" and name != "MOREAU":
            raise ValueError(f"exact_backend='moreau' needs solver='MOREAU' (this call solves "
                             f"with {name}); use exact_backend='diffcp'")
        call_settings = self.settings_for(name, settings)
        solver = self.batch_solver(template, "forward", structure, name, call_settings,
                                   enable_grad=exact_backend == "moreau")
        warm = None
        if self.warm_starts is not None and solver.supports_warm_start:
            warm = self.warm_starts.lookup(template, batch.batch_size)
        reuse: dict = {}
        solution = solver.solve(batch, warm, reuse)
        _raise_on_failure(solution)
        state = ForwardState(template, batch, solution, solver, call_settings, reuse=reuse,
                             exact_backend=exact_backend, exact_mode=exact_mode,
                             warm_started=warm is not None)
        if exact_backend == "moreau":
            state.moreau_solves = solver.solve_count[batch.batch_size]
        if self.warm_starts is not None and solver.supports_warm_start:
            self.warm_starts.store(template, *solution.point)
        return state

    # ---- backward --------------------------------------------------------------------

    def backward_lpgd(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray, *,
                      tau: float, rho: float, mode: str, ds: np.ndarray | None = None
                      ) -> LPGDGradient:
        """LPGD data gradients of every element (see :func:`cvxlpgd.lpgd.lpgd_backward`).

        Raises
        ------
        SolverError
            When a perturbed problem is not solved (side and batch index named).
        """
        template, batch = state.template, state.batch
        structure = template.structure
        solver = state.solver
        solve_batch = batch
        if rho > 0:
            slack_term = ds is not None and bool(np.any(ds))
            proximal = self._proximal(template, slack_term)
            solver = self.batch_solver(template, f"proximal{int(slack_term)}",
                                       proximal.structure, solver.name, state.settings)
            solve_batch = proximal_batch(batch, rho, proximal, structure)
        # Solvers whose results depend on earlier solves on a workspace (SCS) get
        # fresh ones per backward pass, so that a second pass repeats the first.
        reuse = state.reuse if rho == 0 and solver.solves_independently else {}

        def solve_sides(requests, rows):
            warm = None
            if solver.supports_warm_start:
                warm = tuple(array[rows] for array in state.solution.point)
            return [solver.solve(side_batch, warm, reuse) for _, side_batch in requests]

        gradient, sides, active = lpgd_backward(
            solve_sides, solve_batch, structure, state.solution, dx, dy, ds, tau=tau,
            rho=rho, mode=mode)
        state.stats.backward = _backward_records(batch.batch_size, sides, active)
        return LPGDGradient(gradient, sides, active)

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
            solution = solver.solve(state.batch, state.solution.point)
            _raise_on_failure(solution)
        raw = solver.backward(B, dx, dy)
        return DataGradient(raw["dc"], raw["db"], raw["dA_data"], raw["dP_data"])


def _raise_on_failure(solution: BatchSolution) -> None:
    failed = np.flatnonzero(~solution.ok)
    if failed.size:
        index = int(failed[0])
        status = solution.status[index]
        raise SolverError(
            f"{solution.solver} returned status {status!r} at batch index {index}: the "
            "problem is infeasible, unbounded or the solver failed for these parameter "
            "values", status=status, batch_index=index)


def _backward_records(batch_size: int, sides: dict[int, BatchSolution],
                      active: np.ndarray) -> list[dict[str, SolveRecord]]:
    records: list[dict[str, SolveRecord]] = [{} for _ in range(batch_size)]
    for sign, solution in sides.items():
        for index, record in zip(active, SolveRecord.rows_of(solution)):
            records[int(index)][SIDE_NAMES[sign]] = record
    return records
