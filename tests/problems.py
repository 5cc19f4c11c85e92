"""Small parametrized CVXPY problems shared by the tests, with seeded parameter values."""

from __future__ import annotations

import cvxpy as cp
import numpy as np


def qp(n=4, m=3, p=2, seed=0):
    """Strictly convex QP with parameters in the quadratic term, c, A (G) and b (h)."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n, name="x")
    L = cp.Parameter((n, n), name="L")
    q = cp.Parameter(n, name="q")
    G = cp.Parameter((m, n), name="G")
    h = cp.Parameter(m, name="h")
    E = cp.Parameter((p, n), name="E")
    f = cp.Parameter(p, name="f")
    ineq = G @ x <= h
    eq = E @ x == f
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(L @ x) + 0.5 * cp.sum_squares(x) + q @ x), [ineq, eq]
    )
    x0 = rng.standard_normal(n)
    values = {
        "L": rng.standard_normal((n, n)),
        "q": rng.standard_normal(n),
        "G": rng.standard_normal((m, n)),
        "E": rng.standard_normal((p, n)),
    }
    # x0 is optimal with the first inequality strictly active (dual 3) and nonzero
    # equality duals: pick q from the KKT conditions.
    values["h"] = values["G"] @ x0 + np.array([0.0] + [0.5] * (m - 1))
    values["f"] = values["E"] @ x0
    hessian = values["L"].T @ values["L"] + np.eye(n)
    values["q"] = -hessian @ x0 - 3.0 * values["G"][0] - values["E"].T @ np.linspace(1, -0.5, p)
    return problem, [L, q, G, h, E, f], x, ineq, eq, values


SCALED_QP_MATRIX = np.array([[2.0, 0.8, 0.0], [0.8, 1.5, -0.4], [0.0, -0.4, 1.0]])


def scaled_qp(n=3, seed=1):
    """QP whose P = 2aM depends on a parameter (off-diagonal entries too):
    minimize a·xᵀMx + qᵀx s.t. x ≥ lo."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n, name="x")
    a = cp.Parameter(nonneg=True, name="a")
    q = cp.Parameter(n, name="q")
    lo = cp.Parameter(n, name="lo")
    problem = cp.Problem(cp.Minimize(a * cp.quad_form(x, SCALED_QP_MATRIX) + q @ x), [x >= lo])
    values = {"a": np.array(1.3), "q": rng.standard_normal(n), "lo": np.array([-0.3, 0.2, -5.0])}
    return problem, [a, q, lo], x, values


def socp(n=3, seed=2):
    """Strictly convex SOCP: minimize ‖x − z‖² + ‖Fx − g‖₂ s.t. ‖x‖₂ ≤ r."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n, name="x")
    z = cp.Parameter(n, name="z")
    F = cp.Parameter((2, n), name="F")
    g = cp.Parameter(2, name="g")
    r = cp.Parameter(nonneg=True, name="r")
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(x - z) + cp.norm(F @ x - g, 2)), [cp.norm(x, 2) <= r]
    )
    values = {
        "z": 2 * rng.standard_normal(n),
        "F": rng.standard_normal((2, n)),
        "g": rng.standard_normal(2),
        "r": np.array(0.5),
    }
    return problem, [z, F, g, r], x, values


def lp(seed=3):
    """LP: minimize cᵀx s.t. Ax ≤ b, 0 ≤ x ≤ 1."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(4, name="x")
    c = cp.Parameter(4, name="c")
    b = cp.Parameter(2, name="b")
    A = rng.uniform(0.5, 1.5, (2, 4))
    problem = cp.Problem(cp.Minimize(c @ x), [A @ x <= b, x >= 0, x <= 1])
    return problem, [c, b], x, {"c": -rng.uniform(0.5, 1.5, 4), "b": np.array([1.5, 2.0])}


def sdp(n=3, seed=4):
    """SDP: minimize tr(CX) s.t. X ⪰ 0, tr(X) = 1, X₀₁ ≥ −0.2, with symmetric C."""
    rng = np.random.default_rng(seed)
    X = cp.Variable((n, n), symmetric=True, name="X")
    C = cp.Parameter((n, n), symmetric=True, name="C")
    psd = X >> 0
    problem = cp.Problem(cp.Minimize(cp.trace(C @ X)), [psd, cp.trace(X) == 1, X[0, 1] >= -0.2])
    M = rng.standard_normal((n, n))
    return problem, [C], X, psd, {"C": M + M.T}


def exp_cone(n=3, seed=5):
    """Exponential cone: minimize Σ exp(x) − eᵀx + ‖x‖² s.t. Σx ≤ 1."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n, name="x")
    e = cp.Parameter(n, name="e")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.exp(x)) - e @ x + cp.sum_squares(x)), [cp.sum(x) <= 1]
    )
    return problem, [e], x, {"e": rng.uniform(0.5, 2.0, n)}


def portfolio_lp(n=3):
    """Long-only portfolio LP: maximize rᵀw s.t. Σw = 1, w ≥ 0."""
    w = cp.Variable(n, name="w")
    r = cp.Parameter(n, name="r")
    problem = cp.Problem(cp.Maximize(r @ w), [cp.sum(w) == 1, w >= 0])
    return problem, [r], w


def assign(params, values):
    for p in params:
        p.value = values[p.name()]
