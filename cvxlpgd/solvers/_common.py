"""Helpers shared by the solver backends: input checks and row permutations.

Nothing here talks to a solver; the backends use these to translate between the
package's SCS convention and each solver's own ordering.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims, svec_size


def as_csc(matrix, name: str) -> sp.csc_matrix:
    """``matrix`` as a float64 CSC matrix with sorted indices and no explicit zeros.

    ``sp.csc_matrix`` (not ``csc_array``) because ECOS checks ``isspmatrix_csc``
    and would otherwise warn and convert on every solve.

    Parameters
    ----------
    matrix : scipy sparse matrix or array_like
        The matrix to convert.
    name : str
        Its name, for error messages.

    Returns
    -------
    scipy.sparse.csc_matrix

    Raises
    ------
    ValueError
        If the matrix is not two-dimensional or holds non-finite values.
    """
    out = sp.csc_matrix(matrix, dtype=np.float64, copy=True)
    if out.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {out.shape}")
    if not np.all(np.isfinite(out.data)):
        raise ValueError(f"{name} holds non-finite values")
    out.eliminate_zeros()
    out.sort_indices()
    return out


def check_shapes(A: sp.spmatrix, P: sp.spmatrix | None, cones: ConeDims) -> None:
    """Check that A, P and the cone dimensions agree.

    Raises
    ------
    ValueError
        Naming the offending shape.
    """
    m, n = A.shape
    if cones.size != m:
        raise ValueError(f"A has {m} rows but the cone {cones} has size {cones.size}")
    if P is not None and P.shape != (n, n):
        raise ValueError(f"P must have shape ({n}, {n}) to match A's {n} columns, got {P.shape}")


def as_vector(value, size: int, name: str) -> np.ndarray:
    """A finite, contiguous float64 vector of length ``size`` (a fresh copy).

    Raises
    ------
    ValueError
        If the length is wrong or an entry is not finite.
    """
    out = np.array(value, dtype=np.float64, copy=True).reshape(-1)
    if out.size != size:
        raise ValueError(f"{name} must have length {size}, got shape {np.shape(value)}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds non-finite values")
    return out


def check_warm_start(warm_start, n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a warm start ``(x, y, s)`` and return float64 copies.

    Raises
    ------
    ValueError
        If it is not a triple of vectors of lengths ``(n, m, m)``.
    """
    try:
        x, y, s = warm_start
    except (TypeError, ValueError) as err:
        raise ValueError("warm_start must be a tuple (x, y, s) or None") from err
    return (
        as_vector(x, n, "warm_start x"),
        as_vector(y, m, "warm_start y"),
        as_vector(s, m, "warm_start s"),
    )


def merge_settings(defaults: dict, settings: dict | None) -> dict:
    """The user's settings merged over a copy of the defaults."""
    merged = dict(defaults)
    if settings:
        merged.update(settings)
    return merged


#: Names other solvers (and cvxpylayers code) use for an interior-point solver's
#: settings, with the same meaning: an iteration cap, and one tolerance for the gap and
#: feasibility criteria.
INTERIOR_POINT_ALIASES = {
    "max_iters": ("max_iter",),
    "tol": ("tol_gap_abs", "tol_gap_rel", "tol_feas"),
}


def resolve_aliases(settings: dict | None, aliases: dict) -> dict:
    """``settings`` with alias names replaced by the names they stand for.

    A name given explicitly wins over an alias for it.

    Parameters
    ----------
    settings : dict or None
        The user's settings.
    aliases : dict
        Alias → tuple of setting names.

    Returns
    -------
    dict
        A new dictionary.
    """
    out = dict(settings or {})
    for alias, names in aliases.items():
        if alias in out:
            value = out.pop(alias)
            for name in names:
                out.setdefault(name, value)
    return out


def psd_upper_permutation(cones: ConeDims) -> np.ndarray | None:
    """Row permutation from SCS's PSD triangles to upper-triangle column-major order.

    SCS stores a PSD block as the lower triangle column by column; Clarabel
    (``PSDTriangleConeT``) as the upper triangle column by column. Both scale the
    off-diagonals by √2, so only the order differs. Position ``p`` of Clarabel's block
    holds entry ``(r, c)`` with ``r ≤ c``, which is the SCS entry ``(c, r)``.

    Returns
    -------
    numpy.ndarray or None
        ``perm`` with ``v_clarabel = v_scs[perm]`` (and ``v_scs[perm] = v_clarabel``),
        or None when there is no PSD block of order ≥ 2 (identity).
    """
    if not any(n >= 2 for n in cones.psd):
        return None
    perm = np.arange(cones.size)
    for offset, n in zip(cones.psd_offsets, cones.psd):
        perm[offset : offset + svec_size(n)] = offset + _upper_to_lower_positions(n)
    return perm


def _upper_to_lower_positions(n: int) -> np.ndarray:
    """For each upper-triangle position, the index of the same entry in SCS's svec."""
    # SCS svec index of lower entry (i, j), i ≥ j, column-major:
    #   j*n - j*(j-1)/2 + (i - j)
    rows, cols = np.triu_indices(n)  # row-major upper == column-major lower order
    order = np.lexsort((rows, cols))  # re-sort to column-major upper: by column, then row
    r, c = rows[order], cols[order]
    i, j = c, r  # the mirrored lower-triangle entry
    return j * n - j * (j - 1) // 2 + (i - j)


def exp_swap_permutation(cones: ConeDims) -> np.ndarray | None:
    """Row permutation swapping the 2nd and 3rd coordinate of every exponential cone.

    SCS's exponential cone is ``(x, y, z)`` with ``y·exp(x/y) ≤ z``; ECOS's orders the
    same triple as ``(x, z, y)``. The permutation is its own inverse.

    Returns
    -------
    numpy.ndarray or None
        ``perm`` with ``v_ecos = v_scs[perm]``, or None when there is no exp cone.
    """
    if cones.exp == 0:
        return None
    perm = np.arange(cones.size)
    start = cones.size - 3 * (cones.exp + cones.dual_exp + len(cones.power))
    for k in range(cones.exp):
        row = start + 3 * k
        perm[row + 1], perm[row + 2] = row + 2, row + 1
    return perm


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """The inverse of a permutation vector."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.size)
    return inverse
