"""LPGD: perturbed re-solves and finite differences of the Lagrangian's data gradient.

Symbols as in DESIGN.md. Cone program (SCS form)

    minimize ½ xᵀPx + cᵀx   s.t.  Ax + s = b,  s ∈ K,       L = ½ xᵀPx + cᵀx + yᵀ(Ax + s − b)

with data gradient of the Lagrangian at (x, y)

    G(x, y) = (∂L/∂c, ∂L/∂b, ∂L/∂A, ∂L/∂P) = (x, −y, y xᵀ, ½ x xᵀ)

(∂L/∂A and ∂L/∂P restricted to the stored patterns of A and P; P is stored as full
symmetric, so each stored entry P_ij gets ½ x_i x_j). For incoming gradients
(dx, dy, ds), strength τ > 0 and proximal weight ρ ≥ 0, the side σ ∈ {+1, −1} solves

    minimize ½ xᵀPx + (c + στ dx)ᵀx + στ dsᵀs + (ρ/2)‖x − x*‖² [+ (ρ/2)‖s − s*‖² if ds ≠ 0]
    s.t.     Ax + s = b − στ dy,  s ∈ K.

Substituting s = b' − Ax (b' = b − στ dy) keeps A and K unchanged:

    c' = c + στ (dx − Aᵀds) − ρ x* [− ρ Aᵀ(b' − s*)],    P' = P + ρI [+ ρ AᵀA]

(bracketed terms only when ds ≠ 0). With ρ = 0 the re-solve reuses the forward
factorization. The substitution moves the s-terms out of the Lagrangian, so the dual
of the perturbed problem as stated is recovered from the solver's y as

    y_σ = y − στ ds [− ρ(s − s*)]       (x-stationarity of both forms). The gradient replacement is

    upper:   (G(x₊, y₊) − G(x*, y*)) / τ
    lower:   (G(x*, y*) − G(x₋, y₋)) / τ
    central: (G(x₊, y₊) − G(x₋, y₋)) / (2τ).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cvxlpgd.compile import SparsePattern
from cvxlpgd.errors import SolverError
from cvxlpgd.solvers.base import Solution

LPGD_MODES = ("central", "upper", "lower")
_SIDES = {"central": (+1, -1), "upper": (+1,), "lower": (-1,)}
SIDE_NAMES = {+1: "upper", -1: "lower"}


@dataclass
class DataGradient:
    """Gradient with respect to the cone-program data (on the patterns of A and P).

    Attributes
    ----------
    dc : numpy.ndarray
        Gradient in c, length n (or (n, B) for a batch, one column per element).
    db : numpy.ndarray
        Gradient in b, length m.
    dA_data : numpy.ndarray
        Gradient in the stored entries of A, in the order of its sparsity pattern.
    dP_data : numpy.ndarray or None
        Gradient in the stored entries of P (both triangles), or None without P.
    """

    dc: np.ndarray
    db: np.ndarray
    dA_data: np.ndarray
    dP_data: np.ndarray | None

    def __sub__(self, other: DataGradient) -> DataGradient:
        return DataGradient(self.dc - other.dc, self.db - other.db,
                            self.dA_data - other.dA_data,
                            None if self.dP_data is None else self.dP_data - other.dP_data)

    def scaled(self, factor: float) -> DataGradient:
        """Every part multiplied by ``factor``.

        Parameters
        ----------
        factor : float
            The scale.

        Returns
        -------
        DataGradient
            A new object; this one is unchanged.
        """
        return DataGradient(factor * self.dc, factor * self.db, factor * self.dA_data,
                            None if self.dP_data is None else factor * self.dP_data)


def lagrangian_data_gradient(x: np.ndarray, y: np.ndarray, A_pattern: SparsePattern,
                             P_pattern: SparsePattern | None = None) -> DataGradient:
    """G(x, y) = (x, −y, y xᵀ, ½ x xᵀ) on the stored entries of A and P.

    The data gradient of the Lagrangian ``L = ½ xᵀPx + cᵀx + yᵀ(Ax + s − b)``.

    Parameters
    ----------
    x : numpy.ndarray
        Primal point, length n.
    y : numpy.ndarray
        Dual point, length m.
    A_pattern : SparsePattern
        Sparsity pattern of A: entry k gets ``y[rows[k]] * x[cols[k]]``.
    P_pattern : SparsePattern, optional
        Sparsity pattern of P (full symmetric storage): entry k gets
        ``½ x[rows[k]] * x[cols[k]]``. None when there is no P.

    Returns
    -------
    DataGradient
    """
    dP = None if P_pattern is None else 0.5 * x[P_pattern.rows] * x[P_pattern.cols]
    return DataGradient(dc=x.copy(), db=-y, dA_data=y[A_pattern.rows] * x[A_pattern.cols],
                        dP_data=dP)


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


def proximal_quadratic(P: sp.spmatrix | None, A: sp.spmatrix, n: int, rho: float,
                       slack_term: bool) -> sp.csc_matrix | None:
    """P' = P + ρI (+ ρAᵀA when the slack is regularized too); P unchanged for ρ = 0.

    Parameters
    ----------
    P : scipy.sparse matrix or None
        The forward problem's quadratic cost (full symmetric), or None.
    A : scipy.sparse matrix
        Constraint matrix, m × n.
    n : int
        Number of variables.
    rho : float
        Proximal weight ρ ≥ 0.
    slack_term : bool
        Whether ``(ρ/2)‖s − s*‖²`` is part of the objective (when ds ≠ 0); substituting
        ``s = b' − Ax`` turns it into ``ρAᵀA``.

    Returns
    -------
    scipy.sparse.csc_matrix or None
        P' in CSC format, or ``P`` itself when ρ = 0.
    """
    if rho == 0:
        return P
    P_new = rho * sp.identity(n, format="csc")
    if slack_term:
        P_new = P_new + rho * (A.T @ A)
    if P is not None:
        P_new = P_new + P
    return sp.csc_matrix(P_new)


def perturbed_costs(sign: int, tau: float, rho: float, c: np.ndarray, b: np.ndarray,
                    A: sp.spmatrix, dx: np.ndarray, dy: np.ndarray, ds: np.ndarray | None,
                    x_star: np.ndarray, s_star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c', b') of the perturbed problem on side ``sign`` (formulas in the module docstring).

    ``b' = b − στ dy`` and ``c' = c + στ (dx − Aᵀds) − ρx* [− ρAᵀ(b' − s*)]``, the
    bracketed term only when ``ds`` is given.

    Parameters
    ----------
    sign : int
        Side σ: +1 (upper) or −1 (lower).
    tau : float
        Perturbation strength τ.
    rho : float
        Proximal weight ρ.
    c, b : numpy.ndarray
        The forward problem's cost and right-hand side.
    A : scipy.sparse matrix
        Constraint matrix.
    dx, dy : numpy.ndarray
        Incoming gradients in x and y.
    ds : numpy.ndarray or None
        Incoming gradient in s (None for zero).
    x_star, s_star : numpy.ndarray
        The forward solution's x and s.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(c', b')``.
    """
    step = sign * tau
    b_new = b - step * dy
    c_new = c + step * dx
    if ds is not None:
        c_new = c_new - step * (A.T @ ds)
    if rho > 0:
        c_new = c_new - rho * x_star
        if ds is not None:
            c_new = c_new - rho * (A.T @ (b_new - s_star))
    return c_new, b_new


