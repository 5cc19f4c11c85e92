"""LPGD's perturbed LPs and QPs: predictions verified, the rest to the solvers.

:mod:`cvxlpgd.lpgd.active_set` predicts each perturbed problem's solution from the
forward's active set 𝒜 (symbols as in ``docs/lpgd.md``). A prediction is used only when

* it passes the checks every solver's answer passes (:func:`cvxlpgd.engine.status.verify`:
  relative primal and dual residuals and duality gap, status ``"optimal"``), at the
  solver's tolerance but at most :data:`CHECK_TOLERANCE` (a limit of 1e-8), and
* it is strictly complementary: inactive rows sᵢ > ε(1 + |b'ᵢ| + (|A||x|)ᵢ), active
  inequality rows yᵢ > ε(1 + ‖y‖∞), ε that limit (s_𝒜 = 0 and y = 0 off 𝒜 by
  construction).

Such a point satisfies the KKT conditions of the convex perturbed problem, and with
the nonsingular system it came from it is the unique optimum: the point an exact
solver returns. (A row at zero on both sides is a tie: an LP's optimum can then be a
face, of which a solver returns its own point.) Every other element goes to the
solvers exactly as without prediction (fallback chain, τ fallbacks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cvxlpgd.engine.status import INACCURATE_FACTOR, INACCURATE_FLOOR, verify
from cvxlpgd.lpgd.active_set import ACTIVE_SET, active_rows, predict
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import OPTIMAL, BatchSolution
from cvxlpgd.solvers.parallel import one_blas_thread

#: At most the tolerance predictions are checked at: :func:`~cvxlpgd.engine.status.verify`'s
#: tightest limit (1e-8). A solver's own looser one (Moreau's active-set method: 2e-6)
#: would let a wrong active set pass: its sign violations are of the size of τ·d.
CHECK_TOLERANCE = 1e-10

#: Below this many variables and rows (n + m) Moreau re-solves the perturbed problems
#: of a batch in one call about as fast as predictions are formed and checked, so its
#: default is not to predict them (docs/benchmarks.md: OptNet QP, per-call overhead).
MOREAU_PREDICTION_MIN_SIZE = 100

#: ``resolve(σ, problems, rows) → BatchSolution``: the solvers' verified answers to the
#: perturbed problems ``problems`` (forward elements ``rows``).
Resolve = Callable[[int, ProgramBatch, np.ndarray], BatchSolution]


@dataclass
class ActiveSetCounts:
    """Perturbed problems (element × side) of a backward pass, by who answered.

    Attributes
    ----------
    predicted : int
        Answered by the active set (verified).
    resolved : int
        Tried, and sent to the solvers (not factorizable, or not verified).
    """

    predicted: int = 0
    resolved: int = 0


def worth_predicting(solver: str, structure: ProgramStructure) -> bool:
    """Whether predicting a polyhedral problem's re-solves is expected to save time.

    Parameters
    ----------
    solver : str
        The solver that would re-solve them.
    structure : ProgramStructure
        The perturbed problems' structure.

    Returns
    -------
    bool
        False for Moreau on problems with n + m below :data:`MOREAU_PREDICTION_MIN_SIZE`.
    """
    return solver != "MOREAU" or structure.n + structure.m >= MOREAU_PREDICTION_MIN_SIZE


def _stack(batches: list[ProgramBatch]) -> ProgramBatch:
    """Batches of the same matrices, one after the other (shared matrices stay shared)."""
    if len(batches) == 1:
        return batches[0]
    c, b = np.concatenate([x.c for x in batches]), np.concatenate([x.b for x in batches])

    def join(data):
        if data[0] is None:
            return None
        if batches[0].shared_matrices:
            return np.broadcast_to(data[0][0], (c.shape[0], data[0].shape[1]))
        return np.concatenate(data)

    return ProgramBatch(
        c=c, b=b, A_data=join([x.A_data for x in batches]), P_data=join([x.P_data for x in batches])
    )


def products(batch: ProgramBatch, structure: ProgramStructure, x: np.ndarray):
    """(Ax, |A||x|) for every element (rows of NaN stay NaN)."""
    with np.errstate(invalid="ignore"):
        dense = batch.shared_dense(structure) if batch.batch_size > 1 else None
        if dense is not None:
            with one_blas_thread():
                return x @ dense[0].T, np.abs(x) @ dense[1].T
        if batch.shared_matrices:
            A = batch.element_matrices(structure, 0)[0]
            return (A @ x.T).T, (abs(A) @ np.abs(x).T).T
        pattern = structure.A_pattern
        terms = batch.A_data * x[:, pattern.cols]
        return pattern.sum_by(terms, "rows"), pattern.sum_by(np.abs(terms), "rows")


def check(
    solution: BatchSolution,
    problems: ProgramBatch,
    structure: ProgramStructure,
    active: np.ndarray,
    tolerance: float,
    size: np.ndarray | None = None,
) -> np.ndarray:
    """Which predicted points are the unique optima: the solvers' checks, and strict
    complementarity (inactive rows sᵢ > ε(1 + |b'ᵢ| + (|A||x|)ᵢ), active inequality rows
    yᵢ > ε(1 + ‖y‖∞): a row at zero on both sides is a tie, an LP's optimum may then be
    a whole face, and which of its points a solver returns is not the prediction's).

    Parameters
    ----------
    solution : BatchSolution
        Predicted points (status ``"optimal"``), with s_𝒜 = 0 and y = 0 off 𝒜.
    problems : ProgramBatch
        The perturbed problems.
    structure : ProgramStructure
        Their structure.
    active : numpy.ndarray
        (B, m) the active sets the points were predicted on.
    tolerance : float
        The solver's tolerance (what its own answers are verified at).
    size : numpy.ndarray, optional
        |A||x|, (B, m), if known.

    Returns
    -------
    numpy.ndarray
        (B,) booleans.
    """
    checked = verify(solution, problems, structure, tolerance)
    ok = np.array([status == OPTIMAL for status in checked.status], dtype=bool)
    limit = max(INACCURATE_FACTOR * tolerance, INACCURATE_FLOOR)
    rows = slice(structure.cones.zero, structure.cones.zero + structure.cones.nonneg)
    if size is None:
        size = products(problems, structure, solution.x)[1]
    y, act = solution.y[:, rows], active[:, rows]
    with np.errstate(invalid="ignore"):
        slack = act | (
            solution.s[:, rows] > limit * (1 + np.abs(problems.b[:, rows]) + size[:, rows])
        )
        dual = ~act | (y > limit * (1 + np.abs(y).max(axis=1, initial=0.0)[:, None]))
    return ok & slack.all(axis=1) & dual.all(axis=1)


def solve_sides_with_prediction(
    requests: list[tuple[int, ProgramBatch]],
    structure: ProgramStructure,
    forward: BatchSolution,
    forward_rows: np.ndarray,
    tolerance: float,
    solver: str,
    resolve: Resolve,
    counts: ActiveSetCounts,
) -> list[BatchSolution]:
    """The perturbed problems of each side: predicted where verified, else the solvers'.

    Parameters
    ----------
    requests : list of (int, ProgramBatch)
        ``(σ, perturbed problems)`` per side, the same elements each.
    structure : ProgramStructure
        Their (polyhedral) structure.
    forward : BatchSolution
        The forward solutions of the whole batch.
    forward_rows : numpy.ndarray
        The batch indices of the requests' elements.
    tolerance : float
        The solver's tolerance (verification).
    solver : str
        The solver the pass asks first (``BatchSolution.solver`` of the result).
    resolve : callable
        ``resolve(σ, problems, rows)`` (see :data:`Resolve`) for the elements not
        predicted.
    counts : ActiveSetCounts
        Updated with this call's predicted and re-solved perturbed problems.

    Returns
    -------
    list of BatchSolution
        One per request; the rows the active set answered have ``answered_by``
        :data:`ACTIVE_SET`, no iterations, and the prediction's time shared evenly.
    """
    tic = time.perf_counter()
    sides = [problems for _, problems in requests]
    B = sides[0].batch_size
    active = active_rows(forward.y[forward_rows], forward.s[forward_rows], structure.cones.zero)
    x, y, trusted = predict(sides, structure, active)
    picked = np.flatnonzero(trusted)
    S, k = len(sides), picked.size
    s, ok = np.zeros((S, B, structure.m)), np.zeros((S, B), dtype=bool)
    if k:  # every side's candidates checked at once, as one stacked batch
        stacked = _stack([problems.rows(picked) for problems in sides])
        xs, ys = x[:, picked].reshape(S * k, -1), y[:, picked].reshape(S * k, -1)
        act = np.tile(active[picked], (S, 1))
        Ax, size = products(stacked, structure, xs)
        ss = np.where(act, 0.0, stacked.b - Ax)
        candidate = BatchSolution(
            xs, ys, ss, [OPTIMAL] * (S * k), np.zeros(S * k, np.int64), np.zeros(S * k), ACTIVE_SET
        )
        s[:, picked] = ss.reshape(S, k, -1)
        ok[:, picked] = check(
            candidate, stacked, structure, act, min(tolerance, CHECK_TOLERANCE), size
        ).reshape(S, k)
    points, good = list(zip(x, y, s)), list(ok)
    share = (time.perf_counter() - tic) / (B * len(sides))
    out = []
    for (sign, problems), (px, py, ps), verified in zip(requests, points, good):
        rest = np.flatnonzero(~verified)
        counts.predicted += B - rest.size
        counts.resolved += rest.size
        status, answered = [OPTIMAL] * B, [ACTIVE_SET] * B
        iterations, seconds = np.zeros(B, dtype=np.int64), np.full(B, share)
        if rest.size:
            whole = rest.size == B  # the side's own arrays: a solver's kept workspaces match
            again = resolve(sign, problems if whole else problems.rows(rest), forward_rows[rest])
            px[rest], py[rest], ps[rest] = again.x, again.y, again.s
            iterations[rest] = again.iterations
            seconds[rest] += again.solve_time
            for j, row in enumerate(rest):
                status[row], answered[row] = again.status[j], again.solvers[j]
        out.append(
            BatchSolution(px, py, ps, status, iterations, seconds, solver, answered_by=answered)
        )
    return out
