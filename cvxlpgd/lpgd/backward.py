"""The LPGD backward pass over a batch: batched re-solves, differences, and fallbacks.

With the formulas of :mod:`cvxlpgd.lpgd.formulas`, :func:`lpgd_backward` builds the perturbed
problems of every element with a nonzero incoming gradient, solves each side as one
batched call, and forms the finite differences. Elements whose incoming gradient is
zero get an exact zero and no re-solve.

Fallbacks. A perturbed problem can be infeasible or unbounded at the given τ even
when the forward problem is fine (a large cost perturbation makes an LP unbounded).
Such an element falls back, in this order, to

1. the other one-sided difference: with ``mode="central"`` the side that solved
   (``(G₊ − G*)/τ`` or ``(G* − G₋)/τ``); with a one-sided mode the other side;
2. a smaller τ for that element: τ/10, τ/100, τ/1000, each with the requested mode
   (or its solved side);

and only when none of these solves does :class:`~cvxlpgd.SolverError` name the side,
the status and the batch index. Every fallback is recorded per element.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cvxlpgd.errors import SolverError, warn_user
from cvxlpgd.lpgd.formulas import SIDE_NAMES, SIDES, DataGradient, perturbed_costs, perturbed_dual
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import BatchSolution

#: Elements per block when forming G: bounds the transient memory of the products
#: y xᵀ on A's pattern (B × nnz_A numbers each) for large batches.
_BLOCK = 64
#: Smaller τ tried for an element whose perturbed problems fail: τ/10, τ/100, τ/1000.
TAU_REDUCTIONS = 3


class LPGDFallbackWarning(UserWarning):
    """Some elements' LPGD gradients were formed by a fallback (see :mod:`cvxlpgd.lpgd.backward`).

    Issued once per backward pass, naming the batch indices and the difference and τ
    used for each; ``solver_stats.fallbacks`` records them too.
    """


def warn_fallbacks(fallbacks: dict[int, str], tau: float, mode: str) -> None:
    """One :class:`LPGDFallbackWarning` naming the elements that fell back.

    Parameters
    ----------
    fallbacks : dict
        Batch index → what was used (:attr:`LPGDResult.fallbacks`).
    tau : float
        The requested τ.
    mode : str
        The requested mode.
    """
    if not fallbacks:
        return
    items = sorted(fallbacks.items())
    shown = "; ".join(f"{index}: {how}" for index, how in items[:10])
    more = f"; and {len(items) - 10} more" if len(items) > 10 else ""
    warn_user(
        f"LPGD perturbed problems failed at tau={tau:g} (lpgd_mode={mode!r}) for "
        f"{len(items)} element(s); their gradients fell back to {shown}{more} "
        "(see layer.solver_stats.fallbacks)",
        LPGDFallbackWarning,
    )


SolveSides = Callable[[list[tuple[int, ProgramBatch]], np.ndarray], list[BatchSolution]]


@dataclass
class LPGDResult:
    """An LPGD backward pass's result.

    Attributes
    ----------
    gradient : DataGradient
        Data gradients, one row per element (zero rows where nothing came in).
    active : numpy.ndarray
        Batch indices that were re-solved (incoming gradient nonzero).
    sides : dict
        The first perturbed solutions by side (+1, −1), rows of ``active``.
    solves : list of (numpy.ndarray, int, BatchSolution)
        Every batched re-solve: batch indices, side, solutions (fallbacks included).
    fallbacks : dict
        Batch index → how its gradient was formed when not as requested, e.g.
        ``"upper only, tau=0.1"`` or ``"central, tau=0.001"``.
    """

    gradient: DataGradient
    active: np.ndarray
    sides: dict[int, BatchSolution] = field(default_factory=dict)
    solves: list = field(default_factory=list)
    fallbacks: dict[int, str] = field(default_factory=dict)


def _write_difference(
    out: DataGradient,
    rows: np.ndarray,
    scale: float,
    plus: tuple[np.ndarray, np.ndarray],
    minus: tuple[np.ndarray, np.ndarray],
    structure: ProgramStructure,
) -> None:
    """out[rows] = scale · (G(plus) − G(minus)), in blocks of rows (bounded memory)."""
    A, P = structure.A_pattern, structure.P_pattern
    for start in range(0, rows.size, _BLOCK):
        block = slice(start, start + _BLOCK)
        target = rows[block]
        xp, yp = plus[0][block], plus[1][block]
        xm, ym = minus[0][block], minus[1][block]
        out.dc[target] = scale * (xp - xm)
        out.db[target] = -scale * (yp - ym)
        if out.dA_data is not None:
            out.dA_data[target] = scale * (
                yp[:, A.rows] * xp[:, A.cols] - ym[:, A.rows] * xm[:, A.cols]
            )
        if out.dP_data is not None and P is not None:
            out.dP_data[target] = (
                0.5 * scale * (xp[:, P.rows] * xp[:, P.cols] - xm[:, P.rows] * xm[:, P.cols])
            )


class _Pass:
    """One backward pass: the data every attempt shares."""

    def __init__(self, solve_sides, batch, structure, forward, dx, dy, ds, rho):
        self.solve_sides, self.batch, self.structure = solve_sides, batch, structure
        self.forward, self.dx, self.dy, self.ds, self.rho = forward, dx, dy, ds, rho
        self.solves: list = []

    def attempt(self, indices: np.ndarray, signs: tuple[int, ...], tau: float) -> dict:
        """Solve ``signs`` for the batch elements ``indices`` at ``tau``.

        Returns ``{σ: (solution, (x_σ, y_σ))}`` with the duals of the stated problem.
        """
        whole = indices.size == self.batch.batch_size
        rows = slice(None) if whole else indices
        sub = self.batch if whole else self.batch.rows(indices)
        fs = self.forward.s[rows]
        ds = None if self.ds is None else self.ds[rows]
        requests = []
        for sign in signs:
            c_new, b_new = perturbed_costs(
                sign,
                tau,
                self.rho,
                sub,
                self.structure.A_pattern,
                self.dx[rows],
                self.dy[rows],
                ds,
                self.forward.x[rows],
                fs,
            )
            requests.append((sign, sub.with_vectors(c_new, b_new)))
        out = {}
        for sign, solution in zip(signs, self.solve_sides(requests, rows)):
            self.solves.append((indices, sign, solution))
            out[sign] = (
                solution,
                (solution.x, perturbed_dual(sign, tau, self.rho, solution, ds, fs)),
            )
        return out

    def write(
        self,
        gradient: DataGradient,
        indices: np.ndarray,
        positions: np.ndarray,
        signs: tuple[int, ...],
        tau: float,
        points: dict,
    ) -> None:
        """Differences for ``indices`` (rows ``positions`` of ``points``) from ``signs``."""
        if indices.size == 0:
            return
        plus = self._point(+1, signs, positions, indices, points)
        minus = self._point(-1, signs, positions, indices, points)
        scale = (0.5 if len(signs) == 2 else 1.0) / tau
        _write_difference(gradient, indices, scale, plus, minus, self.structure)

    def _point(self, sign, signs, positions, indices, points):
        if sign in signs:
            x, y = points[sign][1]
            return x[positions], y[positions]
        return self.forward.x[indices], self.forward.y[indices]


def _describe(signs: tuple[int, ...], tau: float) -> str:
    what = "central" if len(signs) == 2 else f"{SIDE_NAMES[signs[0]]} only"
    return f"{what}, tau={tau:g}"


def lpgd_backward(
    solve_sides: SolveSides,
    batch: ProgramBatch,
    structure: ProgramStructure,
    forward: BatchSolution,
    dx: np.ndarray,
    dy: np.ndarray,
    ds: np.ndarray | None,
    *,
    tau: float,
    rho: float,
    mode: str,
    matrices: tuple[bool, bool] = (True, True),
) -> LPGDResult:
    """LPGD data gradients of a batch, with the fallbacks of the module docstring.

    Parameters
    ----------
    solve_sides : callable
        ``solve_sides([(σ, batch_σ), ...], rows)`` solves each perturbed batch (same
        matrices as ``batch``) — the forward elements ``rows`` (an index array, or
        ``slice(None)`` for all) — warm-started from their forward solutions, and
        returns one verified :class:`BatchSolution` per request, in order.
    batch : ProgramBatch
        The forward problems (P already widened to P' when ρ > 0:
        :func:`cvxlpgd.lpgd.proximal.proximal_batch`; c and b are the forward ones).
    structure : ProgramStructure
        The forward problems' structure (patterns of the gradient).
    forward : BatchSolution
        The forward solutions (x*, y*, s*).
    dx, dy : numpy.ndarray
        Incoming gradients (B, n), (B, m).
    ds : numpy.ndarray or None
        Incoming gradient in s (B, m), or None.
    tau, rho, mode :
        Perturbation strength, proximal weight, ``"central"``/``"upper"``/``"lower"``.
    matrices : (bool, bool), default (True, True)
        Whether the gradients in A and in P are wanted: forming y xᵀ on A's pattern
        for every element is the pass's largest array work, wasted when no parameter
        enters A.

    Returns
    -------
    LPGDResult

    Raises
    ------
    SolverError
        When an element's perturbed problems fail even after the fallbacks (side,
        status and batch index named).
    """
    moving = np.any(dx != 0, axis=1) | np.any(dy != 0, axis=1)
    if ds is not None:
        moving |= np.any(ds != 0, axis=1)
        ds = ds if np.any(ds) else None
    active = np.flatnonzero(moving)
    gradient = DataGradient.zeros(structure, batch.batch_size, matrices)
    result = LPGDResult(gradient, active)
    if active.size == 0:
        return result
    run = _Pass(solve_sides, batch, structure, forward, dx, dy, ds, rho)
    signs = SIDES[mode]
    points = run.attempt(active, signs, tau)
    result.sides = {sign: solution for sign, (solution, _) in points.items()}
    ok = {sign: solution.ok for sign, (solution, _) in points.items()}
    every = np.logical_and.reduce([ok[sign] for sign in signs])
    run.write(gradient, active[every], np.flatnonzero(every), signs, tau, points)
    pending = np.flatnonzero(~every)  # positions in ``active``
    if pending.size and len(signs) == 2:  # central: the side that solved
        for sign in signs:
            alone = pending[ok[sign][pending]]
            run.write(gradient, active[alone], alone, (sign,), tau, points)
            result.fallbacks.update({int(i): _describe((sign,), tau) for i in active[alone]})
        pending = pending[~(ok[+1][pending] | ok[-1][pending])]
    elif pending.size:  # one-sided: the other side
        other = (-signs[0],)
        more = run.attempt(active[pending], other, tau)
        solved = more[other[0]][0].ok
        run.write(gradient, active[pending[solved]], np.flatnonzero(solved), other, tau, more)
        result.fallbacks.update({int(i): _describe(other, tau) for i in active[pending[solved]]})
        pending = pending[~solved]
    last = points
    for k in range(1, TAU_REDUCTIONS + 1):
        if pending.size == 0:
            break
        small = tau / 10**k
        last = run.attempt(active[pending], signs, small)
        solved_sides = {sign: last[sign][0].ok for sign in signs}
        for choice in [signs] if len(signs) == 1 else [signs, (+1,), (-1,)]:
            mask = np.logical_and.reduce([solved_sides[s] for s in choice])
            if len(choice) == 1 and len(signs) == 2:
                mask &= ~np.logical_and.reduce([solved_sides[s] for s in signs])
            run.write(gradient, active[pending[mask]], np.flatnonzero(mask), choice, small, last)
            result.fallbacks.update(
                {int(i): _describe(choice, small) for i in active[pending[mask]]}
            )
        done = np.logical_or.reduce([solved_sides[s] for s in signs])
        pending, last = pending[~done], {s: (v[0].rows(~done), None) for s, v in last.items()}
    result.solves = run.solves
    if pending.size:
        sign = next(s for s in signs if not last[s][0].ok[0])
        status = last[sign][0].status[0]
        index = int(active[pending[0]])
        side, other_side = SIDE_NAMES[sign], SIDE_NAMES[-sign]
        raise SolverError(
            f"LPGD {side} perturbed solve failed at batch index {index} with status "
            f"{status!r}, also with lpgd_mode={other_side!r} and with tau down to "
            f"{tau / 10**TAU_REDUCTIONS:g}; try a smaller tau (now {tau}) or rho > 0",
            status=status,
            batch_index=index,
            side=side,
        )
    return result
