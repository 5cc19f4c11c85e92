"""The data of a batch of cone programs that share one structure.

A cone program in SCS form (``minimize ½xᵀPx + cᵀx s.t. Ax + s = b, s ∈ K``) splits
into a *structure* — the cone K and the sparsity patterns of A and P, fixed when a
problem is compiled — and *values*: the stored entries of A and P and the vectors
c and b. A batch holds the values of B programs of one structure, one row per
element (batch first, as PyTorch and Moreau order them):

    c: (B, n)    b: (B, m)    A_data: (B, nnz_A)    P_data: (B, nnz_P) or None

When A and P are the same for every element (they depend on no batched parameter)
``A_data``/``P_data`` are read-only broadcast views of one row: a solver then sets
up one factorization for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims

#: Shared matrices with at most this many entries (m · n) are also kept dense: products
#: with a whole batch are then one BLAS call instead of per-entry gathers.
SHARED_DENSE_ENTRIES = 1 << 18


@dataclass(frozen=True)
class SparsePattern:
    """A fixed CSC sparsity pattern (row indices of the stored entries, column pointers).

    Attributes
    ----------
    rows, cols : numpy.ndarray
        Row and column index of every stored entry, in CSC order.
    indptr : numpy.ndarray
        CSC column pointers.
    shape : tuple of int
        The matrix shape.
    """

    rows: np.ndarray
    cols: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]
    #: Selector matrices built so far (they are used on every call).
    _selectors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.rows.size)

    @classmethod
    def of(cls, matrix) -> SparsePattern:
        """The pattern of a sparse matrix's stored entries (explicit zeros kept).

        Parameters
        ----------
        matrix : scipy sparse matrix
            Any format; read as CSC with sorted indices.

        Returns
        -------
        SparsePattern
        """
        csc = sp.csc_matrix(matrix)
        csc.sort_indices()
        cols = np.repeat(np.arange(csc.shape[1]), np.diff(csc.indptr))
        return cls(
            rows=csc.indices.astype(np.int32),
            cols=cols.astype(np.int32),
            indptr=csc.indptr.astype(np.int32),
            shape=tuple(csc.shape),
        )

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The CSC matrix with this pattern holding ``data`` (copied).

        Parameters
        ----------
        data : numpy.ndarray
            One value per stored entry, in pattern order.

        Returns
        -------
        scipy.sparse.csc_matrix
        """
        return sp.csc_matrix(
            (np.array(data, dtype=float), self.rows.copy(), self.indptr.copy()), shape=self.shape
        )

    def csr_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same pattern in CSR order, for solvers that take rows (Moreau).

        Returns
        -------
        order : numpy.ndarray
            Position in CSC order of each CSR entry: ``data_csr = data_csc[..., order]``.
        row_offsets, col_indices : numpy.ndarray
            CSR row pointers and column indices (int64).
        """
        order = np.lexsort((self.cols, self.rows))
        row_offsets = np.searchsorted(self.rows[order], np.arange(self.shape[0] + 1))
        return order, row_offsets.astype(np.int64), self.cols[order].astype(np.int64)

    def sum_by(self, values: np.ndarray, by: str) -> np.ndarray:
        """Sum per-entry values by row or by column of the pattern, for every element.

        ``out[e, j] = Σ_{k: index(k) = j} values[e, k]`` with ``index`` the entries'
        rows (``by="rows"``) or columns (``by="cols"``): e.g.
        ``sum_by(A_data * V[:, rows], "cols")`` is ``Aᵀ v`` for every element at once.
        The 0/1 summing matrix is built once per pattern and direction.

        Parameters
        ----------
        values : numpy.ndarray
            (B, nnz).
        by : {"rows", "cols"}
            Which index to sum by.

        Returns
        -------
        numpy.ndarray
            (B, m) or (B, n).
        """
        summing = self._selectors.get(by)
        if summing is None:
            index = self.rows if by == "rows" else self.cols
            size = self.shape[0] if by == "rows" else self.shape[1]
            summing = self._selectors[by] = sp.csr_matrix(
                (np.ones(self.nnz), (index, np.arange(self.nnz))), shape=(size, self.nnz)
            )
        return np.ascontiguousarray((summing @ np.asarray(values).T).T)


@dataclass(frozen=True)
class ProgramStructure:
    """What every program of a batch shares: the cone and the patterns of A and P.

    Attributes
    ----------
    cones : ConeDims
        The cone K.
    A_pattern : SparsePattern
        Pattern of A (m × n).
    P_pattern : SparsePattern or None
        Pattern of P (n × n, both triangles), None without a quadratic term.
    """

    cones: ConeDims
    A_pattern: SparsePattern
    P_pattern: SparsePattern | None

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.A_pattern.shape[1]

    @property
    def m(self) -> int:
        """Number of constraint rows."""
        return self.A_pattern.shape[0]


def _is_broadcast(data: np.ndarray | None) -> bool:
    return data is None or data.shape[0] == 1 or data.strides[0] == 0


def _equal_rows(data: np.ndarray) -> bool:
    """Whether every row equals the first (the last row first: a cheap early no)."""
    return bool(
        np.array_equal(data[0], data[-1])
        and np.array_equal(data, np.broadcast_to(data[:1], data.shape))
    )


@dataclass
class ProgramBatch:
    """Values of a batch of programs of one structure; row ``i`` is element ``i``.

    Attributes
    ----------
    c : numpy.ndarray
        Costs, (B, n).
    b : numpy.ndarray
        Right-hand sides, (B, m).
    A_data : numpy.ndarray
        Stored entries of A, (B, nnz_A) (possibly a broadcast view of one row).
    P_data : numpy.ndarray or None
        Stored entries of P, (B, nnz_P), or None without a quadratic term.
    """

    c: np.ndarray
    b: np.ndarray
    A_data: np.ndarray
    P_data: np.ndarray | None
    #: What is known of the matrices, computed once and carried to batches made by
    #: :meth:`with_vectors` (same A and P): the shared flag and element matrices.
    _matrix_facts: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        """Number of elements B."""
        return self.c.shape[0]

    @property
    def shared_matrices(self) -> bool:
        """True when every element has the same A and P (one factorization serves all).

        Broadcast views are recognized without comparing; otherwise the rows are
        compared once per batch (a batch whose matrix parameters happen to be equal,
        e.g. tiled by ``vmap``, shares too).
        """
        shared = self._matrix_facts.get("shared")
        if shared is None:
            shared = self._matrix_facts["shared"] = all(
                data is None or _is_broadcast(data) or _equal_rows(data)
                for data in (self.A_data, self.P_data)
            )
        return shared

    def rows(self, index) -> ProgramBatch:
        """The elements ``index`` (a slice or an index array) as a batch.

        Shared matrices stay broadcast views of one row.
        """
        c = self.c[index]

        def pick(data):
            if data is None:
                return None
            if _is_broadcast(data):
                return np.broadcast_to(data[0], (c.shape[0], data.shape[1]))
            return data[index]

        return ProgramBatch(
            c=c, b=self.b[index], A_data=pick(self.A_data), P_data=pick(self.P_data)
        )

    def with_vectors(self, c: np.ndarray, b: np.ndarray) -> ProgramBatch:
        """The same matrices with other costs and right-hand sides (LPGD re-solves)."""
        return replace(self, c=c, b=b)

    def element_matrices(self, structure: ProgramStructure, index: int):
        """A (and P, or None) of element ``index`` as CSC matrices.

        Parameters
        ----------
        structure : ProgramStructure
            The patterns the entries belong to.
        index : int
            Batch index.

        Returns
        -------
        (scipy.sparse.csc_matrix, scipy.sparse.csc_matrix or None)
        """
        if index == 0 and self.shared_matrices and "matrices" in self._matrix_facts:
            return self._matrix_facts["matrices"]
        A = structure.A_pattern.matrix(self.A_data[index])
        P = (
            None
            if structure.P_pattern is None or self.P_data is None
            else structure.P_pattern.matrix(self.P_data[index])
        )
        if index == 0 and self.shared_matrices:
            self._matrix_facts["matrices"] = (A, P)
        return A, P

    def shared_dense(self, structure: ProgramStructure):
        """(A, |A|, P, |P|) as dense arrays (P, |P| None without P) when the batch shares
        its matrices and A has at most :data:`SHARED_DENSE_ENTRIES` entries, else None
        (built once per batch and kept with its other matrix facts)."""
        m, n = structure.A_pattern.shape
        if m * n > SHARED_DENSE_ENTRIES or not self.shared_matrices:
            return None
        if "dense" not in self._matrix_facts:
            A, P = self.element_matrices(structure, 0)
            A_dense = A.toarray()
            P_dense = None if P is None else P.toarray()
            self._matrix_facts["dense"] = (
                A_dense,
                np.abs(A_dense),
                P_dense,
                None if P_dense is None else np.abs(P_dense),
            )
        return self._matrix_facts["dense"]
