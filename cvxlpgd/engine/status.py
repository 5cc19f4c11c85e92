"""One status policy for every solve: forward, each LPGD side, the exact path, every solver.

* **Checked, not trusted.** A solver's own status is the first word, but a solution
  is also verified here: non-finite numbers make it ``"failed"``; its primal and dual
  residuals, componentwise relative to the terms that make up each row,

      r_p = maxᵢ |Ax + s − b|ᵢ / (1 + (|A||x|)ᵢ + |sᵢ| + |bᵢ|),
      r_d = maxⱼ |Px + Aᵀy + c|ⱼ / (1 + (|P||x|)ⱼ + (|A|ᵀ|y|)ⱼ + |cⱼ|),

  (so that a wrong coordinate cannot hide behind a huge one elsewhere: a cost of 1e20
  in one coordinate leaves the others measured on their own scale), and the relative
  duality gap

      r_g = |xᵀPx + cᵀx + bᵀy| / (1 + |xᵀPx| + |cᵀx| + |bᵀy|)

  must stay below :data:`INACCURATE_FACTOR` × the solver's tolerance (at least
  :data:`INACCURATE_FLOOR`), or a solution
  the solver calls optimal is ``"optimal_inaccurate"``; beyond :data:`FAILED_RESIDUAL`
  (a point that violates the constraints while claiming optimality) it is
  ``"failed"``, whatever its status says. (Huge but finite costs, for example, make
  solvers return "optimal" points that violate the constraints.) A solution the
  solver itself calls inaccurate (an iteration limit, ``AlmostSolved``, no more
  progress) stays inaccurate — unless all
  three measures are at most :data:`PROMOTION_LIMIT` (the default accuracy: a call
  that asked for tighter tolerances and stopped between the two is still optimal).
* **Failures raise.** Infeasible, unbounded and failed elements raise
  :class:`~cvxlpgd.SolverError` naming the status, the batch index and, for LPGD,
  the side — after LPGD's fallbacks (:mod:`cvxlpgd.lpgd.backward`) had their chance.
* **Inaccurate solutions are never used silently**: by default one
  :class:`InaccurateSolutionWarning` per call names the elements and statuses, and
  ``solver_stats`` marks them; ``inaccurate="raise"`` makes them errors.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cvxlpgd.errors import SolverError, warn_user
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import (
    FAILED,
    INACCURATE_STATUSES,
    OK_STATUSES,
    OPTIMAL,
    OPTIMAL_INACCURATE,
    BatchSolution,
)
from cvxlpgd.solvers.parallel import one_blas_thread

#: ``inaccurate=`` choices: warn (default) or raise.
INACCURATE_POLICIES = ("warn", "raise")
#: Residuals above this many times the solver's tolerance mark a solution inaccurate.
INACCURATE_FACTOR = 100.0
#: ... but never below this: the residuals here are measured in double precision on the
#: unscaled data, so a solver asked for 1e-12 cannot be held to 1e-10 by them.
INACCURATE_FLOOR = 1e-8
#: Residuals and gap at or below which a solution the solver calls inaccurate is used as
#: optimal: what its interior-point methods reach at their default tolerance (1e-8).
PROMOTION_LIMIT = 1e-8
#: Relative residual above which a solution is a failure whatever its status says.
FAILED_RESIDUAL = 1e-3


class InaccurateSolutionWarning(UserWarning):
    """Some solutions of a call are not accurate to the solver's tolerance.

    Issued once per call (forward or backward) by :class:`cvxlpgd.CvxpyLayer`,
    naming the batch indices and statuses (iteration limits, ``AlmostSolved``,
    residuals above the tolerance). The values are used; ``solver_stats`` marks them.
    Pass ``inaccurate="raise"`` to the layer to make this an error, or silence it with
    ``warnings.simplefilter("ignore", cvxlpgd.InaccurateSolutionWarning)``.
    """


def validate_inaccurate_policy(policy: str) -> None:
    """Check the ``inaccurate`` option.

    Parameters
    ----------
    policy : str
        ``"warn"`` or ``"raise"``.

    Raises
    ------
    ValueError
        Listing the valid values.
    """
    if policy not in INACCURATE_POLICIES:
        raise ValueError(f"inaccurate must be one of {INACCURATE_POLICIES}, got {policy!r}")


#: Above this many entries (B · nnz) a batch that shares its matrices is checked with one
#: sparse matrix instead of per-entry products (memory); below, the per-entry products
#: need no matrix to be built.
SHARED_PRODUCT_ENTRIES = 2**20


def residuals(
    solution: BatchSolution, batch: ProgramBatch, structure: ProgramStructure
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Component-wise relative primal and dual residuals, and the relative duality gap,
    of every element (formulas above).

    Parameters
    ----------
    solution : BatchSolution
        Solutions of ``batch``.
    batch : ProgramBatch
        The problems.
    structure : ProgramStructure
        Their patterns.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``r_p``, ``r_d`` and ``r_g``, one entry per element.
    """
    A, P = structure.A_pattern, structure.P_pattern
    x, y, s = solution.point
    with np.errstate(invalid="ignore", over="ignore"):
        entries = batch.batch_size * (A.nnz + (0 if P is None else P.nnz))
        dense = batch.shared_dense(structure) if batch.batch_size > 1 else None
        if dense is not None:
            A_dense, A_abs, P_dense, P_abs = dense
            with one_blas_thread():
                Ax, Aty = x @ A_dense.T, y @ A_dense
                Ax_size, Aty_size = np.abs(x) @ A_abs.T, np.abs(y) @ A_abs
                Px = Px_size = np.zeros_like(x)
                if P_dense is not None:
                    Px, Px_size = x @ P_dense.T, np.abs(x) @ P_abs.T
        elif entries > SHARED_PRODUCT_ENTRIES and batch.shared_matrices:
            # One sparse matrix for all: no B × nnz temporaries.
            A_matrix, P_matrix = batch.element_matrices(structure, 0)
            A_abs = abs(A_matrix)
            Ax, Aty = (A_matrix @ x.T).T, (A_matrix.T @ y.T).T
            Ax_size, Aty_size = (A_abs @ abs(x).T).T, (A_abs.T @ abs(y).T).T
            Px = Px_size = np.zeros_like(x)
            if P_matrix is not None:
                Px, Px_size = (P_matrix @ x.T).T, (abs(P_matrix) @ abs(x).T).T
        else:
            x_terms, y_terms = batch.A_data * x[:, A.cols], batch.A_data * y[:, A.rows]
            Ax, Ax_size = A.sum_by(x_terms, "rows"), A.sum_by(np.abs(x_terms), "rows")
            Aty, Aty_size = A.sum_by(y_terms, "cols"), A.sum_by(np.abs(y_terms), "cols")
            Px = Px_size = np.zeros_like(x)
            if P is not None:
                P_terms = batch.P_data * x[:, P.cols]
                Px, Px_size = P.sum_by(P_terms, "rows"), P.sum_by(np.abs(P_terms), "rows")
        primal = _relative(Ax + s - batch.b, Ax_size + np.abs(s) + np.abs(batch.b))
        dual = _relative(Px + Aty + batch.c, Px_size + Aty_size + np.abs(batch.c))
        quadratic, linear = np.einsum("ij,ij->i", x, Px), np.einsum("ij,ij->i", batch.c, x)
        dual_linear = np.einsum("ij,ij->i", batch.b, y)
        gap = np.abs(quadratic + linear + dual_linear) / (
            1 + np.abs(quadratic) + np.abs(linear) + np.abs(dual_linear)
        )
    return primal, dual, gap


