"""Tests of the conic solver backends in ``cvxlpgd.solvers``.

References are independent of the backends: closed-form optima of hand-built cone
programs, CVXPY's own solve (``prob.solve(solver=cp.CLARABEL)``), and KKT conditions
checked here from scratch (residuals, complementarity, cone membership of s and y).
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import cvxpy as cp
import numpy as np
import pytest
import scipy.sparse as sp

from cvxlpgd.problem.cones import (
    SQRT2,
    ConeDims,
    svec_lower_indices,
    svec_pack,
    svec_size,
    svec_unpack,
)
from cvxlpgd.solvers import (
    CAPABILITIES,
    INFEASIBLE,
    OPTIMAL,
    SOLVERS,
    UNBOUNDED,
    Solution,
    get_backend,
    solve_cone_program,
)
from cvxlpgd.solvers._common import exp_swap_permutation, psd_upper_permutation
from cvxlpgd.solvers.scs_backend import scs_settings

#: KKT tolerance per solver, relative to (1 + size of the data): SCS is first order
#: (defaults eps_abs = eps_rel = 1e-7), the interior-point solvers stop at ~1e-8.
TOL = {"SCS": 1e-5, "CLARABEL": 1e-6, "ECOS": 1e-6, "MOREAU": 1e-6}
#: The solvers that solve one program per workspace (Moreau solves batches).
PER_ELEMENT = ("SCS", "CLARABEL", "ECOS")


# --------------------------------------------------------------------------- helpers


def cone_dims(dims) -> ConeDims:
    """CVXPY's ConeDims → the package's."""
    return ConeDims(
        zero=dims.zero,
        nonneg=dims.nonneg,
        soc=tuple(dims.soc),
        psd=tuple(dims.psd),
        exp=dims.exp,
        power=tuple(dims.p3d),
    )


def problem_data(prob: cp.Problem, quad: bool = True) -> dict:
    """SCS-form data of ``prob`` plus CVXPY's reference optimal value without offset."""
    opts = None if quad else {"use_quad_obj": False}
    data, _, _ = prob.get_problem_data(cp.SCS, solver_opts=opts)
    has_p = "P" in data
    offset = data["param_prob"].apply_parameters(quad_obj=has_p)[2 if has_p else 1]
    value = prob.solve(solver=cp.CLARABEL)
    assert prob.status == cp.OPTIMAL, prob.status
    if isinstance(prob.objective, cp.Maximize):
        value = -value  # CVXPY hands the solver min −f
    return {
        "A": sp.csc_matrix(data["A"]),
        "b": np.asarray(data["b"], float),
        "c": np.asarray(data["c"], float),
        "P": sp.csc_matrix(data["P"]) if has_p else None,
        "cones": cone_dims(data["dims"]),
        "value": value - float(offset),
    }


def objective(data: dict, x: np.ndarray) -> float:
    """cᵀx + ½xᵀPx."""
    value = data["c"] @ x
    if data["P"] is not None:
        value += 0.5 * x @ (data["P"] @ x)
    return float(value)


def _exp_violation(x, y, z):
    """How far (x, y, z) is from {y·exp(x/y) ≤ z, y > 0} (0 inside)."""
    if y > 0 and z > 0:
        return max(0.0, x - y * np.log(z / y))
    return max(0.0, -y, -z, x)  # the boundary piece y = 0: x ≤ 0, z ≥ 0


def _exp_dual_violation(u, v, w):
    """How far (u, v, w) is from {−u·exp(v/u) ≤ e·w, u < 0} (0 inside)."""
    if u < 0 and w > 0:
        return max(0.0, u * (1.0 + np.log(w / -u)) - v)
    return max(0.0, u, -v, -w)  # the boundary piece u = 0: v ≥ 0, w ≥ 0


def _pow_violation(x, y, z, alpha, dual):
    """How far (x, y, z) is from the power cone of exponent α (or its dual)."""
    if dual:
        bound = (max(x, 0) / alpha) ** alpha * (max(y, 0) / (1 - alpha)) ** (1 - alpha)
    else:
        bound = max(x, 0) ** alpha * max(y, 0) ** (1 - alpha)
    return max(0.0, -x, -y, abs(z) - bound)


