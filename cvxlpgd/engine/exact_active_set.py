"""The exact derivative of LPs and QPs, from the forward's active set.

Symbols as in ``docs/lpgd.md`` (section "The exact derivative from the active set").
On a polyhedral cone, with the forward's active set 𝒜 (equality rows, and inequality
rows with y*ᵢ > s*ᵢ), the solution is the solution z = (x, y_𝒜) of

    K z = r,      K = [ P    A_𝒜ᵀ ]      r = [ −c  ]
                      [ A_𝒜  0    ],         [ b_𝒜 ],      y = 0 off 𝒜,

and where the solution is strictly complementary 𝒜 does not change under small
changes of the data, so the solution map is differentiable with dz = K⁻¹(dr − dK z).
For a loss with incoming gradients g = (dx, dy_𝒜) (dy off 𝒜 meets a constant yᵢ = 0)
the adjoint w = (w_x, w_y) = K⁻¹g (K is symmetric) gives

    ∂L/∂c = −w_x,    ∂L/∂b_𝒜 = w_y (0 off 𝒜),
    ∂L/∂A = −(y w_xᵀ + w_y xᵀ),    ∂L/∂P = −½(w_x xᵀ + x w_xᵀ)

on the stored entries of A and P (P stored full symmetric). The adjoint is the second
right-hand side of the system that polishes the forward point: one factorization per
element (:func:`cvxlpgd.lpgd.active_set.predict`, with the adjoint as a "side" of cost
−dx and right-hand side dy). The derivative is used only where the polished point passes
:func:`cvxlpgd.engine.prediction.check` (the solvers' checks and strict
complementarity): it is then the unique optimum and 𝒜 is locally constant. Elsewhere (a
degenerate vertex, a tie, an ill-conditioned system) the derivative is not determined
by 𝒜, and the element goes to the exact backend the layer would otherwise use.

One degenerate case is determined: an LP vertex with more active rows than variables
whose strictly positive duals sit on rows S with rank A_S = n. The vertex is then the
unique optimum, and it stays optimal under any small change of c (the dual
y_S − A_S(A_SᵀA_S)⁻¹dc stays positive), so x is locally constant in c: with no
parameter in b or A and no incoming gradient on the (non-unique) duals, the
derivative is exactly zero (:func:`fixed_vertices`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cvxlpgd.engine.prediction import CHECK_TOLERANCE, check, products
from cvxlpgd.lpgd.active_set import RCOND_MIN, active_rows, predict
from cvxlpgd.lpgd.formulas import DataGradient
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import OPTIMAL, BatchSolution

#: ``exact_backend`` of the derivative from the active set.
ACTIVE_SET_BACKEND = "active-set"
#: A row is in an LP vertex's dual support when yᵢ exceeds this (relative to 1 + ‖y‖∞)
#: and this many times its slack: an interior-point solution's weakly active rows (both
#: of the order of √gap) fall outside.
SUPPORT_DUAL = 1e-6
SUPPORT_RATIO = 1e4


def adjoint_gradient(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray, wy: np.ndarray, structure: ProgramStructure
) -> DataGradient:
    """(∂L/∂c, ∂L/∂b, ∂L/∂A, ∂L/∂P) from the point (x, y) and the adjoint (w_x, w_y).

    Parameters
    ----------
    x, y : numpy.ndarray
        Primal (B, n) and dual (B, m) points, y zero off the active sets.
    wx, wy : numpy.ndarray
        The adjoint K⁻¹g, (B, n) and (B, m), w_y zero off the active sets.
    structure : ProgramStructure
        The patterns of A and P.

    Returns
    -------
    DataGradient
    """
    A, P = structure.A_pattern, structure.P_pattern
    dP = None
    if P is not None:
        dP = -0.5 * (wx[:, P.rows] * x[:, P.cols] + x[:, P.rows] * wx[:, P.cols])
    return DataGradient(
        dc=-wx,
        db=np.array(wy),
        dA_data=-(y[:, A.rows] * wx[:, A.cols] + wy[:, A.rows] * x[:, A.cols]),
        dP_data=dP,
    )


def exact_from_active_set(
    batch: ProgramBatch,
    structure: ProgramStructure,
    solution: BatchSolution,
    dx: np.ndarray,
    dy: np.ndarray,
    tolerance: float,
) -> tuple[DataGradient, np.ndarray]:
    """The exact data gradients of the elements whose active set determines them.

    Parameters
    ----------
    batch : ProgramBatch
        The forward problems (polyhedral cones).
    structure : ProgramStructure
        Their structure.
    solution : BatchSolution
        The forward solutions.
    dx, dy : numpy.ndarray
        Incoming gradients, (B, n) and (B, m).
    tolerance : float
        The forward solver's tolerance; the polished points are checked at it, at most
        :data:`~cvxlpgd.engine.prediction.CHECK_TOLERANCE`.

    Returns
    -------
    gradient : DataGradient
        The derivative's data gradients (rows not in ``ok`` are zero).
    ok : numpy.ndarray
        (B,) booleans: the elements differentiated here.
    """
    B = batch.batch_size
    active = active_rows(solution.y, solution.s, structure.cones.zero)
    adjoint = batch.with_vectors(c=-np.asarray(dx, dtype=float), b=np.asarray(dy, dtype=float))
    x, y, trusted = predict([batch, adjoint], structure, active)
    ok = np.zeros(B, dtype=bool)
    picked = np.flatnonzero(trusted)
    if picked.size:
        problems, act = batch.rows(picked), active[picked]
        xp, yp = x[0, picked], y[0, picked]
        Ax, size = products(problems, structure, xp)
        polished = BatchSolution(
            xp,
            yp,
            np.where(act, 0.0, problems.b - Ax),
            [OPTIMAL] * picked.size,
            np.zeros(picked.size, np.int64),
            np.zeros(picked.size),
            ACTIVE_SET_BACKEND,
        )
        limit = min(tolerance, CHECK_TOLERANCE)
        ok[picked] = check(polished, problems, structure, act, limit, size)
    keep = ok[:, None]
    gradient = adjoint_gradient(
        np.where(keep, x[0], 0.0),
        np.where(keep, y[0], 0.0),
        np.where(keep, x[1], 0.0),
        np.where(keep, y[1], 0.0),
        structure,
    )
    return gradient, ok


def fixed_vertices(
    batch: ProgramBatch, structure: ProgramStructure, solution: BatchSolution, rows: np.ndarray
) -> np.ndarray:
    """Which LP elements ``rows`` sit at a unique vertex that small changes of c keep
    optimal: the rows S with strictly positive duals (:data:`SUPPORT_DUAL`,
    :data:`SUPPORT_RATIO`; equality rows included) have rank A_S = n.

    Coordinate rows (one stored entry) in S fix their variable; the rank test runs on
    the other rows of S and the variables they leave free (a few, on the usual LPs
    with bounds), by singular values against :data:`~cvxlpgd.lpgd.active_set.RCOND_MIN`.

    Parameters
    ----------
    batch : ProgramBatch
        The forward problems (an LP: no P).
    structure : ProgramStructure
        Their structure.
    solution : BatchSolution
        The forward solutions.
    rows : numpy.ndarray
        The elements to test.

    Returns
    -------
    numpy.ndarray
        (len(rows),) booleans.
    """
    pattern, zero = structure.A_pattern, structure.cones.zero
    m, n = pattern.shape
    counts = np.bincount(pattern.rows, minlength=m)
    singleton = counts[pattern.rows] == 1  # stored entries alone in their row
    out = np.zeros(rows.size, dtype=bool)
    for k, i in enumerate(rows):
        y, s = solution.y[i], solution.s[i]
        support = (y > SUPPORT_DUAL * (1 + np.abs(y).max(initial=0.0))) & (y > SUPPORT_RATIO * s)
        support[:zero] = True
        values = batch.A_data[i]
        in_support = support[pattern.rows] & (values != 0)
        fixed = np.zeros(n, dtype=bool)
        fixed[pattern.cols[in_support & singleton]] = True
        free = np.flatnonzero(~fixed)
        if free.size == 0:
            out[k] = True
            continue
        keep = in_support & ~singleton & ~fixed[pattern.cols]
        other = np.unique(pattern.rows[keep])
        if other.size < free.size:
            continue
        block = np.zeros((m, n))
        block[pattern.rows[keep], pattern.cols[keep]] = values[keep]
        sigma = np.linalg.svd(block[np.ix_(other, free)], compute_uv=False)
        out[k] = sigma[-1] > RCOND_MIN * sigma[0]
    return out


def rescue_backend(structure: ProgramStructure) -> str:
    """The exact derivative of the elements the active set does not determine: Moreau's
    for a QP (diffcp cannot take P), diffcp's for an LP (the layer's choice there)."""
    P = structure.P_pattern
    return "moreau" if P is not None and P.nnz > 0 else "diffcp"


def check_polyhedral(structure: ProgramStructure) -> None:
    """Raise unless the problem is an LP or QP (zero and nonnegative cones only).

    Parameters
    ----------
    structure : ProgramStructure

    Raises
    ------
    ValueError
        Naming the other cones and the alternatives.
    """
    cones = structure.cones
    if cones.size != cones.zero + cones.nonneg:
        raise ValueError(
            "exact_backend='active-set' differentiates LPs and QPs only (zero and "
            f"nonnegative cones); this problem has {cones.size - cones.zero - cones.nonneg} "
            "rows in other cones; use exact_backend='auto', 'moreau' or 'diffcp'"
        )


def active_set_backward(
    state, dx: np.ndarray, dy: np.ndarray, rescue: Callable[[np.ndarray], DataGradient]
) -> DataGradient:
    """The exact data gradients of a forward pass: from the active set where it determines
    them, from ``rescue(rows)`` (the other exact backend, on those rows) elsewhere.

    Parameters
    ----------
    state : ForwardState
        The forward pass (``solver_stats`` counts the elements each way).
    dx, dy : numpy.ndarray
        Incoming gradients, (B, n) and (B, m).
    rescue : callable
        ``rescue(rows) → DataGradient`` of the elements ``rows``.

    Returns
    -------
    DataGradient
    """
    structure = state.template.structure
    gradient, ok = exact_from_active_set(
        state.batch, structure, state.solution, dx, dy, state.tolerance
    )
    rest = np.flatnonzero(~ok)
    usage = state.template.column_usage
    P = structure.P_pattern
    if (
        rest.size
        and (P is None or P.nnz == 0)
        and not any(np.any(usage[name][:-1]) for name in ("A", "b"))
    ):
        costs_only = rest[~np.any(dy[rest], axis=1)]
        fixed = costs_only[fixed_vertices(state.batch, structure, state.solution, costs_only)]
        ok[fixed] = True  # their gradient is zero: x is locally constant in c
        rest = np.flatnonzero(~ok)
    if rest.size:
        part = rescue(rest)
        for mine, theirs in zip(gradient.parts(), part.parts()):
            if mine is not None and theirs is not None:
                mine[rest] = theirs
    if state.stats is not None:
        state.stats.active_set_predicted = int(ok.sum())
        state.stats.active_set_resolved = int(rest.size)
    return gradient