def _relative(residual: np.ndarray, size: np.ndarray) -> np.ndarray:
    """max_i |residual_i| / (1 + size_i), per row."""
    if residual.shape[1] == 0:
        return np.zeros(residual.shape[0])
    return np.max(np.abs(residual) / (1 + size), axis=1)


def verify(
    solution: BatchSolution, batch: ProgramBatch, structure: ProgramStructure, tolerance: float
) -> BatchSolution:
    """The solution with statuses corrected by the checks above (a new object).

    Parameters
    ----------
    solution : BatchSolution
        Solutions of ``batch`` as the solver reported them.
    batch : ProgramBatch
        The problems.
    structure : ProgramStructure
        Their patterns.
    tolerance : float
        The solver's relative tolerance (:func:`cvxlpgd.solvers.solver_tolerance`).

    Returns
    -------
    BatchSolution
        Non-finite points are ``"failed"``; usable points whose residuals exceed the
        thresholds are ``"optimal_inaccurate"`` or ``"failed"``.
    """
    primal, dual, gap = residuals(solution, batch, structure)
    finite = ~(np.isnan(primal) | np.isnan(dual) | np.isnan(gap))
    worst = np.where(finite, np.fmax(np.fmax(primal, dual), gap), np.inf)
    limit = max(INACCURATE_FACTOR * tolerance, INACCURATE_FLOOR)
    status = list(solution.status)
    for i in np.flatnonzero(~(worst <= limit)):
        current = status[i]
        if current not in OK_STATUSES:
            continue
        if not np.isfinite(worst[i]):
            status[i] = FAILED
        elif worst[i] > max(FAILED_RESIDUAL, 100 * limit):
            status[i] = FAILED  # claims a solution, violates the constraints
        elif current == OPTIMAL:
            status[i] = OPTIMAL_INACCURATE
    # A solution the solver calls inaccurate (it stopped short of its own, tighter,
    # tolerances) that passes every check at the default accuracy is a solution.
    for i in np.flatnonzero(worst <= min(limit, PROMOTION_LIMIT)):
        if status[i] == OPTIMAL_INACCURATE:
            status[i] = OPTIMAL
    if status == solution.status:
        return solution
    return dataclasses.replace(solution, status=status)


def report_inaccurate(entries: list[tuple[int, str, str]], policy: str) -> None:
    """Warn once (or raise) about inaccurate solutions of one call.

    Parameters
    ----------
    entries : list of (int, str, str)
        ``(batch index, status, which solve)`` per inaccurate solution, e.g.
        ``(3, "optimal_inaccurate", "forward")``.
    policy : str
        ``"warn"`` or ``"raise"``.

    Raises
    ------
    SolverError
        With ``policy="raise"``, naming the first inaccurate element.
    """
    if not entries:
        return
    shown = ", ".join(f"{index} ({status}, {solve})" for index, status, solve in entries[:10])
    more = f" and {len(entries) - 10} more" if len(entries) > 10 else ""
    text = (
        f"inaccurate solution(s) at batch index {shown}{more}: the values are not "
        "accurate to the solver's tolerance (iteration limit, numerical trouble or "
        "residuals above the tolerance); see layer.solver_stats"
    )
    if policy == "raise":
        index, status, _ = entries[0]
        raise SolverError(
            text + "; inaccurate='raise' makes this an error", status=status, batch_index=index
        )
    warn_user(text, InaccurateSolutionWarning)


def inaccurate_rows(solution: BatchSolution) -> np.ndarray:
    """Rows of ``solution`` whose status is usable but inaccurate."""
    return np.array([status in INACCURATE_STATUSES for status in solution.status], dtype=bool)
