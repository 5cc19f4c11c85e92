"""The protocols every conic solver backend implements: one program, or a batch.

A backend solves cone programs in SCS form

    minimize  ½ xᵀPx + cᵀx   subject to  Ax + s = b,  s ∈ K

and returns the primal-dual triple (x, y, s) in the same convention, whatever the
solver's own ordering (PSD triangles, exponential-cone coordinates) is.

Two levels:

* A :class:`Workspace` is created once for fixed (P, A, K) — the expensive part,
  where the solver factorizes — and then solves for any number of (b, c) right-hand
  sides, optionally warm-started. SCS, Clarabel and ECOS implement it.
* A :class:`BatchSolver` is built for one *structure* (cones and the patterns of A
  and P) and solves a whole :class:`~cvxlpgd.problem.program.ProgramBatch` per call,
  returning a :class:`BatchSolution` with one row per element. Moreau implements it
  natively; the per-element solvers through :mod:`cvxlpgd.solvers.pooled`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramBatch

#: Normalized statuses. ``OK_STATUSES`` carry a usable solution.
OPTIMAL = "optimal"
OPTIMAL_INACCURATE = "optimal_inaccurate"
INFEASIBLE = "infeasible"
UNBOUNDED = "unbounded"
INFEASIBLE_INACCURATE = "infeasible_inaccurate"
UNBOUNDED_INACCURATE = "unbounded_inaccurate"
FAILED = "failed"
OK_STATUSES = frozenset({OPTIMAL, OPTIMAL_INACCURATE})
#: Solved, but not to the requested accuracy (iteration limit, ``AlmostSolved``, ...).
INACCURATE_STATUSES = frozenset({OPTIMAL_INACCURATE})

#: The interior-point solvers' status names (Clarabel's, which Moreau shares) →
#: normalized status. A solver that stopped early (iteration or time limit, no more
#: progress) returns its last iterate: "inaccurate", for the checks of
#: :mod:`cvxlpgd.engine.status` to judge (used as optimal if accurate at the default
#: tolerance, failed if it violates the constraints); anything else (numerical error)
#: is FAILED.
INTERIOR_POINT_STATUS = {
    "Solved": OPTIMAL,
    "AlmostSolved": OPTIMAL_INACCURATE,
    "InsufficientProgress": OPTIMAL_INACCURATE,
    "MaxIterations": OPTIMAL_INACCURATE,
    "MaxTime": OPTIMAL_INACCURATE,
    "PrimalInfeasible": INFEASIBLE,
    "DualInfeasible": UNBOUNDED,
    "AlmostPrimalInfeasible": INFEASIBLE_INACCURATE,
    "AlmostDualInfeasible": UNBOUNDED_INACCURATE,
}


@dataclass
class Solution:
    """Primal-dual solution of one cone program, in SCS convention.

    Attributes
    ----------
    x, y, s : numpy.ndarray
        Primal variable, dual variable (y ∈ K*) and slack (s ∈ K).
    status : str
        One of the normalized statuses of this module.
    iterations : int
        Solver iterations.
    solve_time : float
        Wall time of the solve in seconds.
    """

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    status: str
    iterations: int = 0
    solve_time: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the status carries a usable (possibly inaccurate) solution."""
        return self.status in OK_STATUSES


