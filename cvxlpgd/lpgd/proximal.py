"""The proximal term of LPGD: P′ = P + ρI [+ ρAᵀA] on a widened pattern.

With ρ > 0 each side re-solves with the proximal weight ρ on x (and on s when a slack
gradient ds is given); substituting s = b′ − Ax keeps A and K, so only P changes
(formulas: :mod:`cvxlpgd.lpgd.formulas`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern


@dataclass(frozen=True)
class ProximalStructure:
    """The structure of the ρ-regularized problems: P' = P + ρI [+ ρAᵀA].

    Attributes
    ----------
    structure : ProgramStructure
        Cones, A's pattern, and P's pattern widened by the diagonal (and AᵀA's).
    P_positions : numpy.ndarray or None
        Where each stored entry of the original P goes in P'.
    diagonal_positions : numpy.ndarray
        Where the diagonal entries of P' are.
    slack_term : bool
        Whether ρAᵀA is part of P' (ds ≠ 0).
    """

    structure: ProgramStructure
    P_positions: np.ndarray | None
    diagonal_positions: np.ndarray
    slack_term: bool


def proximal_structure(structure: ProgramStructure, slack_term: bool) -> ProximalStructure:
    """The pattern of P' = P + ρI [+ ρAᵀA] and where P's and the diagonal's entries go.

    Parameters
    ----------
    structure : ProgramStructure
        The forward problems' structure.
    slack_term : bool
        Include AᵀA's pattern (when ds ≠ 0 is regularized too).

    Returns
    -------
    ProximalStructure
    """
    n = structure.n
    union = sp.identity(n, format="csc")
    if structure.P_pattern is not None:
        union = union + structure.P_pattern.matrix(np.ones(structure.P_pattern.nnz))
    if slack_term:
        A = structure.A_pattern.matrix(np.ones(structure.A_pattern.nnz))
        union = union + A.T @ A
    union = sp.csc_matrix(union)
    union.sort_indices()
    cols = np.repeat(np.arange(n), np.diff(union.indptr))
    pattern = SparsePattern(
        rows=union.indices.astype(np.int32),
        cols=cols.astype(np.int32),
        indptr=union.indptr.astype(np.int32),
        shape=(n, n),
    )
    position = sp.csc_matrix(
        (np.arange(1, union.nnz + 1, dtype=float), union.indices, union.indptr), shape=(n, n)
    )

    def locate(rows, columns):
        return np.asarray(position[rows, columns]).ravel().astype(np.int64) - 1

    P = structure.P_pattern
    return ProximalStructure(
        structure=ProgramStructure(structure.cones, structure.A_pattern, pattern),
        P_positions=None if P is None else locate(P.rows, P.cols),
        diagonal_positions=locate(np.arange(n), np.arange(n)),
        slack_term=slack_term,
    )


def proximal_batch(
    batch: ProgramBatch, rho: float, proximal: ProximalStructure, structure: ProgramStructure
) -> ProgramBatch:
    """The batch with P'_data = P + ρI [+ ρAᵀA] on the proximal pattern (same c, b, A).

    Parameters
    ----------
    batch : ProgramBatch
        The forward problems.
    rho : float
        ρ > 0.
    proximal : ProximalStructure
        From :func:`proximal_structure`.
    structure : ProgramStructure
        The forward problems' structure.

    Returns
    -------
    ProgramBatch
        ``P_data`` is a broadcast view when A and P are shared by the batch.
    """
    pattern = proximal.structure.P_pattern
    assert pattern is not None  # P' has at least the diagonal
    shared = batch.shared_matrices
    rows = 1 if shared else batch.batch_size
    data = np.zeros((rows, pattern.nnz))
    if batch.P_data is not None:
        data[:, proximal.P_positions] = batch.P_data[:rows]
    data[:, proximal.diagonal_positions] += rho
    if proximal.slack_term:
        for i in range(rows):
            A = batch.element_matrices(structure, i)[0]
            AtA = sp.csc_matrix(A.T @ A)
            data[i] += rho * np.asarray(AtA[pattern.rows, pattern.cols]).ravel()
    if shared:
        data = np.broadcast_to(data, (batch.batch_size, pattern.nnz))
    return ProgramBatch(c=batch.c, b=batch.b, A_data=batch.A_data, P_data=data)
