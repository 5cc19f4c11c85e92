"""LPGD on a batch: perturbed re-solves and finite differences of the Lagrangian's data gradient.

Symbols as in the docs (``docs/lpgd.md``). Cone program (SCS form)

    minimize ½ xᵀPx + cᵀx   s.t.  Ax + s = b,  s ∈ K,       L = ½ xᵀPx + cᵀx + yᵀ(Ax + s − b)

with data gradient of the Lagrangian at (x, y)

    G(x, y) = (∂L/∂c, ∂L/∂b, ∂L/∂A, ∂L/∂P) = (x, −y, y xᵀ, ½ x xᵀ)

(∂L/∂A and ∂L/∂P restricted to the stored patterns of A and P; P is stored full
symmetric, so each stored entry P_ij gets ½ x_i x_j). For incoming gradients
(dx, dy, ds), strength τ > 0 and proximal weight ρ ≥ 0, the side σ ∈ {+1, −1} solves

    minimize ½ xᵀPx + (c + στ dx)ᵀx + στ dsᵀs + (ρ/2)‖x − x*‖² [+ (ρ/2)‖s − s*‖² if ds ≠ 0]
    s.t.     Ax + s = b − στ dy,  s ∈ K.

Substituting s = b' − Ax (b' = b − στ dy) keeps A and K unchanged:

    c' = c + στ (dx − Aᵀds) − ρ x* [− ρ Aᵀ(b' − s*)],    P' = P + ρI [+ ρ AᵀA]

(bracketed terms only when ds ≠ 0). With ρ = 0 the re-solve has the forward
problem's matrices, so a solver reuses its factorization. The substitution moves the
s-terms out of the Lagrangian, so the dual of the perturbed problem as stated is
recovered from the solver's y as

    y_σ = y − στ ds [− ρ(s − s*)]       (x-stationarity of both forms).

The gradient replacement is

    upper:   (G(x₊, y₊) − G(x*, y*)) / τ
    lower:   (G(x*, y*) − G(x₋, y₋)) / τ
    central: (G(x₊, y₊) − G(x₋, y₋)) / (2τ).

Everything here is array arithmetic on whole batches (row ``i`` is element ``i``);
:mod:`cvxlpgd.lpgd.backward` runs the re-solves (one batched call per side) and the
fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern
from cvxlpgd.solvers.base import BatchSolution

LPGD_MODES = ("central", "upper", "lower")
SIDES = {"central": (+1, -1), "upper": (+1,), "lower": (-1,)}
SIDE_NAMES = {+1: "upper", -1: "lower"}


@dataclass
class DataGradient:
    """Gradient with respect to the cone-program data, one row per batch element.

    Attributes
    ----------
    dc : numpy.ndarray
        Gradient in c, (B, n).
    db : numpy.ndarray
        Gradient in b, (B, m).
    dA_data : numpy.ndarray or None
        Gradient in the stored entries of A, (B, nnz_A), in pattern order; None when
        not wanted (no parameter enters A).
    dP_data : numpy.ndarray or None
        Gradient in the stored entries of P (both triangles), (B, nnz_P); None without
        P or when not wanted.
    """

    dc: np.ndarray
    db: np.ndarray
    dA_data: np.ndarray | None
    dP_data: np.ndarray | None

    @classmethod
    def zeros(
        cls,
        structure: ProgramStructure,
        batch_size: int,
        matrices: tuple[bool, bool] = (True, True),
    ) -> DataGradient:
        """All-zero arrays for ``batch_size`` elements of ``structure``.

        Parameters
        ----------
        structure : ProgramStructure
            Cones and patterns.
        batch_size : int
            B.
        matrices : (bool, bool), default (True, True)
            Whether the gradients in A and in P are wanted (None otherwise).

        Returns
        -------
        DataGradient
        """
        P = structure.P_pattern
        want_A, want_P = matrices
        return cls(
            dc=np.zeros((batch_size, structure.n)),
            db=np.zeros((batch_size, structure.m)),
            dA_data=np.zeros((batch_size, structure.A_pattern.nnz)) if want_A else None,
            dP_data=None if P is None or not want_P else np.zeros((batch_size, P.nnz)),
        )

    def parts(self) -> tuple[np.ndarray | None, ...]:
        """``(dc, db, dA_data, dP_data)``."""
        return self.dc, self.db, self.dA_data, self.dP_data

    def __sub__(self, other: DataGradient) -> DataGradient:
        dc, db, dA, dP = (
            None if a is None or b is None else a - b for a, b in zip(self.parts(), other.parts())
        )
        assert dc is not None and db is not None
        return DataGradient(dc, db, dA, dP)


def lagrangian_data_gradient(
    x: np.ndarray, y: np.ndarray, A_pattern: SparsePattern, P_pattern: SparsePattern | None = None
) -> DataGradient:
    """G(x, y) = (x, −y, y xᵀ, ½ x xᵀ) on the stored entries of A and P, per row.

    Parameters
    ----------
    x : numpy.ndarray
        Primal points, (B, n) (or one point of length n).
    y : numpy.ndarray
        Dual points, (B, m) (or length m).
    A_pattern : SparsePattern
        Entry k of A gets ``y[rows[k]] * x[cols[k]]``.
    P_pattern : SparsePattern, optional
        Entry k of P (full symmetric storage) gets ``½ x[rows[k]] * x[cols[k]]``.

    Returns
    -------
    DataGradient
        With the shapes of the input (rows, or single vectors).
    """
    dP = None if P_pattern is None else 0.5 * x[..., P_pattern.rows] * x[..., P_pattern.cols]
    return DataGradient(
        dc=np.array(x, dtype=float),
        db=-np.asarray(y, dtype=float),
        dA_data=y[..., A_pattern.rows] * x[..., A_pattern.cols],
        dP_data=dP,
    )


def validate_lpgd_options(tau: float, rho: float, mode: str) -> None:
    """Check the LPGD options.

    Parameters
    ----------
    tau : float
        Perturbation strength; must be positive and finite.
    rho : float
        Proximal weight; must be nonnegative and finite.
    mode : str
        One of :data:`LPGD_MODES`.

    Raises
    ------
    ValueError
        For τ ≤ 0, ρ < 0, non-finite values or an unknown mode (the message lists the
        valid modes).
    """
    if not np.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive finite number, got {tau!r}")
    if not np.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a nonnegative finite number, got {rho!r}")
    if mode not in LPGD_MODES:
        raise ValueError(f"lpgd_mode must be one of {LPGD_MODES}, got {mode!r}")


def transpose_apply(A_pattern: SparsePattern, A_data: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``Aᵀ v`` for every row, A given by its stored entries.

    Parameters
    ----------
    A_pattern : SparsePattern
        Pattern of A (m × n).
    A_data : numpy.ndarray
        Stored entries, (B, nnz) (a broadcast view when shared).
    v : numpy.ndarray
        (B, m).

    Returns
    -------
    numpy.ndarray
        (B, n).
    """
    return A_pattern.sum_by(A_data * v[:, A_pattern.rows], "cols")


