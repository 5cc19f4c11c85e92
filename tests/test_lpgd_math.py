"""The LPGD and exact-derivative modules on raw cone programs (no torch).

References: the perturbed problems written out explicitly in CVXPY, diffcp's own
solve-and-differentiate path, finite differences of the solution map in P, and a
per-element loop for the batched arithmetic.
"""

import cvxpy as cp
import diffcp
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import cvxlpgd
from cvxlpgd.engine.exact import adjoint_at_solution
from cvxlpgd.lpgd.backward import lpgd_backward
from cvxlpgd.lpgd.formulas import (
    lagrangian_data_gradient,
    perturbed_costs,
    perturbed_dual,
)
from cvxlpgd.lpgd.proximal import proximal_batch, proximal_structure
from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern
from cvxlpgd.solvers import BatchSolution, solve_cone_program

SCS_TIGHT = {"eps_abs": 1e-11, "eps_rel": 1e-11, "max_iters": 1_000_000}


def one_problem(A, b, c, cones, P=None):
    """Structure and a batch of one for explicit matrices."""
    A = sp.csc_matrix(A)
    A.sort_indices()
    P = None if P is None else sp.csc_matrix(P)
    structure = ProgramStructure(
        cones, SparsePattern.of(A), None if P is None else SparsePattern.of(P)
    )
    batch = ProgramBatch(
        c=np.asarray(c, float)[None],
        b=np.asarray(b, float)[None],
        A_data=A.data[None],
        P_data=None if P is None else P.data[None],
    )
    return structure, batch


def solver_sides(structure, solver, settings=None):
    """solve_sides for lpgd_backward: each element solved alone, warm-started."""

    def solve_sides(requests, rows):
        out = []
        for _, batch in requests:
            solutions = []
            for i in range(batch.batch_size):
                A, P = batch.element_matrices(structure, i)
                solutions.append(
                    solve_cone_program(
                        A,
                        batch.b[i],
                        batch.c[i],
                        structure.cones,
                        P=P,
                        solver=solver,
                        settings=settings,
                    )
                )
            out.append(BatchSolution.from_solutions(solutions, solver))
        return out

    return solve_sides


def forward_of(structure, batch, solver, settings=None):
    solutions = []
    for i in range(batch.batch_size):
        A, P = batch.element_matrices(structure, i)
        solutions.append(
            solve_cone_program(
                A, batch.b[i], batch.c[i], structure.cones, P=P, solver=solver, settings=settings
            )
        )
    return BatchSolution.from_solutions(solutions, solver)


@pytest.fixture
def lp_data():
    """min cᵀx s.t. Ax + s = b, s ∈ zero¹ × nonneg³ (a small LP with a unique vertex)."""
    rng = np.random.default_rng(0)
    n = 3
    A = np.vstack([np.ones((1, n)), -np.eye(n)])
    b = np.concatenate([[1.0], np.zeros(n)])
    c = np.array([0.3, -0.2, 0.5]) + 0.01 * rng.standard_normal(n)
    return sp.csc_matrix(A), b, c, ConeDims(zero=1, nonneg=n)


def explicit_perturbed_solution(A, b, c, P, cones, sign, tau, rho, dx, dy, ds, x_star, s_star):
    """The perturbed problem of the docs, with s as an explicit variable."""
    m, n = A.shape
    x, s = cp.Variable(n), cp.Variable(m)
    objective = (c + sign * tau * dx) @ x + sign * tau * ds @ s
    objective += rho / 2 * cp.sum_squares(x - x_star)
    if np.any(ds):
        objective += rho / 2 * cp.sum_squares(s - s_star)
    if P is not None:
        objective += 0.5 * cp.quad_form(x, P)
    constraints = [A @ x + s == b - sign * tau * dy, s[: cones.zero] == 0, s[cones.zero :] >= 0]
    cp.Problem(cp.Minimize(objective), constraints).solve(solver=cp.CLARABEL)
    return x.value, constraints[0].dual_value