def perturbed_dual(sign: int, tau: float, rho: float, solution: Solution,
                   ds: np.ndarray | None, s_star: np.ndarray) -> np.ndarray:
    """Dual of the perturbed problem with s in the objective, from the substituted one's.

    ``y_σ = y − στ ds [− ρ(s − s*)]`` (x-stationarity of both forms).

    Parameters
    ----------
    sign : int
        Side σ: +1 (upper) or −1 (lower).
    tau, rho : float
        τ and ρ.
    solution : Solution
        The perturbed (substituted) problem's solution.
    ds : numpy.ndarray or None
        Incoming gradient in s; None returns ``solution.y`` unchanged.
    s_star : numpy.ndarray
        The forward solution's s.

    Returns
    -------
    numpy.ndarray
    """
    if ds is None:
        return solution.y
    y = solution.y - sign * tau * ds
    if rho > 0:
        y = y - rho * (solution.s - s_star)
    return y


def finite_difference(mode: str, tau: float, star: DataGradient,
                      sides: dict[int, DataGradient]) -> DataGradient:
    """Upper, lower or central difference of G (see the module docstring).

    Parameters
    ----------
    mode : str
        Which difference: ``"central"``, ``"upper"`` or ``"lower"``.
    tau : float
        τ.
    star : DataGradient
        ``G(x*, y*)`` at the forward solution.
    sides : dict
        ``G(x_σ, y_σ)`` by side (+1, −1); the sides ``mode`` needs.

    Returns
    -------
    DataGradient
        ``(G₊ − G*)/τ``, ``(G* − G₋)/τ`` or ``(G₊ − G₋)/(2τ)``.
    """
    if mode == "central":
        return (sides[+1] - sides[-1]).scaled(0.5 / tau)
    if mode == "upper":
        return (sides[+1] - star).scaled(1.0 / tau)
    return (star - sides[-1]).scaled(1.0 / tau)