def cone_violation(v: np.ndarray, cones: ConeDims, dual: bool) -> float:
    """Largest violation of ``v ∈ K`` (``dual=False``) or ``v ∈ K*`` (``dual=True``)."""
    worst = [0.0]
    i = cones.zero
    if not dual:
        worst.append(np.abs(v[:i]).max(initial=0.0))  # zero cone; its dual is free
    worst.append(max(0.0, -v[i : i + cones.nonneg].min(initial=0.0)))
    i += cones.nonneg
    for q in cones.soc:  # self-dual
        worst.append(max(0.0, np.linalg.norm(v[i + 1 : i + q]) - v[i]))
        i += q
    for n in cones.psd:  # self-dual
        worst.append(max(0.0, -np.linalg.eigvalsh(svec_unpack(v[i : i + svec_size(n)], n))[0]))
        i += svec_size(n)
    for k in range(cones.exp + cones.dual_exp):
        primal_block = (k < cones.exp) != dual  # K_exp unless (dual of exp) or (ed)
        check = _exp_violation if primal_block else _exp_dual_violation
        worst.append(check(*v[i : i + 3]))
        i += 3
    for alpha in cones.power:
        worst.append(_pow_violation(*v[i : i + 3], alpha, dual))
        i += 3
    assert i == v.size
    return float(max(worst))


def assert_kkt(data: dict, sol: Solution, tol: float) -> None:
    """Check primal / dual feasibility, complementarity and cone membership."""
    A, b, c, P, cones = data["A"], data["b"], data["c"], data["P"], data["cones"]
    x, y, s = sol.x, sol.y, sol.s
    scale = 1.0 + max(np.abs(b).max(initial=0), np.abs(c).max(initial=0))
    px = P @ x if P is not None else 0.0
    primal = np.linalg.norm(A @ x + s - b)
    dual = np.linalg.norm(px + A.T @ y + c)
    gap = abs(y @ s)
    in_k = cone_violation(s, cones, dual=False)
    in_kstar = cone_violation(y, cones, dual=True)
    scale_y = 1.0 + np.abs(y).max(initial=0)
    assert primal <= tol * scale, f"primal residual {primal:.2e}"
    assert dual <= tol * scale, f"dual residual {dual:.2e}"
    assert gap <= tol * scale * scale_y, f"complementarity yᵀs = {gap:.2e}"
    assert in_k <= tol * scale, f"s ∉ K by {in_k:.2e}"
    assert in_kstar <= tol * scale_y, f"y ∉ K* by {in_kstar:.2e}"


def solve(data: dict, solver: str, settings: dict | None = None, warm_start=None) -> Solution:
    return solve_cone_program(
        data["A"],
        data["b"],
        data["c"],
        data["cones"],
        P=data["P"],
        solver=solver,
        settings=settings,
        warm_start=warm_start,
    )


# ------------------------------------------------------------------ CVXPY problems


@functools.cache
def cvxpy_problem(kind: str, quad: bool = True) -> dict:
    """Small random problems of each class, compiled once per test session."""
    rng = np.random.default_rng(7)
    n, m = 8, 14
    A = rng.standard_normal((m, n))
    x0 = rng.random(n)
    b = A @ (x0 / x0.sum()) + rng.random(m)  # strictly feasible at x0 / sum(x0)
    q = rng.standard_normal(n)
    x = cp.Variable(n)
    if kind == "lp":
        prob = cp.Problem(cp.Minimize(q @ x), [A @ x <= b, cp.abs(x) <= 2, cp.sum(x) == 1])
    elif kind == "qp":
        F = rng.standard_normal((n, n))
        prob = cp.Problem(
            cp.Minimize(cp.sum_squares(F @ x) + q @ x + 3.0), [A @ x <= b, cp.sum(x) == 1]
        )
    elif kind == "socp":
        F = rng.standard_normal((5, n))
        prob = cp.Problem(
            cp.Minimize(cp.norm(F @ x - 1) + 0.1 * q @ x), [A @ x <= b, cp.norm(x) <= 3]
        )
    elif kind == "sdp":
        k = 4
        C = rng.standard_normal((k, k))
        X = cp.Variable((k, k), symmetric=True)
        prob = cp.Problem(
            cp.Minimize(cp.trace((C + C.T) @ X)), [X >> 0, cp.trace(X) == 1, X[0, 1] >= 0.05]
        )
    elif kind == "exp":
        z = cp.Variable(6)
        prob = cp.Problem(
            cp.Minimize(-cp.sum(cp.entr(z)) + rng.standard_normal(6) @ z + cp.log_sum_exp(z[:3])),
            [cp.sum(z) == 1, z[0] >= 0.1],
        )
    elif kind == "pow":
        u, v, w = cp.Variable(3), cp.Variable(3), cp.Variable(3)
        prob = cp.Problem(
            cp.Maximize(cp.sum(w) - 0.2 * cp.sum(u + v)),
            [
                cp.constraints.PowCone3D(u, v, w, [0.3, 0.5, 0.8]),
                u + 2 * v <= np.array([1.0, 2.0, 3.0]),
            ],
        )
    else:  # pragma: no cover
        raise ValueError(kind)
    return problem_data(prob, quad=quad)