@pytest.mark.parametrize("with_ds", [False, True])
@pytest.mark.parametrize("sign", [+1, -1])
def test_proximal_perturbed_problem_matches_explicit_formulation(lp_data, with_ds, sign):
    A, b, c, cones = lp_data
    structure, batch = one_problem(A, b, c, cones)
    rng = np.random.default_rng(1)
    forward = forward_of(structure, batch, "CLARABEL")
    dx, dy = rng.standard_normal((1, 3)), rng.standard_normal((1, 4))
    ds = rng.standard_normal((1, 4)) if with_ds else np.zeros((1, 4))
    tau, rho = 0.7, 0.5
    c_new, b_new = perturbed_costs(
        sign,
        tau,
        rho,
        batch,
        structure.A_pattern,
        dx,
        dy,
        ds if with_ds else None,
        forward.x,
        forward.s,
    )
    proximal = proximal_structure(structure, slack_term=with_ds)
    widened = proximal_batch(batch, rho, proximal, structure)
    P_new = proximal.structure.P_pattern.matrix(widened.P_data[0])
    ours = solve_cone_program(A, b_new[0], c_new[0], cones, P=P_new, solver="CLARABEL")
    x_ref, y_ref = explicit_perturbed_solution(
        A.toarray(),
        b,
        c,
        None,
        cones,
        sign,
        tau,
        rho,
        dx[0],
        dy[0],
        ds[0],
        forward.x[0],
        forward.s[0],
    )
    np.testing.assert_allclose(ours.x, x_ref, atol=1e-6)
    as_batch = BatchSolution.from_solutions([ours], "CLARABEL")
    y = perturbed_dual(sign, tau, rho, as_batch, ds if with_ds else None, forward.s)
    np.testing.assert_allclose(y[0], y_ref, atol=1e-6)


def socp_data():
    x = cp.Variable(3)
    z = np.array([1.0, -2.0, 0.5])
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [cp.norm(x) <= 1, x[0] >= 0.2])
    data, _, _ = problem.get_problem_data(cp.SCS, solver_opts={"use_quad_obj": False})
    dims = data["dims"]
    cones = ConeDims(zero=dims.zero, nonneg=dims.nonneg, soc=tuple(dims.soc))
    return sp.csc_matrix(data["A"]), data["b"], data["c"], cones


def test_adjoint_at_solution_equals_diffcps_own_adjoint():
    """Our assembly of diffcp's adjoint at a given solution = diffcp's solve-and-derivative."""
    A, b, c, cones = socp_data()
    rng = np.random.default_rng(5)
    dx, dy, ds = (
        rng.standard_normal(A.shape[1]),
        rng.standard_normal(A.shape[0]),
        rng.standard_normal(A.shape[0]),
    )
    x, y, s, _, reference = diffcp.solve_and_derivative(
        A.copy(), b, c, cones.to_scs(), solve_method="SCS", verbose=False, **SCS_TIGHT
    )
    for mode in ("lsqr", "dense"):
        dA_ref, db_ref, dc_ref = reference(dx, dy, ds)
        dA, db, dc = adjoint_at_solution(A, b, c, cones, x, y, s, mode=mode)(dx, dy, ds)
        A_sorted = sp.csc_matrix(A)
        A_sorted.sort_indices()
        pattern = SparsePattern.of(A_sorted)
        ref_entries = np.asarray(sp.csc_matrix(dA_ref)[pattern.rows, pattern.cols]).ravel()
        np.testing.assert_allclose(dc, dc_ref, atol=1e-6)
        np.testing.assert_allclose(db, db_ref, atol=1e-6)
        np.testing.assert_allclose(dA, ref_entries, atol=1e-6)
        assert np.linalg.norm(dc) > 0.1


