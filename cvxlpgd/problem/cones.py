"""Cone dimensions and the scaled lower-triangle ("svec") vectorization of PSD blocks.

The package uses SCS's convention everywhere internally:

    K = zero^z × nonneg^l × SOC(q_1) × … × PSD(s_1) × … × exp^ep × exp*^ed × pow(α_1) × …

in that order, and a PSD block of order n occupies n(n+1)/2 rows holding the lower
triangle of the symmetric matrix, column by column, with off-diagonal entries scaled
by √2 (so that ⟨svec X, svec Y⟩ = tr(XY)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

SQRT2 = float(np.sqrt(2.0))


@dataclass(frozen=True)
class ConeDims:
    """Dimensions of a product cone, in SCS order.

    Parameters
    ----------
    zero : int
        Number of rows in the zero cone (equality constraints).
    nonneg : int
        Number of rows in the nonnegative orthant.
    soc : tuple of int
        Sizes of the second-order cones.
    psd : tuple of int
        Orders ``n`` of the PSD cones (each occupies ``n(n+1)/2`` rows).
    exp : int
        Number of primal exponential cones (3 rows each).
    dual_exp : int
        Number of dual exponential cones (3 rows each).
    power : tuple of float
        Exponents ``α`` of the 3-dimensional power cones (3 rows each).
    """

    zero: int = 0
    nonneg: int = 0
    soc: tuple[int, ...] = ()
    psd: tuple[int, ...] = ()
    exp: int = 0
    dual_exp: int = 0
    power: tuple[float, ...] = ()

    @property
    def size(self) -> int:
        """Total number of rows ``m`` of the cone."""
        return (
            self.zero
            + self.nonneg
            + sum(self.soc)
            + sum(svec_size(n) for n in self.psd)
            + 3 * (self.exp + self.dual_exp + len(self.power))
        )

    @property
    def psd_offsets(self) -> tuple[int, ...]:
        """Row offset of each PSD block."""
        offset = self.zero + self.nonneg + sum(self.soc)
        offsets = []
        for n in self.psd:
            offsets.append(offset)
            offset += svec_size(n)
        return tuple(offsets)

    def to_scs(self) -> dict:
        """The cone as the dictionary SCS and diffcp expect (keys z, l, q, s, ep, ed, p).

        Returns
        -------
        dict
        """
        return {
            "z": self.zero,
            "l": self.nonneg,
            "q": list(self.soc),
            "s": list(self.psd),
            "ep": self.exp,
            "ed": self.dual_exp,
            "p": list(self.power),
        }


def svec_size(n: int) -> int:
    """Number of rows ``n(n+1)/2`` of a PSD block of order ``n``.

    Parameters
    ----------
    n : int
        Order of the PSD block.

    Returns
    -------
    int
    """
    return n * (n + 1) // 2


def svec_lower_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle, in svec (column-major) order.

    Parameters
    ----------
    n : int
        Matrix order.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(rows, cols)`` with ``rows ≥ cols``, ordered by column, then row.
    """
    cols, rows = np.triu_indices(n)  # (j, i) with j ≤ i, ordered by j then i
    return rows, cols


def svec_unpack_matrix(n: int) -> sp.csr_matrix:
    """Sparse ``U`` with ``vec(X) = U @ svec(X)`` (vec column-major, full symmetric X).

    ``X_ii = v_k`` and ``X_ij = X_ji = v_k / √2`` for the off-diagonal entries.

    Parameters
    ----------
    n : int
        Matrix order.

    Returns
    -------
    scipy.sparse.csr_matrix
        Shape ``(n², n(n+1)/2)``.
    """
    rows, cols = svec_lower_indices(n)
    k = np.arange(rows.size)
    scale = np.where(rows == cols, 1.0, 1.0 / SQRT2)
    off = rows != cols
    out_rows = np.concatenate([rows + n * cols, (cols + n * rows)[off]])
    in_cols = np.concatenate([k, k[off]])
    values = np.concatenate([scale, scale[off]])
    return sp.csr_matrix((values, (out_rows, in_cols)), shape=(n * n, rows.size))


def svec_unpack(vector: np.ndarray, n: int) -> np.ndarray:
    """The symmetric ``n × n`` matrix whose svec is ``vector``.

    Parameters
    ----------
    vector : numpy.ndarray
        svec of the matrix, length ``n(n+1)/2``.
    n : int
        Matrix order.

    Returns
    -------
    numpy.ndarray
    """
    return (svec_unpack_matrix(n) @ np.asarray(vector, dtype=float)).reshape(n, n, order="F")


def svec_pack(matrix: np.ndarray) -> np.ndarray:
    """svec of a symmetric matrix: lower triangle column-major, off-diagonals × √2.

    Parameters
    ----------
    matrix : numpy.ndarray
        A symmetric ``n × n`` matrix (only its lower triangle is read).

    Returns
    -------
    numpy.ndarray
        Length ``n(n+1)/2``; ``⟨svec X, svec Y⟩ = tr(XY)``.
    """
    matrix = np.asarray(matrix, dtype=float)
    rows, cols = svec_lower_indices(matrix.shape[0])
    return matrix[rows, cols] * np.where(rows == cols, 1.0, SQRT2)