def perturbed_solve(solve: Callable[[int, np.ndarray, np.ndarray], Solution], *,
                    tau: float, rho: float, mode: str, c: np.ndarray, b: np.ndarray,
                    A: sp.spmatrix, dx: np.ndarray, dy: np.ndarray, ds: np.ndarray | None,
                    forward: Solution, A_pattern: SparsePattern,
                    P_pattern: SparsePattern | None, batch_index: int | None = None
                    ) -> tuple[DataGradient, dict[int, Solution]]:
    """LPGD data gradient of one problem.

    Parameters
    ----------
    solve : callable
        ``solve(sign, c', b')`` re-solves the problem with the same A and cones (and
        P' = :func:`proximal_quadratic`), warm-started from the forward solution.
    tau, rho, mode :
        Perturbation strength, proximal weight, and ``"central"``/``"upper"``/``"lower"``.
    c, b, A :
        The forward problem's data (A as a sparse matrix).
    dx, dy, ds :
        Incoming gradients (``ds`` may be None for zero).
    forward : Solution
        The forward solution (x*, y*, s*).
    A_pattern, P_pattern :
        Stored patterns on which dA and dP are returned.

    Returns
    -------
    DataGradient, dict
        The gradient replacement and the perturbed solutions by side (+1, −1).

    Raises
    ------
    SolverError
        When a perturbed problem is not solved; the message names the side.
    """
    if ds is not None and not np.any(ds):
        ds = None
    solutions: dict[int, Solution] = {}
    gradients: dict[int, DataGradient] = {}
    for sign in _SIDES[mode]:
        c_new, b_new = perturbed_costs(sign, tau, rho, c, b, A, dx, dy, ds, forward.x, forward.s)
        solution = solve(sign, c_new, b_new)
        if not solution.ok:
            side = SIDE_NAMES[sign]
            other = "lower" if side == "upper" else "upper"
            where = "" if batch_index is None else f" at batch index {batch_index}"
            raise SolverError(
                f"LPGD {side} perturbed solve failed{where} with status {solution.status!r}; "
                f"try a smaller tau (now {tau}) or lpgd_mode={other!r}",
                status=solution.status, batch_index=batch_index, side=side)
        solutions[sign] = solution
        y = perturbed_dual(sign, tau, rho, solution, ds, forward.s)
        gradients[sign] = lagrangian_data_gradient(solution.x, y, A_pattern, P_pattern)
    star = lagrangian_data_gradient(forward.x, forward.y, A_pattern, P_pattern)
    return finite_difference(mode, tau, star, gradients), solutions
