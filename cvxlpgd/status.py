"""One status policy for every solve: forward, each LPGD side, the exact path, every solver.

* **Checked, not trusted.** A solver's own status is the first word, but a solution
  is also verified here: non-finite numbers make it ``"failed"``; its primal and dual
  residuals, relative to the data,

      r_p = ‖Ax + s − b‖∞ / (1 + max(‖Ax‖∞, ‖s‖∞, ‖b‖∞)),
      r_d = ‖Px + Aᵀy + c‖∞ / (1 + max(‖Px‖∞, ‖Aᵀy‖∞, ‖c‖∞)),

  must stay below :data:`INACCURATE_FACTOR` × the solver's tolerance (at least
  :data:`INACCURATE_FLOOR`), or a solution
  the solver calls optimal is ``"optimal_inaccurate"``; beyond :data:`FAILED_RESIDUAL`
  (a point that violates the constraints while claiming optimality) it is
  ``"failed"``. (Huge but finite costs, for example, make solvers return "optimal"
  points that violate the constraints.) A solution the solver itself calls
  inaccurate (an iteration limit) stays inaccurate.
* **Failures raise.** Infeasible, unbounded and failed elements raise
  :class:`~cvxlpgd.SolverError` naming the status, the batch index and, for LPGD,
  the side — after LPGD's fallbacks (:mod:`cvxlpgd.lpgd_batch`) had their chance.
* **Inaccurate solutions are never used silently**: by default one
  :class:`InaccurateSolutionWarning` per call names the elements and statuses, and
  ``solver_stats`` marks them; ``inaccurate="raise"`` makes them errors.
"""

from __future__ import annotations

import numpy as np

from cvxlpgd.errors import SolverError, warn_user
from cvxlpgd.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import (
    FAILED,
    INACCURATE_STATUSES,
    OK_STATUSES,
    OPTIMAL,
    OPTIMAL_INACCURATE,
    BatchSolution,
)

#: ``inaccurate=`` choices: warn (default) or raise.
INACCURATE_POLICIES = ("warn", "raise")
#: Residuals above this many times the solver's tolerance mark a solution inaccurate.
INACCURATE_FACTOR = 100.0
#: ... but never below this: the residuals here are measured in double precision on the
#: unscaled data, so a solver asked for 1e-12 cannot be held to 1e-10 by them.
INACCURATE_FLOOR = 1e-8
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


def residuals(solution: BatchSolution, batch: ProgramBatch, structure: ProgramStructure
              ) -> tuple[np.ndarray, np.ndarray]:
    """Relative primal and dual residuals of every element (formulas above).

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
    (numpy.ndarray, numpy.ndarray)
        ``r_p`` and ``r_d``, one entry per element.
    """
    A, P = structure.A_pattern, structure.P_pattern
    x, y, s = solution.point
    if batch.shared_matrices:  # one sparse matrix for all: no B × nnz temporaries
        A_matrix, P_matrix = batch.element_matrices(structure, 0)
        Ax, Aty = (A_matrix @ x.T).T, (A_matrix.T @ y.T).T
        Px = np.zeros_like(x) if P_matrix is None else (P_matrix @ x.T).T
    else:
        Ax = A.sum_by(batch.A_data * x[:, A.cols], "rows")
        Aty = A.sum_by(batch.A_data * y[:, A.rows], "cols")
        Px = np.zeros_like(x) if P is None else P.sum_by(batch.P_data * x[:, P.cols], "rows")

    with np.errstate(invalid="ignore", over="ignore"):
        return (_relative(Ax + s - batch.b, Ax, s, batch.b),
                _relative(Px + Aty + batch.c, Px, Aty, batch.c))


def _relative(residual, *terms) -> np.ndarray:
    """‖residual‖∞ / (1 + max ‖term‖∞), per row, in few array operations."""
    norms = np.abs(np.stack([residual, *np.broadcast_arrays(*terms)])).max(axis=2, initial=0.0)
    return norms[0] / (1 + norms[1:].max(axis=0))



def verify(solution: BatchSolution, batch: ProgramBatch, structure: ProgramStructure,
           tolerance: float) -> BatchSolution:
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
    primal, dual = residuals(solution, batch, structure)
    # Non-finite x, y or s make a residual nan or inf (fmax keeps nan only if both are).
    worst = np.where(np.isnan(primal) | np.isnan(dual), np.inf, np.fmax(primal, dual))
    limit = max(INACCURATE_FACTOR * tolerance, INACCURATE_FLOOR)
    suspect = np.flatnonzero(~(worst <= limit))
    if suspect.size == 0:
        return solution
    status = list(solution.status)
    for i in suspect:
        current = status[i]
        if current not in OK_STATUSES:
            continue
        if not np.isfinite(worst[i]):
            status[i] = FAILED
        elif current == OPTIMAL and worst[i] > max(FAILED_RESIDUAL, 100 * limit):
            status[i] = FAILED  # claims optimality, violates the constraints
        elif current == OPTIMAL:
            status[i] = OPTIMAL_INACCURATE
    if status == solution.status:
        return solution
    return BatchSolution(solution.x, solution.y, solution.s, status, solution.iterations,
                         solution.solve_time, solution.solver)


def raise_on_failure(solution: BatchSolution, indices: np.ndarray | None = None,
                     what: str = "") -> None:
    """Raise :class:`SolverError` for the first element that is not usable.

    Parameters
    ----------
    solution : BatchSolution
        The solutions.
    indices : numpy.ndarray, optional
        Batch index of each row (default: the row number).
    what : str, optional
        Which solve, for the message (e.g. ``"exact gradient path"``).

    Raises
    ------
    SolverError
        Naming the status and the batch index.
    """
    failed = np.flatnonzero(~solution.ok)
    if failed.size == 0:
        return
    row = int(failed[0])
    index = row if indices is None else int(indices[row])
    status = solution.status[row]
    where = f" ({what})" if what else ""
    raise SolverError(
        f"{solution.solver} returned status {status!r} at batch index {index}{where}: the "
        "problem is infeasible, unbounded or the solver failed for these parameter values",
        status=status, batch_index=index)


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
    text = (f"inaccurate solution(s) at batch index {shown}{more}: the values are not "
            "accurate to the solver's tolerance (iteration limit, numerical trouble or "
            "residuals above the tolerance); see layer.solver_stats")
    if policy == "raise":
        index, status, _ = entries[0]
        raise SolverError(text + "; inaccurate='raise' makes this an error", status=status,
                          batch_index=index)
    warn_user(text, InaccurateSolutionWarning)


def inaccurate_rows(solution: BatchSolution) -> np.ndarray:
    """Rows of ``solution`` whose status is usable but inaccurate."""
    return np.array([status in INACCURATE_STATUSES for status in solution.status], dtype=bool)
