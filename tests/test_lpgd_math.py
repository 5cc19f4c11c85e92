"""The LPGD module on raw cone programs (no torch): ρ > 0, ds ≠ 0, and ∂P.

References: the perturbed problems written out explicitly in CVXPY, diffcp's exact
adjoint, and finite differences of the solution map in P.
"""

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

from cvxlpgd.compile import SparsePattern
from cvxlpgd.cones import ConeDims
from cvxlpgd.exact import adjoint_data_gradient, solve_with_adjoint
from cvxlpgd.lpgd import (
    lagrangian_data_gradient,
    perturbed_costs,
    perturbed_dual,
    perturbed_solve,
    proximal_quadratic,
)
from cvxlpgd.solvers import solve_cone_program

SCS_TIGHT = {"eps_abs": 1e-11, "eps_rel": 1e-11, "max_iters": 1_000_000}


def pattern_of(matrix):
    matrix = sp.csc_matrix(matrix)
    cols = np.repeat(np.arange(matrix.shape[1]), np.diff(matrix.indptr))
    return SparsePattern(matrix.indices.copy(), cols, matrix.indptr.copy(), matrix.shape)


@pytest.fixture
def lp_data():
    """min cᵀx s.t. Ax + s = b, s ∈ zero¹ × nonneg³ (a small LP with a unique vertex)."""
    rng = np.random.default_rng(0)
    n = 3
    A_ineq = np.vstack([-np.eye(n)])
    A = np.vstack([np.ones((1, n)), A_ineq])
    b = np.concatenate([[1.0], np.zeros(n)])
    c = np.array([0.3, -0.2, 0.5]) + 0.01 * rng.standard_normal(n)
    return sp.csc_matrix(A), b, c, ConeDims(zero=1, nonneg=n)


def explicit_perturbed_solution(A, b, c, P, cones, sign, tau, rho, dx, dy, ds, x_star, s_star):
    """The perturbed problem of DESIGN.md, with s as an explicit variable."""
    m, n = A.shape
    x, s = cp.Variable(n), cp.Variable(m)
    objective = (c + sign * tau * dx) @ x + sign * tau * ds @ s
    objective += rho / 2 * cp.sum_squares(x - x_star)
    if np.any(ds):
        objective += rho / 2 * cp.sum_squares(s - s_star)
    if P is not None:
        objective += 0.5 * cp.quad_form(x, P)
    constraints = [A @ x + s == b - sign * tau * dy, s[:cones.zero] == 0, s[cones.zero:] >= 0]
    cp.Problem(cp.Minimize(objective), constraints).solve(solver=cp.CLARABEL)
    return x.value, constraints[0].dual_value


@pytest.mark.parametrize("with_ds", [False, True])
@pytest.mark.parametrize("sign", [+1, -1])
def test_proximal_perturbed_problem_matches_explicit_formulation(lp_data, with_ds, sign):
    A, b, c, cones = lp_data
    rng = np.random.default_rng(1)
    forward = solve_cone_program(A, b, c, cones, solver="CLARABEL")
    dx, dy = rng.standard_normal(3), rng.standard_normal(4)
    ds = rng.standard_normal(4) if with_ds else np.zeros(4)
    tau, rho = 0.7, 0.5
    c_new, b_new = perturbed_costs(sign, tau, rho, c, b, A, dx, dy, ds if with_ds else None,
                                   forward.x, forward.s)
    P_new = proximal_quadratic(None, A, 3, rho, slack_term=with_ds)
    ours = solve_cone_program(A, b_new, c_new, cones, P=P_new, solver="CLARABEL")
    x_ref, y_ref = explicit_perturbed_solution(A.toarray(), b, c, None, cones, sign, tau, rho,
                                               dx, dy, ds, forward.x, forward.s)
    np.testing.assert_allclose(ours.x, x_ref, atol=1e-6)
    y = perturbed_dual(sign, tau, rho, ours, ds if with_ds else None, forward.s)
    np.testing.assert_allclose(y, y_ref, atol=1e-6)