def perturbed_costs(
    sign: int,
    tau: float,
    rho: float,
    batch: ProgramBatch,
    A_pattern: SparsePattern,
    dx: np.ndarray,
    dy: np.ndarray,
    ds: np.ndarray | None,
    x_star: np.ndarray,
    s_star: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(C', B') of the perturbed problems on side ``sign``, every row at once.

    ``b' = b − στ dy`` and ``c' = c + στ (dx − Aᵀds) − ρx* [− ρAᵀ(b' − s*)]``, the
    bracketed term only when ``ds`` is given.

    Parameters
    ----------
    sign : int
        Side σ: +1 (upper) or −1 (lower).
    tau, rho : float
        τ and ρ.
    batch : ProgramBatch
        The forward problems.
    A_pattern : SparsePattern
        Pattern of A (for ``Aᵀ``).
    dx, dy : numpy.ndarray
        Incoming gradients (B, n) and (B, m).
    ds : numpy.ndarray or None
        Incoming gradient in s (B, m), or None for zero.
    x_star, s_star : numpy.ndarray
        The forward solutions' x (B, n) and s (B, m).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(C', B')``, (B, n) and (B, m).
    """
    step = sign * tau
    b_new = batch.b - step * dy
    c_new = batch.c + step * dx
    if ds is not None:
        c_new -= step * transpose_apply(A_pattern, batch.A_data, ds)
    if rho > 0:
        c_new -= rho * x_star
        if ds is not None:
            c_new -= rho * transpose_apply(A_pattern, batch.A_data, b_new - s_star)
    return c_new, b_new


def identifiable_dual_gradient(
    batch: ProgramBatch, structure: ProgramStructure, dy: np.ndarray
) -> np.ndarray:
    """``dy`` with its equality rows projected onto the range of their block of A.

    For the equality (zero-cone) rows A₀x = b₀, the duals y₀ are unique only up to
    null(A₀ᵀ) — the range of A₀ is what they are identified on. A component of dy₀
    in null(A₀ᵀ) is a loss on that arbitrary part, and perturbing b₀ − τdy₀ along it
    leaves range(A₀): the perturbed problems are infeasible at every τ (flow
    conservation, transport balances, assignment sums: rank-deficient A₀). So

        dy₀ ← Q Qᵀ dy₀,  Q an orthonormal basis of range(A₀)

    (nothing changes when A₀ has full row rank).

    Parameters
    ----------
    batch : ProgramBatch
        The forward problems.
    structure : ProgramStructure
        Their cones and patterns.
    dy : numpy.ndarray
        Incoming gradients in y, (B, m).

    Returns
    -------
    numpy.ndarray
        ``dy`` itself, or a projected copy.
    """
    zero = structure.cones.zero
    rows = np.flatnonzero(np.any(dy[:, :zero] != 0, axis=1)) if zero else np.zeros(0, int)
    if rows.size == 0:
        return dy
    out = dy.copy()
    shared = batch.shared_matrices
    basis = None
    for i in rows:
        if basis is None or not shared:
            A, _ = batch.element_matrices(structure, int(i))
            basis = scipy.linalg.orth(A[:zero].toarray())
        out[i, :zero] = basis @ (basis.T @ dy[i, :zero])
    return out


def perturbed_dual(
    sign: int,
    tau: float,
    rho: float,
    solution: BatchSolution,
    ds: np.ndarray | None,
    s_star: np.ndarray,
) -> np.ndarray:
    """Duals of the perturbed problems with s in the objective, from the substituted ones.

    ``y_σ = y − στ ds [− ρ(s − s*)]`` (x-stationarity of both forms).

    Parameters
    ----------
    sign : int
        Side σ.
    tau, rho : float
        τ and ρ.
    solution : BatchSolution
        The perturbed (substituted) problems' solutions.
    ds : numpy.ndarray or None
        Incoming gradient in s; None returns ``solution.y`` unchanged.
    s_star : numpy.ndarray
        The forward solutions' s.

    Returns
    -------
    numpy.ndarray
        (B, m).
    """
    if ds is None:
        return solution.y
    y = solution.y - sign * tau * ds
    if rho > 0:
        y = y - rho * (solution.s - s_star)
    return y
