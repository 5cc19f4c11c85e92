"""OptNet-style Sudoku layer: a parametrized QP over one-hot cell/digit indicators.

The layer (Amos & Kolter 2017, reused by the LPGD paper) is ::

    minimize    -p^T z + (eps / 2) ||z||^2
    subject to  A z = b,  z >= 0

with ``z`` in ``R^(size**3)`` laid out as in :mod:`examples.sudoku.puzzles` (row-major
cell, then digit), ``p`` the one-hot givens of a puzzle, and the rules ``(A, b)`` learned.

With the exact rules (:func:`true_rules`) the QP recovers the unique solution of a
puzzle: the givens are the only cells where ``p`` is non-zero, ``p^T z <= #givens`` on
the rule polytope with equality iff every given is respected, and for a small ``eps``
the quadratic term only breaks ties inside that face. ``eps`` must stay small because
it pulls ``z`` towards the uniform point ``1/size`` (the minimum-norm point of the
polytope). Measured with Clarabel on 500 minimal 4x4 puzzles: ``eps <= 1/16`` gives the
exact one-hot solution on all of them; ``eps = 0.1`` still decodes correctly on all of
them but ``z`` is fractional on most; at ``eps = 0.2`` decoding fails on ~20%. For 9x9
the relaxation itself is not tight on minimal (hard) puzzles; with 30+ givens and
``eps <= 1e-3`` it recovered every puzzle tried.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.linalg

from .puzzles import box_size

__all__ = ["build_sudoku_problem", "random_rules", "rule_rank", "true_rules"]


def build_sudoku_problem(
    size: int, n_constraints: int, eps: float = 0.1
) -> tuple[cp.Problem, dict[str, cp.Parameter], cp.Variable]:
    """Build the parametrized Sudoku QP as a DPP CVXPY problem.

    Parameters
    ----------
    size : int
        Board side (4 or 9).
    n_constraints : int
        Rows of the learned equality system ``A z = b``. The exact rules have rank 40 for
        4x4 and 249 for 9x9 (:func:`rule_rank`), the sizes OptNet uses for ``A``.
    eps : float, default 0.1
        Weight of the strongly convex term; a constant, not a parameter, so that the
        problem stays DPP with ``P = eps * I`` fixed (one factorization pattern).

    Returns
    -------
    problem : cvxpy.Problem
        ``minimize -p @ z + eps/2 * sum_squares(z)  s.t.  A @ z == b, z >= 0``;
        ``problem.is_dpp()`` is true.
    params : dict of str to cvxpy.Parameter
        ``"p"`` (shape ``(size**3,)``), ``"A"`` (``(n_constraints, size**3)``) and
        ``"b"`` (``(n_constraints,)``). Values are left unset.
    z : cvxpy.Variable
        Shape ``(size**3,)``.
    """
    box_size(size)
    if n_constraints < 1:
        raise ValueError(f"n_constraints must be >= 1, got {n_constraints}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    m, n = int(n_constraints), size**3
    p = cp.Parameter(n, name="p")
    A = cp.Parameter((m, n), name="A")
    b = cp.Parameter(m, name="b")
    z = cp.Variable(n, name="z")
    # A @ z is parameter x variable, which DPP allows; everything else is parameter-affine.
    objective = cp.Minimize(-p @ z + (eps / 2) * cp.sum_squares(z))
    problem = cp.Problem(objective, [A @ z == b, z >= 0])
    return problem, {"p": p, "A": A, "b": b}, z


def _all_rules(size: int) -> np.ndarray:
    b = box_size(size)
    n = size
    cell, row, col, box = [], [], [], []
    # Index of indicator (r, c, d) in the one-hot layout of examples.sudoku.puzzles.
    idx = np.arange(n**3).reshape(n, n, n)
    for r in range(n):
        for c in range(n):
            cell.append(idx[r, c, :])  # cell (r, c) holds exactly one digit
    for r in range(n):
        for d in range(n):
            row.append(idx[r, :, d])  # digit d appears once in row r
    for c in range(n):
        for d in range(n):
            col.append(idx[:, c, d])  # ... once in column c
    for br in range(b):
        for bc in range(b):
            for d in range(n):
                box.append(idx[br * b : (br + 1) * b, bc * b : (bc + 1) * b, d].ravel())
    rows = cell + row + col + box
    A = np.zeros((len(rows), n**3))
    for i, cols in enumerate(rows):
        A[i, cols] = 1.0
    return A


def true_rules(size: int, full_rank: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The exact Sudoku rules as an equality system ``A z = b`` on one-hot indicators.

    The complete system has ``4 * size**2`` rows, in this order: one per cell (one digit
    per cell), per (row, digit), per (column, digit), per (box, digit); ``b`` is all ones.
    It is rank deficient (rank 40 of 64 rows for 4x4, 249 of 324 for 9x9): e.g. the cell
    rows of one board row sum to the same vector as the (row, digit) rows of that row.

    Parameters
    ----------
    size : int
        Board side (4 or 9).
    full_rank : bool, default True
        Keep only a maximal linearly independent subset of the rows (chosen by QR with
        column pivoting on ``A.T``, kept in the original order). The solution set is
        unchanged, since the dropped rows are combinations of the kept ones and the
        system is consistent; but interior-point solvers and the KKT systems used for
        exact derivatives are better conditioned with full row rank. ``False`` returns
        all ``4 * size**2`` rows.

    Returns
    -------
    A : ndarray of float64, shape (m, size**3)
        0/1 matrix; ``m = rule_rank(size)`` if ``full_rank`` else ``4 * size**2``.
    b : ndarray of float64, shape (m,)
        All ones.
    """
    A = _all_rules(size)
    if full_rank:
        A = A[_independent_rows(A)]
    return A, np.ones(A.shape[0])


def _independent_rows(A: np.ndarray) -> np.ndarray:
    # Pivoted QR of A^T orders the rows of A by how much new direction each adds; the
    # first rank(A) pivots span the row space. The entries are 0/1 and the matrices
    # small, so the numerical rank is unambiguous (gaps of order 1 in |diag(R)|).
    _, R, piv = scipy.linalg.qr(A.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    rank = int(np.sum(diag > diag[0] * A.shape[1] * np.finfo(float).eps * 10))
    return np.sort(piv[:rank])


def rule_rank(size: int) -> int:
    """Rank of the exact rule system: 40 for 4x4, 249 for 9x9."""
    return int(np.linalg.matrix_rank(_all_rules(size)))


def random_rules(
    size: int, n_constraints: int, seed: int = 0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """A random starting point for learning ``(A, b)``, feasible by construction.

    ``A`` has i.i.d. ``N(0, scale**2 / size**3)`` entries and ``b = A @ z0`` with
    ``z0 = 1/size`` (the uniform relaxed board), so the QP always has the strictly
    feasible point ``z0 > 0``. This mirrors OptNet, which keeps the learned system
    feasible by parametrizing ``b`` through an interior point.

    Parameters
    ----------
    size : int
        Board side.
    n_constraints : int
        Rows of ``A``.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``.
    scale : float, default 1.0
        Entry scale (rows have norm about ``scale``).

    Returns
    -------
    A : ndarray of float64, shape (n_constraints, size**3)
    b : ndarray of float64, shape (n_constraints,)
    """
    box_size(size)
    rng = np.random.default_rng(seed)
    n = size**3
    A = rng.standard_normal((n_constraints, n)) * (scale / np.sqrt(n))
    return A, A @ np.full(n, 1.0 / size)