def test_lpgd_with_slack_gradient_approaches_the_exact_adjoint():
    """A strictly convex problem (SOC) so the exact derivative is informative."""
    A, b, c, cones = socp_data()
    structure, batch = one_problem(A, b, c, cones)
    rng = np.random.default_rng(2)
    dx, dy, ds = (
        rng.standard_normal((1, A.shape[1])),
        rng.standard_normal((1, A.shape[0])),
        rng.standard_normal((1, A.shape[0])),
    )
    forward = forward_of(structure, batch, "SCS", SCS_TIGHT)
    dA, db, dc = adjoint_at_solution(
        A, b, c, cones, *(v[0] for v in forward.point), A_pattern=structure.A_pattern
    )(dx[0], dy[0], ds[0])
    solve = solver_sides(structure, "SCS", SCS_TIGHT)
    lpgd = lpgd_backward(
        solve, batch, structure, forward, dx, dy, ds, tau=1e-4, rho=0.0, mode="central"
    ).gradient
    scale = np.linalg.norm(dc) + np.linalg.norm(db)
    assert scale > 0.1
    np.testing.assert_allclose(lpgd.dc[0], dc, atol=1e-3 * scale)
    np.testing.assert_allclose(lpgd.db[0], db, atol=1e-3 * scale)
    np.testing.assert_allclose(lpgd.dA_data[0], dA, atol=1e-3 * scale)
    # Dropping ds changes the answer: the slack term is really used.
    without = lpgd_backward(
        solve, batch, structure, forward, dx, dy, None, tau=1e-4, rho=0.0, mode="central"
    ).gradient
    assert np.linalg.norm(without.dc[0] - dc) > 1e-2 * scale


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
    dx = np.array([[1.0, -2.0, 0.5]])

    def loss(P_matrix):
        return (
            dx[0]
            @ solve_cone_program(A, b, c, cones, P=sp.csc_matrix(P_matrix), solver="CLARABEL").x
        )

    stored = sp.csc_matrix(P_full if storage == "full" else np.triu(P_full))
    structure, batch = one_problem(A, b, c, cones, P=stored)
    full_structure, full_batch = one_problem(A, b, c, cones, P=P_full)
    forward = forward_of(full_structure, full_batch, "CLARABEL")
    # Re-solves on the true (full) P; the gradient on the stored pattern.
    lpgd = lpgd_backward(
        solver_sides(full_structure, "CLARABEL"),
        full_batch,
        structure,
        forward,
        dx,
        np.zeros((1, 4)),
        None,
        tau=1e-5,
        rho=0.0,
        mode="central",
    ).gradient
    pattern = structure.P_pattern
    dP = lpgd.dP_data[0] * np.where(
        pattern.rows != pattern.cols, 2.0 if storage == "upper" else 1.0, 1.0
    )
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
    g = lagrangian_data_gradient(x, y, SparsePattern.of(A), SparsePattern.of(P))
    np.testing.assert_allclose(g.dc, x)
    np.testing.assert_allclose(g.db, -y)
    # Stored entries of A in CSC order: (0,0), (1,0), (1,1).
    np.testing.assert_allclose(g.dA_data, [y[0] * x[0], y[1] * x[0], y[1] * x[1]])
    np.testing.assert_allclose(g.dP_data, [0.5, -1.0, -1.0, 2.0])
    rows = lagrangian_data_gradient(
        np.stack([x, 2 * x]), np.stack([y, y]), SparsePattern.of(A), SparsePattern.of(P)
    )
    np.testing.assert_allclose(rows.dA_data[1], 2 * g.dA_data)
    np.testing.assert_allclose(rows.dP_data[1], 4 * g.dP_data)


