"""LPGD's perturbed problems on LPs and QPs, answered from the forward's active set.

Symbols as in ``docs/lpgd.md`` (section "LPs and QPs: answered from the active set").
On a polyhedral cone (zero and nonnegative rows) the perturbed problem of side σ,
minimize ½ xᵀP'x + c'ᵀx s.t. Ax + s = b', s ∈ {0}^z × R₊^l (P' = P, or P + ρI
[+ ρAᵀA]; c', b' of :func:`~cvxlpgd.lpgd.formulas.perturbed_costs`), is one linear
system when its optimal active set is the forward's. The **active set** 𝒜: the
equality rows, and the inequality rows with forward y*ᵢ > s*ᵢ (strict complementarity
decides; a degenerate row, both ≈ 0, goes with the larger). With s_𝒜 = 0, yᵢ = 0 off 𝒜:

    [ P'   A_𝒜ᵀ ] [ x   ]   [ −c'  ]
    [ A_𝒜  0    ] [ y_𝒜 ] = [ b'_𝒜 ],        s = b' − Ax.

K is the element's (and ρ's), not σ's or τ's: one factorization serves both sides, and
a third right-hand side, a fixed probe z, bounds the condition number from below,
κ∞(K) ≥ ‖K‖∞‖K⁻¹z‖∞/‖z‖∞. A batch that shares A and P' = LLᵀ ≻ 0 takes the smaller
range-space form, with W = L⁻¹Aᵀ and v = L⁻¹c':

    (W_𝒜ᵀ W_𝒜) y_𝒜 = −(W_𝒜ᵀ v + b'_𝒜),        x = −L⁻ᵀ(v + W_𝒜 y_𝒜).

**Not predicted**: more active rows than variables (a degenerate vertex), a singular
system or κ > 1/:data:`RCOND_MIN` (non-unique vertex or duals, duplicated rows).
A prediction is used only once :mod:`cvxlpgd.engine.prediction` has verified it (the
solvers' checks, and strict complementarity); every other element goes to the solvers.
Stacked dense LU (one BLAS thread) up to :data:`DENSE_LIMIT` rows, SuperLU above.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.parallel import one_blas_thread

#: ``SolveRecord.solver`` of a perturbed problem the active set answered.
ACTIVE_SET = "active-set"
#: Systems with more rows than this are factorized sparse (SuperLU), one at a time
#: (measured, 16 elements, half of n rows active: stacked dense LU 2.3 ms against
#: SuperLU's 21 at n = 100, 28 against 35 at n = 200, 226 against 33 at n = 400).
DENSE_LIMIT = 300
#: Reciprocal condition number below which an element's system is not trusted.
RCOND_MIN = 1e-10
#: Numbers per block of stacked dense systems (bounds the memory: 64 MiB).
_BLOCK_ENTRIES = 1 << 23


def polyhedral(structure: ProgramStructure) -> bool:
    """Whether every cone of ``structure`` is a zero or nonnegative cone (an LP or QP).

    Parameters
    ----------
    structure : ProgramStructure

    Returns
    -------
    bool
    """
    cones = structure.cones
    return cones.size == cones.zero + cones.nonneg


def active_rows(y: np.ndarray, s: np.ndarray, zero: int) -> np.ndarray:
    """The active sets: equality rows, and inequality rows with y > s.

    Parameters
    ----------
    y, s : numpy.ndarray
        Forward duals and slacks, (B, m), of a polyhedral problem.
    zero : int
        Number of equality (zero-cone) rows, the first ones.

    Returns
    -------
    numpy.ndarray
        (B, m) booleans.
    """
    active = y > s
    active[:, :zero] = True
    return active


def _solve(K: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve a stack of systems with the probe appended: solutions, and which to trust
    (a singular member is solved alone, and not trusted)."""
    probe = np.asarray(np.random.default_rng(7).uniform(0.5, 1.0, K.shape[1]))
    probe[1::2] *= -1
    rhs = np.concatenate([rhs, np.broadcast_to(probe[:, None], (*K.shape[:2], 1))], axis=2)
    trusted = np.ones(K.shape[0], dtype=bool)
    try:
        out = np.linalg.solve(K, rhs)
    except np.linalg.LinAlgError:
        out = np.full(rhs.shape, np.nan)
        for i in range(K.shape[0]):
            try:
                out[i] = np.linalg.solve(K[i], rhs[i])
            except np.linalg.LinAlgError:
                trusted[i] = False
    growth = np.abs(out[:, :, -1]).max(axis=1) * np.abs(K).sum(axis=2).max(axis=1)
    with np.errstate(invalid="ignore"):
        trusted &= np.isfinite(out).all(axis=(1, 2)) & (growth * RCOND_MIN < 1)
    return out[:, :, :-1], trusted


