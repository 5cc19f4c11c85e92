"""Per-call state: what a backward pass needs from its forward pass, and solver statistics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cvxlpgd.lpgd.active_set import ACTIVE_SET
from cvxlpgd.problem.program import ProgramBatch
from cvxlpgd.problem.template import ConeTemplate
from cvxlpgd.solvers.base import INACCURATE_STATUSES, BatchSolution, BatchSolver


@dataclass(frozen=True)
class SolveRecord:
    """Status, iterations and wall time of one solve.

    Attributes
    ----------
    status : str
        Normalized status: ``"optimal"``, ``"optimal_inaccurate"``, ``"infeasible"``,
        ``"unbounded"``, ``"infeasible_inaccurate"``, ``"unbounded_inaccurate"`` or
        ``"failed"``.
    iterations : int
        Solver iterations.
    solve_time : float
        Wall time of the solve in seconds (a batched solver's time shared evenly); with
        a fallback, of every solver that tried.
    solver : str
        The solver whose answer was used (another than ``SolverStats.solver`` after a
        fallback: :mod:`cvxlpgd.engine.fallback`).
    """

    status: str
    iterations: int
    solve_time: float
    solver: str = ""

    @classmethod
    def rows_of(cls, solution: BatchSolution) -> list[SolveRecord]:
        """One record per element of a batch solution.

        Parameters
        ----------
        solution : BatchSolution
            A batch's solutions.

        Returns
        -------
        list of SolveRecord
        """
        return [
            cls(status, int(it), float(t), name)
            for status, it, t, name in zip(
                solution.status, solution.iterations, solution.solve_time, solution.solvers
            )
        ]


@dataclass
class SolverStats:
    """Per-element solver statistics of the last call of a layer.

    Attributes
    ----------
    forward : list of SolveRecord
        One record per batch element.
    backward : list of dict
        After an LPGD backward pass: per element, ``{"upper": SolveRecord, "lower": ...}``
        for the sides that were solved (empty for an element whose incoming gradient
        was zero: it is not re-solved). Empty before backward and for exact gradients.
    solver : str
        The solver that ran (``solver="auto"`` names its choice here).
    warm_started : bool
        Whether the forward solves started from the previous call's solutions
        (``warm_start=True`` with a solver that can, same batch size).
    exact_backend : str
        The exact derivative the call prepared (``"diffcp"`` or ``"moreau"``: what
        ``exact_backend="auto"`` chose); empty on the LPGD path.
    fallbacks : dict
        After an LPGD backward pass: batch index → how the gradient of an element
        whose perturbed problem failed was formed instead (e.g. ``"upper only,
        tau=0.1"``, ``"central, tau=0.001"``); empty when none failed.
    active_set_predicted : int
        After an LPGD backward pass on an LP or QP: perturbed problems (element × side,
        every attempt) answered from the forward's active set, verified optimal
        (:mod:`cvxlpgd.engine.prediction`; their records name the solver
        ``"active-set"`` and have no iterations).
    active_set_resolved : int
        ... and those the prediction was tried on and the solvers answered (the active
        set changed, or the KKT system was singular: degenerate vertices).
    """

    forward: list[SolveRecord]
    backward: list[dict[str, SolveRecord]] = field(default_factory=list)
    solver: str = ""
    warm_started: bool = False
    fallbacks: dict[int, str] = field(default_factory=dict)
    exact_backend: str = ""
    active_set_predicted: int = 0
    active_set_resolved: int = 0

    @property
    def solver_fallbacks(self) -> dict[int, str]:
        """Batch index → the solver that answered the forward solve of an element that
        :attr:`solver` did not solve (empty when it solved them all)."""
        return {i: r.solver for i, r in enumerate(self.forward) if r.solver != self.solver}

    @property
    def inaccurate(self) -> list[int]:
        """Batch indices whose forward solution is inaccurate (used, with a warning)."""
        return [i for i, r in enumerate(self.forward) if r.status in INACCURATE_STATUSES]

    def summary(self) -> dict:
        """Totals: solves, iterations and seconds, forward and backward.

        Returns
        -------
        dict
            ``forward_solves``, ``forward_iterations``, ``forward_seconds``,
            ``backward_solves``, ``backward_iterations``, ``backward_seconds``, and
            ``backward_predicted``: the backward solves the active set answered.
        """
        back = [r for sides in self.backward for r in sides.values()]
        return {
            "forward_solves": len(self.forward),
            "forward_iterations": sum(r.iterations for r in self.forward),
            "forward_seconds": sum(r.solve_time for r in self.forward),
            "backward_solves": len(back),
            "backward_iterations": sum(r.iterations for r in back),
            "backward_seconds": sum(r.solve_time for r in back),
            "backward_predicted": sum(r.solver == ACTIVE_SET for r in back),
        }


@dataclass
class ForwardState:
    """What the backward pass needs from the forward pass of one batch.

    Attributes
    ----------
    template : ConeTemplate
        The compiled problem.
    batch : ProgramBatch
        Its data (A_data/P_data may be read-only broadcast views when shared).
    solution : BatchSolution
        The forward solutions.
    solver : BatchSolver
        The solver that produced them (LPGD re-solves use it, or one built for P').
    settings : dict
        The solver settings of the call.
    reuse : dict
        What the solver kept for these matrices (factorizations), for the re-solves.
    exact_backend : str or None
        ``"diffcp"`` or ``"moreau"`` when the exact path ran, else None.
    exact_mode : str
        diffcp's mode.
    stats : SolverStats
    moreau_solves : int
        Moreau exact path: the compiled solver's solve count after this forward (its
        derivative belongs to its last solve; a later solve means re-solving first).
    warm_started : bool
        Whether the forward solves were warm-started from the previous call.
    tolerance : float
        The solver's relative tolerance (for verifying re-solves).
    warm_start : tuple of numpy.ndarray or None
        The point the forward solves started from (to replay them exactly).
    call_args : dict
        The call's settings as routed (what fallback solvers take theirs from).
    lpgd_tau : float or None
        τ the forward solve prepared for.
    chain : tuple of str
        The solvers the call may use, in order (:func:`cvxlpgd.engine.fallback.fallback_chain`).
    """

    template: ConeTemplate
    batch: ProgramBatch
    solution: BatchSolution
    solver: BatchSolver
    settings: dict
    reuse: dict = field(default_factory=dict)
    exact_backend: str | None = None
    exact_mode: str = "lsqr"
    stats: SolverStats | None = None
    moreau_solves: int = 0
    warm_started: bool = False
    tolerance: float = 1e-8
    warm_start: tuple | None = None
    call_args: dict = field(default_factory=dict)
    lpgd_tau: float | None = None
    chain: tuple = ()

    def __post_init__(self):
        if self.stats is None:
            self.stats = SolverStats(
                SolveRecord.rows_of(self.solution),
                solver=self.solution.solver,
                warm_started=self.warm_started,
                exact_backend=self.exact_backend or "",
            )

    @property
    def x(self) -> np.ndarray:
        """Primal solutions, (B, n)."""
        return self.solution.x

    @property
    def y(self) -> np.ndarray:
        """Dual solutions, (B, m)."""
        return self.solution.y

    @property
    def s(self) -> np.ndarray:
        """Slacks, (B, m)."""
        return self.solution.s