@pytest.mark.parametrize("mode", ["central", "upper", "lower"])
@pytest.mark.parametrize("rho", [0.0, 0.3])
def test_batched_lpgd_equals_a_loop_over_elements(mode, rho):
    """Per-element A, b, c and incoming gradients (with ds): one batched call = B single calls.

    Element 2 has no incoming gradient: an exact zero, and it is not re-solved.
    """
    rng = np.random.default_rng(4)
    n, m, B = 3, 5, 4
    cones = ConeDims(zero=1, nonneg=4)
    base = np.vstack([np.ones((1, n)), -np.eye(n), rng.uniform(0.5, 1, (1, n))])
    structure, single = one_problem(base, np.zeros(m), np.zeros(n), cones)
    A_data = np.stack(
        [single.A_data[0] * (1 + 0.1 * rng.random(structure.A_pattern.nnz)) for _ in range(B)]
    )
    batch = ProgramBatch(
        c=rng.standard_normal((B, n)),
        b=np.tile(np.r_[1.0, np.zeros(n), 2.0], (B, 1)),
        A_data=A_data,
        P_data=None,
    )
    solve = solver_sides(structure, "CLARABEL")
    forward = forward_of(structure, batch, "CLARABEL")
    # Small dy, ds: the perturbed right-hand sides stay feasible.
    dx = rng.standard_normal((B, n))
    dy, ds = 0.1 * rng.standard_normal((B, m)), 0.1 * rng.standard_normal((B, m))
    for array in (dx, dy, ds):
        array[2] = 0.0
    tau = 0.5
    calls = []

    def counting(requests, rows):
        calls.extend(r[1].batch_size for r in requests)
        return solve(requests, rows)

    solve_batch = batch
    if rho > 0:
        proximal = proximal_structure(structure, slack_term=True)
        solve_batch = proximal_batch(batch, rho, proximal, structure)
        sub_structure = proximal.structure
        solve = solver_sides(sub_structure, "CLARABEL")
    result = lpgd_backward(
        counting, solve_batch, structure, forward, dx, dy, ds, tau=tau, rho=rho, mode=mode
    )
    grad = result.gradient
    np.testing.assert_array_equal(result.active, [0, 1, 3])
    assert calls == [3] * (2 if mode == "central" else 1)
    for part in grad.parts()[:3]:
        assert np.all(part[2] == 0.0)
    for i in (0, 1, 3):
        single_batch = solve_batch.rows(slice(i, i + 1))
        single = lpgd_backward(
            solve,
            single_batch,
            structure,
            forward.rows(slice(i, i + 1)),
            dx[i : i + 1],
            dy[i : i + 1],
            ds[i : i + 1],
            tau=tau,
            rho=rho,
            mode=mode,
        ).gradient
        for ours, reference in zip(grad.parts()[:3], single.parts()[:3]):
            np.testing.assert_allclose(ours[i], reference[0], rtol=1e-12, atol=1e-12)


def transport_layer():
    """A transport LP: its balance rows are rank-deficient (supplies and demands sum to
    the same total), so their duals are unique only up to a shift."""
    cost = cp.Parameter((2, 3), name="cost")
    flow = cp.Variable((2, 3), name="flow")
    supply, demand = (
        flow.sum(axis=1) == np.array([2.0, 1.0]),
        flow.sum(axis=0) == np.array([1.0, 1.0, 1.0]),
    )
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(cost, flow))), [supply, demand, flow >= 0])
    return cvxlpgd.CvxpyLayer(problem, [cost], [flow, supply, demand], tau=0.5), supply, demand


def test_a_loss_on_non_unique_equality_duals_does_not_break_lpgd():
    """dy on the balance rows has a component (+1 on supplies, −1 on demands) along which
    the duals are not identified; b − τdy along it is infeasible at every τ. LPGD uses
    the identifiable part only: the gradient does not depend on that component."""
    layer, _, _ = transport_layer()
    cost = torch.tensor([[1.0, 2.0, 3.0], [2.0, 1.0, 4.0]], requires_grad=True)
    w_flow = torch.tensor([[0.5, -1.0, 0.2], [0.3, 0.1, -0.4]])
    w_supply, w_demand = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0, 1.5])

    def gradient(shift):
        cost.grad = None
        flow, y_supply, y_demand = layer(cost)
        loss = (
            (w_flow * flow).sum()
            + ((w_supply + shift) * y_supply).sum()
            + ((w_demand - shift) * y_demand).sum()
        )
        loss.backward()
        return cost.grad.clone()

    base = gradient(0.0)
    assert torch.isfinite(base).all() and float(base.abs().max()) > 0.1
    torch.testing.assert_close(gradient(3.0), base, atol=1e-6, rtol=0)
    # The identifiable part is untouched: a dual loss only along it moves the gradient.
    assert not torch.allclose(gradient(0.0), gradient_of_flow_only(layer, cost, w_flow))


def gradient_of_flow_only(layer, cost, w_flow):
    cost.grad = None
    flow, _, _ = layer(cost)
    (w_flow * flow).sum().backward()
    return cost.grad.clone()