CASES = [
    ("lp", "SCS"),
    ("lp", "CLARABEL"),
    ("lp", "ECOS"),
    ("qp", "SCS"),
    ("qp", "CLARABEL"),
    ("socp", "SCS"),
    ("socp", "CLARABEL"),
    ("socp", "ECOS"),
    ("sdp", "SCS"),
    ("sdp", "CLARABEL"),
    ("exp", "SCS"),
    ("exp", "CLARABEL"),
    ("exp", "ECOS"),
    ("pow", "SCS"),
    ("pow", "CLARABEL"),
    ("lp", "MOREAU"),
    ("qp", "MOREAU"),
    ("socp", "MOREAU"),
    ("sdp", "MOREAU"),
    ("exp", "MOREAU"),
    ("pow", "MOREAU"),
]


@pytest.mark.parametrize("kind, solver", CASES)
def test_cvxpy_problems(kind, solver):
    data = cvxpy_problem(kind)
    sol = solve(data, solver)
    assert sol.status == OPTIMAL
    assert sol.iterations > 0 and sol.solve_time > 0
    assert objective(data, sol.x) == pytest.approx(data["value"], rel=TOL[solver], abs=TOL[solver])
    assert_kkt(data, sol, TOL[solver])


@pytest.mark.parametrize("solver", SOLVERS)
def test_qp_conic_form_matches_quadratic_form(solver):
    # ECOS needs the conic form; all solvers must agree with the QP value.
    quad = cvxpy_problem("qp", quad=True)
    conic = cvxpy_problem("qp", quad=False)
    assert conic["P"] is None
    sol = solve(conic, solver)
    assert sol.status == OPTIMAL
    assert_kkt(conic, sol, TOL[solver])
    assert objective(conic, sol.x) == pytest.approx(quad["value"], rel=TOL[solver])


# -------------------------------------------------- hand-built, closed-form problems


def eigen_sdp(n: int = 4) -> tuple[dict, dict]:
    """min tr(CX) s.t. tr X = 1, X ⪰ 0, with variable x = svec(X).

    Optimum X = v vᵀ (v: eigenvector of λ_min(C)), dual y = (−λ_min, svec(C − λ_min I)).
    Both are far from diagonal, so a wrong PSD-triangle permutation cannot pass.
    """
    rng = np.random.default_rng(3)
    C = rng.standard_normal((n, n))
    C = C + C.T
    k = svec_size(n)
    trace_row = svec_pack(np.eye(n))  # 1 on diagonal positions, 0 elsewhere
    A = sp.vstack([sp.csr_matrix(trace_row), -sp.eye(k)]).tocsc()
    b = np.concatenate([[1.0], np.zeros(k)])
    data = {"A": A, "b": b, "c": svec_pack(C), "P": None, "cones": ConeDims(zero=1, psd=(n,))}
    lam, vecs = np.linalg.eigh(C)
    v = vecs[:, 0]
    expected = {
        "value": lam[0],
        "x": svec_pack(np.outer(v, v)),
        "y": np.concatenate([[-lam[0]], svec_pack(C - lam[0] * np.eye(n))]),
    }
    return data, expected


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "MOREAU"])
def test_sdp_nondiagonal_solution_closed_form(solver):
    data, expected = eigen_sdp()
    X = svec_unpack(expected["x"], 4)
    assert np.abs(X - np.diag(np.diag(X))).max() > 0.1  # genuinely non-diagonal
    sol = solve(data, solver)
    assert sol.status == OPTIMAL
    assert objective(data, sol.x) == pytest.approx(expected["value"], abs=1e-5)
    np.testing.assert_allclose(sol.x, expected["x"], atol=1e-4)
    np.testing.assert_allclose(sol.s[1:], expected["x"], atol=1e-4)
    assert abs(sol.s[0]) <= 1e-8  # the trace equality
    np.testing.assert_allclose(sol.y, expected["y"], atol=1e-4)
    assert_kkt(data, sol, TOL[solver])