class Workspace(Protocol):
    """A solver set up (factorized) for fixed P, A and cones."""

    def solve(
        self,
        b: np.ndarray,
        c: np.ndarray,
        warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> Solution:
        """Solve for right-hand side ``b`` and cost ``c``; warm start is ``(x, y, s)``."""
        ...


class SolverBackend(Protocol):
    """Factory of workspaces for one solver."""

    name: str
    supports_quadratic: bool
    supports_warm_start: bool
    solves_independently: bool

    def setup(
        self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims, settings: dict
    ) -> Workspace:
        """Create a workspace. ``P`` is full symmetric (both triangles) or None."""
        ...

    @staticmethod
    def tolerance(settings: dict | None, structure=None) -> float:
        """The relative accuracy ``settings`` ask of the solver (Moreau's batch solver
        declares it too): what verification holds its solutions to.

        Parameters
        ----------
        settings : dict or None
            The user's settings (over the backend's defaults).
        structure : ProgramStructure, optional
            The problem's structure, where the accuracy depends on it (Moreau's
            active-set method for small QPs).

        Returns
        -------
        float
        """
        ...


#: A warm start for a batch: ``(X, Y, S)`` with one row per element.
BatchPoint = tuple[np.ndarray, ...]


@dataclass
class BatchSolution:
    """Primal-dual solutions of a batch, one row per element, in SCS convention.

    Attributes
    ----------
    x : numpy.ndarray
        Primal solutions, (B, n).
    y, s : numpy.ndarray
        Duals (y ∈ K*) and slacks (s ∈ K), (B, m).
    status : list of str
        Normalized status per element.
    iterations : numpy.ndarray
        Solver iterations per element.
    solve_time : numpy.ndarray
        Seconds per element (a batched solver's wall time shared evenly).
    solver : str
        The solver that was asked first.
    answered_by : list of str, optional
        Per element, the solver whose answer this row holds (another solver's after a
        fallback: :mod:`cvxlpgd.engine.fallback`); None when ``solver`` answered them all.
    """

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    status: list[str]
    iterations: np.ndarray
    solve_time: np.ndarray
    solver: str
    answered_by: list[str] | None = None

    @property
    def batch_size(self) -> int:
        """Number of elements B."""
        return self.x.shape[0]

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the elements that carry a usable solution."""
        return np.array([status in OK_STATUSES for status in self.status], dtype=bool)

    @property
    def solvers(self) -> list[str]:
        """Per element, the solver that answered it."""
        if self.answered_by is None:
            return [self.solver] * self.batch_size
        return list(self.answered_by)

    @property
    def point(self) -> BatchPoint:
        """``(x, y, s)``, e.g. to warm-start another solve of the same batch."""
        return self.x, self.y, self.s

    @classmethod
    def from_solutions(cls, solutions: list[Solution], solver: str) -> BatchSolution:
        """Stack per-element solutions, in order."""
        return cls(
            x=np.stack([s.x for s in solutions]),
            y=np.stack([s.y for s in solutions]),
            s=np.stack([s.s for s in solutions]),
            status=[s.status for s in solutions],
            iterations=np.array([s.iterations for s in solutions], dtype=np.int64),
            solve_time=np.array([s.solve_time for s in solutions], dtype=float),
            solver=solver,
        )

    def rows(self, index) -> BatchSolution:
        """The elements ``index`` (slice or index array)."""
        picked = np.arange(self.batch_size)[index]
        return BatchSolution(
            x=self.x[index],
            y=self.y[index],
            s=self.s[index],
            status=[self.status[i] for i in picked],
            iterations=self.iterations[index],
            solve_time=self.solve_time[index],
            solver=self.solver,
            answered_by=None if self.answered_by is None else [self.answered_by[i] for i in picked],
        )

    def element(self, index: int) -> Solution:
        """Element ``index`` as a single :class:`Solution`."""
        return Solution(
            x=self.x[index],
            y=self.y[index],
            s=self.s[index],
            status=self.status[index],
            iterations=int(self.iterations[index]),
            solve_time=float(self.solve_time[index]),
        )


class BatchSolver(Protocol):
    """Solves batches of programs of one structure (cones, patterns of A and P).

    Attributes
    ----------
    name : str
        The solver's name (one of :data:`cvxlpgd.solvers.SOLVERS`).
    supports_warm_start : bool
        Whether ``solve`` uses a warm start.
    solves_independently : bool
        Whether a solve depends on its inputs only. SCS's workspaces carry state (its
        adaptive scale, acceleration memory) from one solve to the next, so a repeated
        backward pass replays the forward solves on fresh workspaces first.
    """

    name: str
    supports_warm_start: bool
    solves_independently: bool

    def solve(
        self, batch: ProgramBatch, warm_start: BatchPoint | None = None, reuse: dict | None = None
    ) -> BatchSolution:
        """Solve every element of ``batch``.

        ``warm_start`` is ``(X, Y, S)`` with one row per element (ignored by solvers
        that cannot warm-start). ``reuse`` is a dictionary owned by the caller in
        which the solver may keep what it set up for these matrices (factorizations)
        and find it again in a later call on a batch with the same ``A_data`` and
        ``P_data`` arrays; it lives as long as the caller keeps it.
        """
        ...


class DifferentiableBatchSolver(BatchSolver, Protocol):
    """A batch solver with its own derivative of its last solve (Moreau's).

    Attributes
    ----------
    solve_count : dict
        Solves so far per batch size: the derivative belongs to the last one.
    """

    solve_count: dict[int, int]

    def backward(
        self, batch_size: int, dx: np.ndarray, dy: np.ndarray, ds: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Data gradients ``dc``, ``db``, ``dA_data``, ``dP_data`` of the last solve of
        ``batch_size`` elements for incoming ``dx``, ``dy`` (and ``ds``)."""
        ...
