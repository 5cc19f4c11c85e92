"""Per-element fallback across solvers: an element one solver fails on goes to the next.

The chain starts with the call's solver and continues through
:data:`FALLBACK_ORDER` (Moreau → Clarabel → SCS), skipping solvers that are not
installed or do not accept the problem's cones. After each solver, the elements
that still need an answer are solved again by the next one:

* an element without a usable solution — any status other than optimal, or a
  solution that failed verification (:func:`cvxlpgd.engine.status.verify`) — takes the
  next solver's answer if that one is usable;
* an inaccurate solution (``"optimal_inaccurate"``) is replaced when the next
  solver's answer is accurate, and kept otherwise.

Only an element that every solver of the chain fails is an error: the problem is
then infeasible or unbounded for those parameter values (or beyond every solver),
and :func:`chain_failure` names each solver's status. The forward pass, each side of
LPGD's re-solves (before its τ fallbacks) and the exact path's forward solve use the
same chain. ``solver_stats`` records which solver answered each element, and one
:class:`SolverFallbackWarning` per pass names the elements that fell back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from cvxlpgd.errors import SolverError, warn_user
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import (
    INACCURATE_STATUSES,
    INFEASIBLE,
    INFEASIBLE_INACCURATE,
    OPTIMAL,
    UNBOUNDED,
    UNBOUNDED_INACCURATE,
    BatchSolution,
)
from cvxlpgd.solvers.moreau_backend import moreau_available

#: The order in which solvers take over elements another solver failed on.
FALLBACK_ORDER = ("MOREAU", "CLARABEL", "SCS")

#: ``solve(name, batch, rows) → BatchSolution``: solver ``name`` on ``batch`` (rows
#: ``rows`` of the pass's batch: an index array, or ``slice(None)`` for all), verified.
SolveWith = Callable[[str, ProgramBatch, object], BatchSolution]


class SolverFallbackWarning(UserWarning):
    """Some elements of a call were answered by another solver than the chosen one.

    Issued once per pass (forward, LPGD backward), naming the batch indices, the
    chosen solver's status and the solver that answered; ``solver_stats`` records the
    answering solver of every element (``SolveRecord.solver``). Silence it with
    ``warnings.simplefilter("ignore", cvxlpgd.SolverFallbackWarning)``.
    """


def accepts(name: str, structure: ProgramStructure) -> bool:
    """Whether solver ``name`` is installed and accepts ``structure``'s cones and objective.

    Parameters
    ----------
    name : str
        A solver name.
    structure : ProgramStructure
        Cones and patterns.

    Returns
    -------
    bool
    """
    cones = structure.cones
    quadratic = structure.P_pattern is not None and structure.P_pattern.nnz > 0
    if name == "MOREAU":
        return moreau_available() and not cones.dual_exp
    if name == "CLARABEL":
        return not cones.dual_exp and all(0.0 < a < 1.0 for a in cones.power)
    if name == "ECOS":
        return not (quadratic or cones.psd or cones.power or cones.dual_exp)
    return name == "SCS"


def fallback_chain(primary: str, structure: ProgramStructure, enabled: bool) -> tuple[str, ...]:
    """The solvers a call tries, in order: ``primary``, then :data:`FALLBACK_ORDER`.

    Parameters
    ----------
    primary : str
        The call's solver.
    structure : ProgramStructure
        Cones and patterns (solvers that do not accept them are left out).
    enabled : bool
        False: ``primary`` alone.

    Returns
    -------
    tuple of str
    """
    if not enabled:
        return (primary,)
    return (
        primary,
        *(name for name in FALLBACK_ORDER if name != primary and accepts(name, structure)),
    )


@dataclass
class ChainResult:
    """What a chain of solvers made of a batch.

    Attributes
    ----------
    solution : BatchSolution
        Per element the best answer found (``answered_by`` names whose).
    attempts : dict
        Row → ``[(solver, status), ...]`` for every row a solver did not answer
        accurately, in the order tried.
    """

    solution: BatchSolution
    attempts: dict[int, list[tuple[str, str]]] = field(default_factory=dict)

    def fallbacks(self) -> dict[int, str]:
        """Row → the solver that answered it, for rows the first solver did not."""
        first = self.solution.solver
        return {i: name for i, name in enumerate(self.solution.solvers) if name != first}


def _needs_another(solution: BatchSolution) -> np.ndarray:
    return np.array([status != OPTIMAL for status in solution.status], dtype=bool)


def solve_chain(solve: SolveWith, chain: tuple[str, ...], batch: ProgramBatch) -> ChainResult:
    """Solve ``batch`` with ``chain[0]``, and its failed elements with the next solvers.

    Parameters
    ----------
    solve : callable
        ``solve(name, batch, rows)`` (see :data:`SolveWith`).
    chain : tuple of str
        Solver names, in order (:func:`fallback_chain`).
    batch : ProgramBatch
        The problems.

    Returns
    -------
    ChainResult
    """
    first = solve(chain[0], batch, slice(None))
    pending = np.flatnonzero(_needs_another(first))
    if pending.size == 0 or len(chain) == 1:
        return ChainResult(first)
    status = list(first.status)
    answered = [chain[0]] * batch.batch_size
    x, y, s = (np.array(a, dtype=float) for a in first.point)
    iterations, seconds = first.iterations.copy(), first.solve_time.copy()
    attempts = {int(i): [(chain[0], status[i])] for i in pending}
    for name in chain[1:]:
        if pending.size == 0:
            break
        again = solve(name, batch.rows(pending), pending)
        for k, row in enumerate(pending):
            new = again.status[k]
            attempts[int(row)].append((name, new))
            better = new == OPTIMAL or (
                new in INACCURATE_STATUSES and status[row] not in INACCURATE_STATUSES
            )
            if better:
                x[row], y[row], s[row] = again.x[k], again.y[k], again.s[k]
                status[row], answered[row] = new, name
            iterations[row] += again.iterations[k]
            seconds[row] += again.solve_time[k]
        pending = np.array([row for row in pending if status[row] != OPTIMAL], dtype=np.int64)
    merged = replace(
        first,
        x=x,
        y=y,
        s=s,
        status=status,
        iterations=iterations,
        solve_time=seconds,
        answered_by=answered,
    )
    return ChainResult(merged, attempts)


#: Statuses that certify infeasibility or unboundedness, most telling first.
_CERTIFICATES = (INFEASIBLE, UNBOUNDED, INFEASIBLE_INACCURATE, UNBOUNDED_INACCURATE)


def chain_failure(
    result: ChainResult, indices: np.ndarray | None = None, what: str = "", side: str | None = None
) -> SolverError | None:
    """The error for the first element no solver of the chain answered, or None.

    Parameters
    ----------
    result : ChainResult
        The chain's result.
    indices : numpy.ndarray, optional
        Batch index of each row (default: the row number).
    what : str, optional
        Which solve, for the message (e.g. ``"LPGD upper perturbed solve"``).
    side : str, optional
        ``"upper"``/``"lower"`` for an LPGD side.

    Returns
    -------
    SolverError or None
    """
    failed = np.flatnonzero(~result.solution.ok)
    if failed.size == 0:
        return None
    row = int(failed[0])
    index = row if indices is None else int(indices[row])
    tried = result.attempts.get(row, [(result.solution.solver, result.solution.status[row])])
    statuses = [status for _, status in tried]
    status = next((c for c in _CERTIFICATES if c in statuses), statuses[-1])
    where = f" ({what})" if what else ""
    more = f" (and {failed.size - 1} more element(s))" if failed.size > 1 else ""
    if len(tried) == 1:
        who = f"{tried[0][0]} returned"
    else:
        who = "every solver tried (" + ", ".join(f"{n} {st!r}" for n, st in tried) + ") failed:"
    return SolverError(
        f"{who} status {status!r} at batch index {index}{where}{more}: the problem is "
        "infeasible, unbounded or beyond the solvers for these parameter values",
        status=status,
        batch_index=index,
        side=side,
    )


def warn_solver_fallbacks(entries: list[tuple[int, str, str, str]]) -> None:
    """One :class:`SolverFallbackWarning` for a pass.

    Parameters
    ----------
    entries : list of (int, str, str, str)
        ``(batch index, which solve, first solver's status, answering solver)``.
    """
    if not entries:
        return
    shown = "; ".join(
        f"{index} ({solve}: {status}) → {name}" for index, solve, status, name in entries[:10]
    )
    more = f"; and {len(entries) - 10} more" if len(entries) > 10 else ""
    warn_user(
        f"{len(entries)} element(s) were solved by a fallback solver after the first "
        f"one failed or was inaccurate: batch index {shown}{more} (see "
        "layer.solver_stats)",
        SolverFallbackWarning,
    )