def banded_sdp(n: int = 8) -> dict:
    """min tr(CX) s.t. tr X = 1, X ⪰ 0, X tridiagonal (x holds the band of svec X only).

    The sparse aggregate pattern makes Clarabel use chordal decomposition, which
    forbids data updates: its workspace must rebuild the solver for each solve.
    """
    rng = np.random.default_rng(4)
    C = np.diag(rng.standard_normal(n)) + np.diag(rng.standard_normal(n - 1), -1)
    C = C + C.T
    rows, cols = svec_lower_indices(n)
    band = np.flatnonzero(rows - cols <= 1)
    k = svec_size(n)
    select = sp.csc_matrix((np.ones(band.size), (band, np.arange(band.size))), shape=(k, band.size))
    A = sp.vstack([sp.csr_matrix(svec_pack(np.eye(n))[band]), -select]).tocsc()
    return {
        "A": A,
        "b": np.concatenate([[1.0], np.zeros(k)]),
        "c": svec_pack(C)[band],
        "P": None,
        "cones": ConeDims(zero=1, psd=(n,)),
    }


def test_clarabel_rebuilds_when_updates_are_not_allowed():
    data = banded_sdp()
    ws = get_backend("CLARABEL").setup(data["A"], None, data["cones"], {})
    for c in (data["c"], 1.5 * data["c"] + 0.1):
        sol = ws.solve(data["b"], c)
        assert not ws._solver.is_data_update_allowed()  # chordal decomposition active
        reference = solve(data | {"c": c}, "SCS", {"eps": 1e-9})
        assert sol.status == reference.status == OPTIMAL
        assert objective(data | {"c": c}, sol.x) == pytest.approx(
            objective(data | {"c": c}, reference.x), abs=1e-6
        )
        assert_kkt(data | {"c": c}, sol, TOL["CLARABEL"])


def test_psd_upper_permutation_matches_upper_triangle():
    # Independent construction of Clarabel's layout: upper triangle, column-major, √2.
    n = 5
    rng = np.random.default_rng(0)
    M = rng.standard_normal((n, n))
    M = M + M.T
    upper = np.array([M[r, c] * (1.0 if r == c else SQRT2) for c in range(n) for r in range(c + 1)])
    cones = ConeDims(zero=2, soc=(3,), psd=(n, 1))
    perm = psd_upper_permutation(cones)
    v = np.concatenate([[7.0, 8.0], [1.0, 2.0, 3.0], svec_pack(M), [4.0]])
    w = v[perm]
    np.testing.assert_array_equal(w[:5], v[:5])
    np.testing.assert_allclose(w[5 : 5 + svec_size(n)], upper)
    assert w[-1] == 4.0
    assert psd_upper_permutation(ConeDims(nonneg=3, psd=(1,))) is None


def exp_problem() -> dict:
    """min −x s.t. (x, 1, 2) ∈ K_exp = {y·exp(x/y) ≤ z}: x* = log 2.

    With y and z swapped the optimum would be 2·log(1/2) instead.
    """
    A = sp.csc_matrix(np.array([[-1.0], [0.0], [0.0]]))
    return {
        "A": A,
        "b": np.array([0.0, 1.0, 2.0]),
        "c": np.array([-1.0]),
        "P": None,
        "cones": ConeDims(exp=1),
    }