def _index(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row j of element i's active set (m, a zero row, beyond kᵢ) and the padding mask."""
    counts = active.sum(axis=1)
    width = int(counts.max()) if counts.size else 0
    pad = np.arange(width)[None, :] >= counts[:, None]
    order = np.argsort(~active, axis=1, kind="stable")[:, :width]
    return np.where(pad, active.shape[1], order), pad


def _gather(b: np.ndarray, index: np.ndarray) -> np.ndarray:
    """b'_𝒜 per element, zero on the padding."""
    return np.take_along_axis(np.concatenate([b, np.zeros((b.shape[0], 1))], axis=1), index, axis=1)


def _scatter(values: np.ndarray, index: np.ndarray, m: int) -> np.ndarray:
    """y (k, m) from y_𝒜 (k, width)."""
    y = np.zeros((values.shape[0], m + 1))
    np.put_along_axis(y, index, values, axis=1)
    return y[:, :m]


def _dense(batch: ProgramBatch, structure: ProgramStructure, rows: np.ndarray):
    """Dense A (k, m, n) and P (k, n, n) or None of elements ``rows``."""
    A_pat, P_pat = structure.A_pattern, structure.P_pattern
    A = np.zeros((rows.size, *A_pat.shape))
    A[:, A_pat.rows, A_pat.cols] = batch.A_data[rows]
    P = None
    if P_pat is not None and batch.P_data is not None:
        P = np.zeros((rows.size, *P_pat.shape))
        P[:, P_pat.rows, P_pat.cols] = batch.P_data[rows]
    return A, P


def _kkt_block(sides, structure, active, rows):
    """The padded KKT systems of elements ``rows``, stacked (identity rows pad them)."""
    m, n = structure.A_pattern.shape
    index, pad = _index(active[rows])
    width = index.shape[1]
    A, P = _dense(sides[0], structure, rows[:1] if sides[0].shared_matrices else rows)
    A = np.concatenate([A, np.zeros((A.shape[0], 1, n))], axis=1)
    A_act = A[0][index] if A.shape[0] == 1 else np.take_along_axis(A, index[:, :, None], 1)
    K = np.zeros((rows.size, n + width, n + width))
    if P is not None:
        K[:, :n, :n] = P
    K[:, n:, :n] = A_act
    K[:, :n, n:] = A_act.transpose(0, 2, 1)
    K[:, n + np.arange(width), n + np.arange(width)] = pad
    rhs = np.stack(
        [np.concatenate([-side.c[rows], _gather(side.b[rows], index)], axis=1) for side in sides],
        axis=2,
    )
    out, trusted = _solve(K, rhs)
    x = out[:, :n, :].transpose(2, 0, 1)
    y = np.stack([_scatter(out[:, n:, k], index, m) for k in range(len(sides))])
    return x, y, trusted


def _range_space_block(sides, structure, active, rows, L, W):
    """Shared A and P' = LLᵀ ≻ 0: the range-space systems (W_𝒜ᵀW_𝒜) y_𝒜 = … stacked."""
    m, n = structure.A_pattern.shape
    index, pad = _index(active[rows])
    width = index.shape[1]
    W_act = np.concatenate([W, np.zeros((n, 1))], axis=1)[:, index].transpose(1, 0, 2)
    S = np.matmul(W_act.transpose(0, 2, 1), W_act)
    S[:, np.arange(width), np.arange(width)] += pad
    v = [scipy.linalg.solve_triangular(L, side.c[rows].T, lower=True).T for side in sides]
    rhs = np.stack(
        [
            -(np.einsum("knw,kn->kw", W_act, vk) + _gather(side.b[rows], index))
            for side, vk in zip(sides, v)
        ],
        axis=2,
    )
    y_act, trusted = _solve(S, rhs) if width else (rhs, np.ones(rows.size, dtype=bool))
    x = np.stack(
        [
            -scipy.linalg.solve_triangular(
                L.T,
                (vk + np.einsum("knw,kw->kn", W_act, y_act[:, :, k])).T,
                lower=False,
                check_finite=False,
            ).T
            for k, vk in enumerate(v)
        ]
    )
    y = np.stack([_scatter(y_act[:, :, k], index, m) for k in range(len(sides))])
    return x, y, trusted


def _range_space_factors(batch: ProgramBatch, structure: ProgramStructure):
    """(L, W = L⁻¹Aᵀ) for a batch that shares A and a well-conditioned P ≻ 0, else None."""
    if structure.P_pattern is None or batch.P_data is None or not batch.shared_matrices:
        return None
    A, P = _dense(batch, structure, np.zeros(1, dtype=np.int64))
    assert P is not None
    try:
        L = np.linalg.cholesky(P[0])
    except np.linalg.LinAlgError:
        return None
    diagonal = np.abs(np.diag(L))
    if diagonal.min() ** 2 < RCOND_MIN * diagonal.max() ** 2:
        return None
    return L, scipy.linalg.solve_triangular(L, A[0].T, lower=True)


def _sparse_one(sides, structure, active, i):
    """SuperLU on element i's KKT system: x (S, n), y (S, m) and whether trusted."""
    m, n = structure.A_pattern.shape
    A, P = sides[0].element_matrices(structure, i)
    rows = np.flatnonzero(active[i])
    A_act = A[rows]
    K = sp.csc_matrix(
        sp.bmat([[sp.csc_matrix((n, n)) if P is None else P, A_act.T], [A_act, None]])
    )
    probe = np.random.default_rng(7).uniform(0.5, 1.0, K.shape[0])
    rhs = np.column_stack(
        [np.concatenate([-side.c[i], side.b[i, rows]]) for side in sides] + [probe]
    )
    x, y = np.full((len(sides), n), np.nan), np.zeros((len(sides), m))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", spla.MatrixRankWarning)
            out = spla.splu(K).solve(rhs)
    except RuntimeError:  # exactly singular
        return x, y, False
    growth = np.abs(out[:, -1]).max() * abs(K).sum(axis=1).max()
    x[:], y[:, rows] = out[:n, :-1].T, out[n:, :-1].T
    return x, y, bool(np.isfinite(out).all() and growth * RCOND_MIN < 1)


def predict(
    sides: list[ProgramBatch], structure: ProgramStructure, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve every element's system on its active set, for every side.

    Parameters
    ----------
    sides : list of ProgramBatch
        The perturbed problems of each side (same matrices, B elements each).
    structure : ProgramStructure
        Their (polyhedral) structure.
    active : numpy.ndarray
        (B, m) active rows (:func:`active_rows`).

    Returns
    -------
    x : numpy.ndarray
        (S, B, n) predicted primal points.
    y : numpy.ndarray
        (S, B, m) predicted duals, zero off the active set.
    trusted : numpy.ndarray
        (B,) whether the element's system was nonsingular and well conditioned (the
        other rows of ``x`` and ``y`` are meaningless).
    """
    with one_blas_thread():
        return _predict(sides, structure, active)


def _predict(sides, structure, active):
    """:func:`predict` under one BLAS thread: the systems are small, and threaded BLAS on
    each in turn is slower (up to 30× on a loaded machine: threads spin for busy cores)."""
    B, m, n = sides[0].batch_size, structure.m, structure.n
    x, y = np.full((len(sides), B, n), np.nan), np.zeros((len(sides), B, m))
    trusted = np.zeros(B, dtype=bool)
    counts = active.sum(axis=1)
    candidates = np.flatnonzero(counts <= n)  # more active rows than n: degenerate
    size = n + counts[candidates]
    dense, sparse = candidates[size <= DENSE_LIMIT], candidates[size > DENSE_LIMIT]
    factors = None
    if dense.size and n * m <= _BLOCK_ENTRIES:
        factors = _range_space_factors(sides[0], structure)
    if dense.size:
        per_element = int(size.max()) ** 2 + n * m * (factors is None)
        block = max(1, _BLOCK_ENTRIES // per_element)
        for start in range(0, dense.size, block):
            rows = dense[start : start + block]
            if factors is not None:
                part = _range_space_block(sides, structure, active, rows, *factors)
            else:
                part = _kkt_block(sides, structure, active, rows)
            x[:, rows], y[:, rows], trusted[rows] = part
    for i in sparse:
        x[:, i], y[:, i], trusted[i] = _sparse_one(sides, structure, active, int(i))
    return x, y, trusted
