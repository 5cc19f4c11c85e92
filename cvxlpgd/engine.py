"""Batched forward solves and backward passes (LPGD and exact) of a :class:`ConeTemplate`.

Plain NumPy/SciPy: the torch layer converts tensors and calls :class:`BatchEngine`.
Each batch element is independent, so elements run in parallel on an executor; the
LPGD re-solves reuse the element's forward workspace (same A, P and cones: the
solver's factorization) and warm-start from its forward solution.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cvxlpgd import exact as exact_gradient
from cvxlpgd.compile import ConeTemplate, ProgramBatch
from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd import SIDE_NAMES, DataGradient, perturbed_solve, proximal_quadratic
from cvxlpgd.solvers import get_backend
from cvxlpgd.solvers.base import Solution


@dataclass(frozen=True)
class SolveRecord:
    """Status, iterations and wall time of one solve."""

    status: str
    iterations: int
    solve_time: float

    @classmethod
    def of(cls, solution: Solution) -> SolveRecord:
        return cls(solution.status, int(solution.iterations), float(solution.solve_time))


@dataclass
class SolverStats:
    """Per-element solver statistics of the last call of a layer.

    Attributes
    ----------
    forward : list of SolveRecord
        One record per batch element.
    backward : list of dict
        After an LPGD backward pass: per element, ``{"upper": SolveRecord, "lower": ...}``
        for the sides that were solved. Empty before backward and for exact gradients.
    """

    forward: list[SolveRecord]
    backward: list[dict[str, SolveRecord]] = field(default_factory=list)

    def summary(self) -> dict:
        """Totals: solves, iterations and seconds, forward and backward."""
        back = [r for sides in self.backward for r in sides.values()]
        return {
            "forward_solves": len(self.forward),
            "forward_iterations": sum(r.iterations for r in self.forward),
            "forward_seconds": sum(r.solve_time for r in self.forward),
            "backward_solves": len(back),
            "backward_iterations": sum(r.iterations for r in back),
            "backward_seconds": sum(r.solve_time for r in back),
        }


@dataclass
class ForwardState:
    """What the backward pass needs from the forward pass of one batch."""

    template: ConeTemplate
    batch: ProgramBatch
    solutions: list[Solution]
    workspaces: list = field(default_factory=list)
    adjoints: list = field(default_factory=list)
    stats: SolverStats | None = None

    def __post_init__(self):
        if self.stats is None:
            self.stats = SolverStats([SolveRecord.of(s) for s in self.solutions])

    @property
    def x(self) -> np.ndarray:
        return np.column_stack([s.x for s in self.solutions])

    @property
    def y(self) -> np.ndarray:
        return np.column_stack([s.y for s in self.solutions])


@dataclass
class BatchGradient:
    """Data gradients of a batch, one column per element (as :class:`ProgramBatch`)."""

    dc: np.ndarray
    db: np.ndarray
    dA_data: np.ndarray
    dP_data: np.ndarray | None
    perturbed: list = field(default_factory=list)

    @classmethod
    def stack(cls, grads: list[DataGradient], perturbed=None) -> BatchGradient:
        dP = None if grads[0].dP_data is None else np.column_stack([g.dP_data for g in grads])
        return cls(dc=np.column_stack([g.dc for g in grads]),
                   db=np.column_stack([g.db for g in grads]),
                   dA_data=np.column_stack([g.dA_data for g in grads]), dP_data=dP,
                   perturbed=perturbed or [])


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class BatchEngine:
    """Solve batches of one cone template and differentiate them.

    Parameters
    ----------
    solver : str
        Backend name (see :data:`cvxlpgd.solvers.SOLVERS`).
    settings : dict
        Solver settings, passed to the backend.
    executor : concurrent.futures.Executor, optional
        Where batch elements run. Default: a thread pool with ``workers`` threads.
    workers : int, optional
        Size of the default thread pool (default: all cores).
    """

    def __init__(self, solver: str, settings: dict | None = None,
                 executor: Executor | None = None, workers: int | None = None):
        self.backend = get_backend(solver)
        self.solver = self.backend.name
        self.settings = dict(settings or {})
        self.workers = workers or default_workers()
        self._executor = executor

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.workers,
                                                thread_name_prefix="cvxlpgd")
        return self._executor

    def _map(self, function, count: int) -> list:
        if count == 1 or self.workers == 1:
            return [function(i) for i in range(count)]
        return list(self.executor.map(function, range(count)))

    @staticmethod
    def element_matrices(template: ConeTemplate, batch: ProgramBatch, index: int):
        """A (and P, or None) of batch element ``index`` as CSC matrices."""
        A = template.A_pattern.matrix(batch.A_data[:, index])
        P = None if template.P_pattern is None else template.P_pattern.matrix(
            batch.P_data[:, index])
        return A, P

    # ---- forward ---------------------------------------------------------------------

    def forward(self, template: ConeTemplate, batch: ProgramBatch, *, keep_workspaces: bool
                ) -> ForwardState:
        """Solve every element; keep the workspaces when an LPGD backward will follow.

        Raises
        ------
        SolverError
            Naming the status and the first failing batch index.
        """

        def solve_one(i):
            A, P = self.element_matrices(template, batch, i)
            workspace = self.backend.setup(A, P, template.cones, self.settings)
            solution = workspace.solve(batch.b[:, i].copy(), batch.c[:, i].copy())
            return solution, (workspace if keep_workspaces else None)

        results = self._map(solve_one, batch.batch_size)
        solutions = [r[0] for r in results]
        self._raise_on_failure(solutions)
        return ForwardState(template, batch, solutions,
                            workspaces=[r[1] for r in results] if keep_workspaces else [])

    def forward_exact(self, template: ConeTemplate, batch: ProgramBatch, mode: str
                      ) -> ForwardState:
        """Solve every element through diffcp, keeping its adjoint derivative."""

        def solve_one(i):
            A, _ = self.element_matrices(template, batch, i)
            return exact_gradient.solve_with_adjoint(
                A, batch.b[:, i].copy(), batch.c[:, i].copy(), template.cones,
                solver=self.solver, settings=self.settings,
                mode=mode, batch_index=i)

        results = self._map(solve_one, batch.batch_size)
        return ForwardState(template, batch, [r[0] for r in results],
                            adjoints=[r[1] for r in results])

    def _raise_on_failure(self, solutions: list[Solution]) -> None:
        for i, solution in enumerate(solutions):
            if not solution.ok:
                raise SolverError(
                    f"{self.solver} returned status {solution.status!r} at batch index {i}: "
                    "the problem is infeasible, unbounded or the solver failed for these "
                    "parameter values", status=solution.status, batch_index=i)

    # ---- backward --------------------------------------------------------------------

    def backward_lpgd(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray, *,
                      tau: float, rho: float, mode: str, ds: np.ndarray | None = None
                      ) -> BatchGradient:
        """LPGD data gradients of every element (see :mod:`cvxlpgd.lpgd`)."""
        template, batch = state.template, state.batch

        def one(i):
            A, P = self.element_matrices(template, batch, i)
            forward = state.solutions[i]
            ds_i = None if ds is None else ds[:, i]
            slack_term = ds_i is not None and bool(np.any(ds_i))
            if rho == 0 and state.workspaces:
                workspace = state.workspaces[i]
            else:
                P_new = proximal_quadratic(P, A, template.n, rho, slack_term)
                workspace = self.backend.setup(A, P_new, template.cones, self.settings)
            warm = (forward.x, forward.y, forward.s)

            def solve(sign, c_new, b_new):
                return workspace.solve(b_new, c_new, warm_start=warm)

            return perturbed_solve(
                solve, tau=tau, rho=rho, mode=mode, c=batch.c[:, i], b=batch.b[:, i], A=A,
                dx=dx[:, i], dy=dy[:, i], ds=ds_i, forward=forward,
                A_pattern=template.A_pattern, P_pattern=template.P_pattern, batch_index=i)

        results = self._map(one, batch.batch_size)
        state.stats.backward = [
            {SIDE_NAMES[sign]: SolveRecord.of(sol) for sign, sol in r[1].items()}
            for r in results]
        return BatchGradient.stack([r[0] for r in results], perturbed=[r[1] for r in results])

    def backward_exact(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray
                       ) -> BatchGradient:
        """diffcp's exact adjoint for every element."""

        def one(i):
            return exact_gradient.adjoint_data_gradient(state.adjoints[i], dx[:, i], dy[:, i],
                                                        state.template.A_pattern)

        return BatchGradient.stack(self._map(one, state.batch.batch_size))