@pytest.mark.parametrize("solver", SOLVERS)
def test_exp_cone_ordering(solver):
    data = exp_problem()
    sol = solve(data, solver)
    assert sol.status == OPTIMAL
    assert sol.x[0] == pytest.approx(np.log(2.0), abs=1e-5)
    # c + Aᵀy = 0 fixes y[0] = −1; complementarity with s = (log 2, 1, 2) fixes the rest:
    # y = (−1, log 2 − 1, 1/2) is the dual-cone point orthogonal to s.
    np.testing.assert_allclose(sol.y, [-1.0, np.log(2.0) - 1.0, 0.5], atol=1e-4)
    assert_kkt(data, sol, TOL[solver])


def test_exp_swap_permutation():
    cones = ConeDims(zero=1, nonneg=1, exp=2, power=(0.5,))
    perm = exp_swap_permutation(cones)
    np.testing.assert_array_equal(perm, [0, 1, 2, 4, 3, 5, 7, 6, 8, 9, 10])
    assert exp_swap_permutation(ConeDims(nonneg=2)) is None


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "MOREAU"])
def test_power_cone_exponent(solver):
    # max z s.t. (1, 2, z) ∈ {x^α y^(1−α) ≥ |z|}, α = 0.3: z* = 2^0.7 (2^0.3 if α were
    # read as 1 − α).
    data = {
        "A": sp.csc_matrix(np.array([[0.0], [0.0], [-1.0]])),
        "b": np.array([1.0, 2.0, 0.0]),
        "c": np.array([-1.0]),
        "P": None,
        "cones": ConeDims(power=(0.3,)),
    }
    sol = solve(data, solver)
    assert sol.status == OPTIMAL
    assert sol.x[0] == pytest.approx(2.0**0.7, abs=1e-5)
    assert_kkt(data, sol, TOL[solver])


def test_scs_dual_exp_cone():
    # min v s.t. (−1, v, 1) ∈ K*_exp = {−u·exp(v/u) ≤ e·w}: v* = −1.
    data = {
        "A": sp.csc_matrix(np.array([[0.0], [-1.0], [0.0]])),
        "b": np.array([-1.0, 0.0, 1.0]),
        "c": np.array([1.0]),
        "P": None,
        "cones": ConeDims(dual_exp=1),
    }
    sol = solve(data, "SCS")
    assert sol.status == OPTIMAL
    assert sol.x[0] == pytest.approx(-1.0, abs=1e-5)
    assert_kkt(data, sol, TOL["SCS"])


# ------------------------------------------------------ infeasible and unbounded


@pytest.mark.parametrize("solver", SOLVERS)
def test_infeasible_lp(solver):
    # x ≥ 1 and x ≤ 0: rows −x + s = −1 and x + s = 0 with s ≥ 0.
    A = sp.csc_matrix(np.array([[-1.0], [1.0]]))
    sol = solve_cone_program(
        A, np.array([-1.0, 0.0]), np.array([1.0]), ConeDims(nonneg=2), solver=solver
    )
    assert sol.status == INFEASIBLE
    assert not sol.ok


@pytest.mark.parametrize("solver", SOLVERS)
def test_unbounded_lp(solver):
    # min x s.t. x ≤ 1.
    A = sp.csc_matrix(np.array([[1.0]]))
    sol = solve_cone_program(A, np.array([1.0]), np.array([1.0]), ConeDims(nonneg=1), solver=solver)
    assert sol.status == UNBOUNDED
    assert not sol.ok


# ----------------------------------------------------- warm start and workspaces


def test_scs_warm_start_from_solution_is_much_faster():
    data = cvxpy_problem("socp")
    backend = get_backend("SCS")
    cold = backend.setup(data["A"], data["P"], data["cones"], {}).solve(data["b"], data["c"])
    # A fresh workspace, so that SCS's adapted scale from the cold solve does not help.
    warm = backend.setup(data["A"], data["P"], data["cones"], {}).solve(
        data["b"], data["c"], warm_start=(cold.x, cold.y, cold.s)
    )
    assert cold.iterations >= 50
    assert warm.iterations <= cold.iterations // 4
    assert warm.status == OPTIMAL
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-6)
    assert_kkt(data, warm, TOL["SCS"])