def test_lpgd_with_slack_gradient_approaches_diffcp_exact_adjoint():
    """A strictly convex problem (SOC) so the exact derivative is informative."""
    x = cp.Variable(3)
    z = np.array([1.0, -2.0, 0.5])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [cp.norm(x) <= 1, x[0] >= 0.2])
    data, _, _ = problem.get_problem_data(cp.SCS, solver_opts={"use_quad_obj": False})
    A, b, c = sp.csc_matrix(data["A"]), data["b"], data["c"]
    dims = data["dims"]
    cones = ConeDims(zero=dims.zero, nonneg=dims.nonneg, soc=tuple(dims.soc))
    rng = np.random.default_rng(2)
    dx, dy, ds = (rng.standard_normal(A.shape[1]), rng.standard_normal(A.shape[0]),
                  rng.standard_normal(A.shape[0]))
    forward, adjoint = solve_with_adjoint(A, b, c, cones, solver="SCS", settings=SCS_TIGHT)
    exact = adjoint_data_gradient(adjoint, dx, dy, pattern_of(A), ds=ds)
    pattern = pattern_of(A)

    def solve(sign, c_new, b_new):
        return solve_cone_program(A, b_new, c_new, cones, solver="SCS", settings=SCS_TIGHT,
                                  warm_start=(forward.x, forward.y, forward.s))

    lpgd, _ = perturbed_solve(solve, tau=1e-4, rho=0.0, mode="central", c=c, b=b, A=A, dx=dx,
                              dy=dy, ds=ds, forward=forward, A_pattern=pattern, P_pattern=None)
    scale = np.linalg.norm(exact.dc) + np.linalg.norm(exact.db)
    assert scale > 0.1
    np.testing.assert_allclose(lpgd.dc, exact.dc, atol=1e-3 * scale)
    np.testing.assert_allclose(lpgd.db, exact.db, atol=1e-3 * scale)
    np.testing.assert_allclose(lpgd.dA_data, exact.dA_data, atol=1e-3 * scale)
    # Dropping ds changes the answer: the slack term is really used.
    without, _ = perturbed_solve(solve, tau=1e-4, rho=0.0, mode="central", c=c, b=b, A=A,
                                 dx=dx, dy=dy, ds=None, forward=forward, A_pattern=pattern,
                                 P_pattern=None)
    assert np.linalg.norm(without.dc - exact.dc) > 1e-2 * scale


@pytest.mark.parametrize("storage", ["full", "upper"])
def test_quadratic_data_gradient_matches_finite_differences_in_P(storage):
    """dP from LPGD on P's own pattern, for P stored full (both triangles) or upper.

    For upper storage, an off-diagonal stored entry stands for both P_ij and P_ji, so its
    gradient is twice the full-storage one (½x_i x_j per triangle)."""
    n = 3
    P_full = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]])
    A = sp.csc_matrix(np.vstack([-np.eye(n), np.ones((1, n))]))
    b = np.concatenate([np.zeros(n), [2.0]])
    c = np.array([-1.0, -0.5, -0.8])
    cones = ConeDims(nonneg=n + 1)
    dx = np.array([1.0, -2.0, 0.5])

    def loss(P_matrix):
        return dx @ solve_cone_program(A, b, c, cones, P=sp.csc_matrix(P_matrix),
                                       solver="CLARABEL").x

    stored = sp.csc_matrix(P_full if storage == "full" else np.triu(P_full))
    pattern = pattern_of(stored)
    forward = solve_cone_program(A, b, c, cones, P=sp.csc_matrix(P_full), solver="CLARABEL")

    def solve(sign, c_new, b_new):
        return solve_cone_program(A, b_new, c_new, cones, P=sp.csc_matrix(P_full),
                                  solver="CLARABEL")

    lpgd, _ = perturbed_solve(solve, tau=1e-5, rho=0.0, mode="central", c=c, b=b, A=A, dx=dx,
                              dy=np.zeros(4), ds=None, forward=forward, A_pattern=pattern_of(A),
                              P_pattern=pattern)
    dP = lpgd.dP_data * np.where(pattern.rows != pattern.cols,
                                 2.0 if storage == "upper" else 1.0, 1.0)
    h = 1e-5
    for k, (i, j) in enumerate(zip(pattern.rows, pattern.cols)):
        E = np.zeros((n, n))
        E[i, j] += 0.5
        E[j, i] += 0.5
        if storage == "upper" and i != j:
            E *= 2  # an upper-stored entry moves both triangles by the full step
        # (for full storage, one entry P_ij enters xᵀPx like its symmetric part)
        fd = (loss(P_full + h * E) - loss(P_full - h * E)) / (2 * h)
        assert abs(dP[k] - fd) < 1e-4 * max(1.0, abs(fd)), (i, j, dP[k], fd)


def test_lagrangian_gradient_formula():
    A = sp.csc_matrix(np.array([[1.0, 0.0], [2.0, 3.0]]))
    P = sp.csc_matrix(np.array([[1.0, 0.5], [0.5, 2.0]]))
    x, y = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    g = lagrangian_data_gradient(x, y, pattern_of(A), pattern_of(P))
    np.testing.assert_allclose(g.dc, x)
    np.testing.assert_allclose(g.db, -y)
    np.testing.assert_allclose(g.dA_data, np.outer(y, x)[A.nonzero()[0], A.nonzero()[1]][
        np.argsort(A.nonzero()[1], kind="stable")])
    np.testing.assert_allclose(g.dP_data, [0.5, -1.0, -1.0, 2.0])