@pytest.mark.parametrize("solver", ["CLARABEL", "ECOS"])
def test_warm_start_ignored_without_support(solver):
    data = cvxpy_problem("lp")
    backend = get_backend(solver)
    assert not backend.supports_warm_start
    ws = backend.setup(data["A"], data["P"], data["cones"], {})
    cold = ws.solve(data["b"], data["c"])
    junk = (np.ones_like(cold.x), np.ones_like(cold.y), np.ones_like(cold.s))
    warm = ws.solve(data["b"], data["c"], warm_start=junk)
    np.testing.assert_allclose(warm.x, cold.x, atol=1e-7)


def perturbed(data: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A different feasible (b, c): loosen the inequality rows, perturb the cost."""
    rng = np.random.default_rng(seed)
    b = data["b"].copy()
    zero, nonneg = data["cones"].zero, data["cones"].nonneg
    b[zero : zero + nonneg] += rng.random(nonneg) * 0.5
    return b, data["c"] + 0.3 * rng.standard_normal(data["c"].size)


@pytest.mark.parametrize(
    "kind, solver", [("qp", "SCS"), ("qp", "CLARABEL"), ("lp", "ECOS"), ("sdp", "CLARABEL")]
)
def test_workspace_reuse_matches_fresh_setup(kind, solver):
    data = cvxpy_problem(kind)
    backend = get_backend(solver)
    ws = backend.setup(data["A"], data["P"], data["cones"], {})
    problems = [(data["b"], data["c"]), perturbed(data, 1), (data["b"], data["c"])]
    solutions = [ws.solve(b, c) for b, c in problems]
    first_x = solutions[0].x.copy()
    for (b, c), sol in zip(problems, solutions):
        fresh = backend.setup(data["A"], data["P"], data["cones"], {}).solve(b, c)
        assert sol.status == fresh.status == OPTIMAL
        assert objective(data | {"c": c}, sol.x) == pytest.approx(
            objective(data | {"c": c}, fresh.x), rel=TOL[solver], abs=TOL[solver]
        )
        np.testing.assert_allclose(sol.y, fresh.y, atol=100 * TOL[solver])
        assert_kkt(data | {"b": b, "c": c}, sol, TOL[solver])
    # Later solves must not overwrite earlier results (no shared buffers).
    np.testing.assert_array_equal(solutions[0].x, first_x)
    assert np.abs(solutions[1].x - solutions[0].x).max() > 1e-3


def test_scs_skips_update_when_data_unchanged():
    data = cvxpy_problem("lp")
    ws = get_backend("SCS").setup(data["A"], None, data["cones"], {})
    calls = []
    real_update = ws._solver.update

    def spy(b=None, c=None):
        calls.append((b is not None, c is not None))
        real_update(b=b, c=c)

    ws._solver.update = spy
    ws.solve(data["b"], data["c"])
    ws.solve(data["b"].copy(), data["c"].copy())
    b2, _ = perturbed(data, 2)
    ws.solve(b2, data["c"])
    assert calls == [(True, True), (True, False)]


@pytest.mark.parametrize("solver", PER_ELEMENT)
def test_threads_match_serial(solver):
    data = cvxpy_problem("lp")
    backend = get_backend(solver)
    problems = [perturbed(data, seed) for seed in range(6)]

    def run(bc):
        ws = backend.setup(data["A"], data["P"], data["cones"], {})
        return ws.solve(*bc)

    serial = [run(bc) for bc in problems]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(run, problems))
    for a, b in zip(serial, parallel):
        assert a.status == b.status == OPTIMAL
        np.testing.assert_allclose(a.x, b.x, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(a.y, b.y, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------- errors


def test_get_backend_names():
    assert [get_backend(name).name for name in ("scs", "Clarabel", "ECOS")] == list(PER_ELEMENT)
    with pytest.raises(ValueError, match="GUROBI.*MOREAU, SCS, CLARABEL, ECOS"):
        get_backend("GUROBI")
    with pytest.raises(ValueError, match="MOREAU solves whole batches"):
        get_backend("moreau")


def test_capabilities():
    assert [
        (get_backend(n).supports_quadratic, get_backend(n).supports_warm_start) for n in PER_ELEMENT
    ] == [(True, True), (True, False), (False, False)]
    assert [
        CAPABILITIES[n]
        == {
            "quadratic": get_backend(n).supports_quadratic,
            "warm_start": get_backend(n).supports_warm_start,
        }
        for n in PER_ELEMENT
    ] == [True] * 3


@pytest.mark.parametrize(
    "solver, settings, pattern",
    [
        ("SCS", {"not_a_setting": 1}, "not_a_setting"),
        ("SCS", {"warm_start": True}, "warm_start"),
        ("CLARABEL", {"not_a_setting": 1, "other": 2}, "not_a_setting, other"),
        ("CLARABEL", {"max_iter": "many"}, "max_iter"),
        ("ECOS", {"not_a_setting": 1}, "not_a_setting"),
    ],
)
def test_bad_settings(solver, settings, pattern):
    data = cvxpy_problem("lp")
    with pytest.raises(ValueError, match=pattern):
        get_backend(solver).setup(data["A"], None, data["cones"], settings)


def test_scs_settings_defaults_and_eps_alias():
    assert scs_settings(None)["verbose"] is False
    merged = scs_settings({"eps": 1e-3, "eps_rel": 1e-5, "max_iters": 7})
    assert (merged["eps_abs"], merged["eps_rel"], merged["max_iters"]) == (1e-3, 1e-5, 7)
    data = cvxpy_problem("socp")
    loose = solve(data, "SCS", {"eps": 1e-2})
    tight = solve(data, "SCS", {"eps": 1e-9})
    assert loose.iterations < tight.iterations


def test_settings_are_applied():
    data = cvxpy_problem("socp")
    for solver, settings in [
        ("SCS", {"max_iters": 5}),
        ("CLARABEL", {"max_iter": 2}),
        ("ECOS", {"max_iters": 2}),
    ]:
        sol = solve(data, solver, settings)
        assert sol.iterations <= 5
        assert sol.status != OPTIMAL


def test_ecos_rejects_quadratic_objective():
    data = cvxpy_problem("qp")
    with pytest.raises(ValueError, match="ECOS does not accept a quadratic objective"):
        get_backend("ECOS").setup(data["A"], data["P"], data["cones"], {})


@pytest.mark.parametrize(
    "solver, cones, pattern",
    [
        ("ECOS", ConeDims(psd=(2,)), "semidefinite"),
        ("ECOS", ConeDims(power=(0.5,)), "power"),
        ("ECOS", ConeDims(dual_exp=1), "dual exponential"),
        ("CLARABEL", ConeDims(dual_exp=1), "dual exponential"),
        ("CLARABEL", ConeDims(power=(-0.5,)), "power"),
    ],
)
def test_unsupported_cones(solver, cones, pattern):
    A = sp.csc_matrix(np.ones((cones.size, 1)))
    with pytest.raises(ValueError, match=pattern):
        get_backend(solver).setup(A, None, cones, {})


@pytest.mark.parametrize("solver", PER_ELEMENT)
def test_shape_errors(solver):
    data = cvxpy_problem("lp")
    backend = get_backend(solver)
    with pytest.raises(ValueError, match="rows"):
        backend.setup(data["A"], None, ConeDims(nonneg=1), {})
    ws = backend.setup(data["A"], None, data["cones"], {})
    with pytest.raises(ValueError, match="b must have length"):
        ws.solve(data["b"][:-1], data["c"])
    with pytest.raises(ValueError, match="c holds non-finite"):
        ws.solve(data["b"], np.full_like(data["c"], np.nan))
    with pytest.raises(ValueError, match="warm_start"):
        ws.solve(data["b"], data["c"], warm_start=(data["c"], data["b"]))


@pytest.mark.parametrize("solver", ["MOREAU", "SCS", "CLARABEL"])
def test_unconstrained_qp_has_no_rows_and_solves(solver):
    """min ½xᵀPx + cᵀx with m = 0 (SCS itself needs a row: the backend adds a void one)."""
    P = sp.csc_matrix(np.array([[2.0, 0.5], [0.5, 1.0]]))
    c = np.array([1.0, -1.0])
    sol = solve_cone_program(sp.csc_matrix((0, 2)), np.zeros(0), c, ConeDims(), P=P, solver=solver)
    assert sol.status == OPTIMAL and sol.y.shape == sol.s.shape == (0,)
    np.testing.assert_allclose(sol.x, np.linalg.solve(P.toarray(), -c), atol=1e-6)
