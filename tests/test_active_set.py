"""LPGD's perturbed problems answered from the forward's active set (cvxlpgd.lpgd.active_set,
verified by cvxlpgd.engine.prediction).

On random LPs and QPs of several families (batches of 64, small and large τ) the
gradient with the prediction equals the one from plain re-solves, and every predicted
perturbed solution equals a tight CVXPY + Clarabel solve of the perturbed problem
written out in CVXPY. Where the active set changes (large τ) or is degenerate (more
active rows than variables, duplicated rows) nothing is predicted; a wrong active set
or a wrong predicted point is rejected by the checks.
"""

import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.engine import prediction
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.prediction import check
from cvxlpgd.lpgd import active_set as active_set_module
from cvxlpgd.lpgd.active_set import ACTIVE_SET, predict
from cvxlpgd.lpgd.formulas import perturbed_costs
from cvxlpgd.problem.compile import compile_problem
from cvxlpgd.solvers.base import OPTIMAL, BatchSolution
from cvxlpgd.solvers.moreau_backend import moreau_available
from tests import problems

B = 64
#: The re-solves' accuracy bounds how closely the two gradients can agree (their errors
#: divided by τ): Moreau's (active-set method on QPs, interior point at 1e-10 on LPs)
#: within 1e-8 on these families; Clarabel's at 1e-11 within 6e-6 (at 1e-12 it stalls).
SOLVERS = ("MOREAU", "CLARABEL") if moreau_available() else ("CLARABEL",)
SOLVER = SOLVERS[0]
RTOL = {"MOREAU": 1e-6, "CLARABEL": 1e-5, "SCS": 1e-4}
CLARABEL_TIGHT = {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11}
REFERENCE = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


# ---- families: (problem, parameters, outputs, values(seed) -> arrays with batch dim) ----


def box_lp(n=8, k=4):
    """min cᵀx s.t. Gx ≤ h, −1 ≤ x ≤ 1 (vertices: n independent active rows)."""
    rng = np.random.default_rng(10)
    x, c = cp.Variable(n, name="x"), cp.Parameter(n, name="c")
    G = rng.standard_normal((k, n))
    problem = cp.Problem(cp.Minimize(c @ x), [G @ x <= 1.0, x >= -1, x <= 1])
    return problem, [c], [x], lambda seed: [np.random.default_rng(seed).standard_normal((B, n))]


def simplex_lp(n=6):
    """min cᵀx s.t. Σx = 1, x ≥ 0 (the vertex e_k: one equality and n − 1 bounds)."""
    x, c = cp.Variable(n, name="x"), cp.Parameter(n, name="c")
    problem = cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == 1, x >= 0])
    return problem, [c], [x], lambda seed: [np.random.default_rng(seed).uniform(0, 1, (B, n))]


def assignment_lp(size=4):
    """Assignment: a degenerate vertex (2·size − 1 basic variables, size nonzero)."""
    X, C = cp.Variable((size, size), name="X"), cp.Parameter((size, size), name="C")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))),
        [cp.sum(X, axis=1) == 1, cp.sum(X, axis=0) == 1, X >= 0],
    )
    return (
        problem,
        [C],
        [X],
        lambda seed: [np.random.default_rng(seed).uniform(0, 1, (B, size, size))],
    )


def random_qp(n=6, m=5, p=2):
    """The tests' QP (inequality and equality rows) with q, h, f batched; duals output."""
    problem, params, x, ineq, eq, values = problems.qp(n, m, p)

    def make(seed):
        rng = np.random.default_rng(seed)
        out = []
        for param in params:
            value = np.asarray(values[param.name()], dtype=float)
            if param.name() in ("q", "h", "f"):
                value = value + 0.5 * rng.standard_normal((B, *param.shape))
            out.append(value)
        return out

    return problem, params, [x, ineq, eq], make


def optnet_qp(n=10, m=8):
    """OptNet-style QP: min ½‖x‖² + qᵀx s.t. Gx ≤ h with G, q, h batched (own matrices)."""
    x, q = cp.Variable(n, name="x"), cp.Parameter(n, name="q")
    G, h = cp.Parameter((m, n), name="G"), cp.Parameter(m, name="h")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h])

    def make(seed):
        r = np.random.default_rng(seed)
        Gv, x0 = r.standard_normal((B, m, n)), r.standard_normal((B, n))
        hv = np.einsum("bmn,bn->bm", Gv, x0) + r.uniform(0.1, 1.0, (B, m))
        return [3.0 * r.standard_normal((B, n)), Gv, hv]

    return problem, [q, G, h], [x], make


def dense_qp(n=20, m=40):
    """The benchmark's QP, smaller: min ½xᵀ(FᵀF + I)x + qᵀx s.t. Gx ≤ h; q, h batched."""
    rng = np.random.default_rng(1)
    F, G = rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((m, n))
    x, q, h = cp.Variable(n, name="x"), cp.Parameter(n, name="q"), cp.Parameter(m, name="h")
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(F @ x) + 0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h]
    )

    def make(seed):
        r = np.random.default_rng(seed)
        x0 = r.standard_normal((B, n))
        return [3.0 * r.standard_normal((B, n)), x0 @ G.T + r.uniform(0.1, 1.0, (B, m))]

    return problem, [q, h], [x], make


FAMILIES = {
    "box LP": box_lp,
    "simplex LP": simplex_lp,
    "assignment LP": assignment_lp,
    "QP": random_qp,
    "dense QP": dense_qp,
    "OptNet QP": optnet_qp,
}


def setup(family, seed, solver=SOLVER, settings=None, tau=0.1):
    """Forward pass of a family's batch; incoming gradients of random weights."""
    problem, params, outputs, make = FAMILIES[family]()
    template = compile_problem(problem, params, outputs)
    arrays = make(seed)
    batched = [a.ndim > len(p.shape) for a, p in zip(arrays, params)]
    batch = template.program_data(template.stack_parameters(arrays, B), batched)
    if settings is None:
        settings = CLARABEL_TIGHT if solver == "CLARABEL" else {}
    engine = BatchEngine(solver, settings)
    state = engine.forward(template, batch, lpgd_tau=tau)
    rng = np.random.default_rng(seed + 100)
    weights = [rng.standard_normal((B, *slot.shape)) for slot in template.outputs]
    dx, dy = template.output_adjoint(weights, B)
    return engine, template, state, dx, dy


def both(engine, state, dx, dy, tau, rho=0.0, mode="central", ds=None):
    """LPGD with and without prediction: (result, counts, records, summary) each."""
    out = {}
    for on in (True, False):
        result = engine.backward_lpgd(
            state, dx, dy, tau=tau, rho=rho, mode=mode, ds=ds, active_set=on
        )
        stats = state.stats
        out[on] = (
            result,
            (stats.active_set_predicted, stats.active_set_resolved),
            [r for sides in stats.backward for r in sides.values()],
            stats.summary(),
        )
    return out


def assert_same_gradient(on, off, rtol=RTOL[SOLVER]):
    for a, b in zip(on.gradient.parts(), off.gradient.parts()):
        if a is None:
            continue
        scale = max(np.abs(b).max(), 1e-3)
        assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


def cvxpy_solution(A, b, c, P, cones):
    """The cone program written out in CVXPY, solved by Clarabel at 1e-10: (x, y) or None."""
    x = cp.Variable(A.shape[1])
    z = cones.zero
    objective = c @ x
    if P is not None and P.nnz:
        objective = objective + 0.5 * cp.quad_form(x, cp.psd_wrap(P.toarray()))
    constraints = []
    if z:
        constraints.append(A[:z] @ x == b[:z])
    constraints.append(A[z:] @ x <= b[z:])
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(solver=cp.CLARABEL, **REFERENCE)
    if problem.status != cp.OPTIMAL:
        return None
    y = np.concatenate([np.atleast_1d(con.dual_value) for con in constraints])
    return x.value, y


def check_against_cvxpy(template, state, result, dx, dy, tau, per_side=6):
    """Predicted perturbed solutions (some of each side) equal CVXPY + Clarabel's."""
    structure, batch = template.structure, state.batch
    checked = 0
    for sign, solution in result.sides.items():
        rows = [i for i, who in enumerate(solution.solvers) if who == ACTIVE_SET][:per_side]
        for position in rows:
            i = int(result.active[position])
            A, P = batch.element_matrices(structure, i)
            reference = cvxpy_solution(
                A,
                batch.b[i] - sign * tau * dy[i],
                batch.c[i] + sign * tau * dx[i],
                P,
                structure.cones,
            )
            if reference is None:
                continue
            x_ref, y_ref = reference
            assert np.allclose(solution.x[position], x_ref, atol=2e-6, rtol=1e-6)
            assert np.allclose(solution.y[position], y_ref, atol=2e-6, rtol=1e-6)
            checked += 1
    return checked


# ---- gradient with prediction = gradient without ----------------------------------------


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("tau", [1e-2, 1.0], ids=["small-tau", "large-tau"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_prediction_changes_no_gradient_and_matches_cvxpy(family, tau, solver):
    predicted = resolved = checked = 0
    for seed in (0, 1):
        engine, template, state, dx, dy = setup(family, seed, solver=solver, tau=tau)
        out = both(engine, state, dx, dy, tau)
        (on, counts, records, summary), (off, off_counts, *_) = out[True], out[False]
        assert off_counts == (0, 0)
        assert_same_gradient(on, off, RTOL[solver])
        assert sum(counts) >= 2 * on.active.size  # every perturbed problem tried
        predicted, resolved = predicted + counts[0], resolved + counts[1]
        checked += check_against_cvxpy(template, state, on, dx, dy, tau)
        if not on.fallbacks:  # one attempt each: the records are the attempts
            assert sum(r.solver == ACTIVE_SET for r in records) == counts[0]
            assert summary["backward_predicted"] == counts[0]
        assert all(
            r.iterations == 0 and r.status == OPTIMAL for r in records if r.solver == ACTIVE_SET
        )
    if family == "assignment LP":  # degenerate vertices: more active rows than variables
        assert predicted == 0 and resolved == 4 * B
    elif tau < 0.1:  # the active set rarely changes
        assert predicted >= 3 * B and checked >= 12, (predicted, resolved, checked)
    else:  # it often does: those elements are re-solved
        assert predicted > 0 and resolved > B and checked >= min(predicted, 12)


@pytest.mark.skipif(not moreau_available(), reason="needs Moreau")
@pytest.mark.parametrize("family", ["dense QP", "OptNet QP"])
def test_predicted_solutions_are_exact_where_a_solver_is_loose(family):
    """Moreau's active-set method is verified at ~2e-4; predictions are checked at 1e-8
    (at Moreau's tolerance, wrong active sets with small sign violations would pass)."""
    engine, template, state, dx, dy = setup(family, 3, solver="MOREAU", settings={}, tau=0.01)
    assert state.tolerance > 1e-6
    out = both(engine, state, dx, dy, 0.01)
    assert out[True][1][0] > B
    assert check_against_cvxpy(template, state, out[True][0], dx, dy, 0.01, per_side=B) >= B


@pytest.mark.parametrize("family", ["QP", "box LP"])
@pytest.mark.parametrize("rho", [0.5])
def test_proximal_variant_is_predicted_too(family, rho):
    engine, _, state, dx, dy = setup(family, 4, tau=0.05)
    out = both(engine, state, dx, dy, 0.05, rho=rho)
    assert out[True][1][0] > B
    assert_same_gradient(out[True][0], out[False][0])


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_slack_gradient_is_predicted_too(rho):
    engine, template, state, dx, dy = setup("QP", 5, tau=0.05)
    ds = np.random.default_rng(0).standard_normal(state.s.shape)
    out = both(engine, state, dx, dy, 0.05, rho=rho, ds=ds)
    assert out[True][1][0] > B
    assert_same_gradient(out[True][0], out[False][0])


@pytest.mark.parametrize("mode", ["upper", "lower"])
def test_one_sided_modes(mode):
    engine, _, state, dx, dy = setup("QP", 6, tau=0.05)
    out = both(engine, state, dx, dy, 0.05, mode=mode)
    assert out[True][1][0] > B / 2
    assert_same_gradient(out[True][0], out[False][0])


# ---- where the active set changes or is degenerate --------------------------------------


@pytest.mark.parametrize("solver", [SOLVER, "SCS"])
def test_large_tau_changes_the_vertex_and_those_elements_are_resolved(solver):
    engine, _, state, dx, dy = setup("simplex LP", 7, solver=solver, tau=3.0)
    out = both(engine, state, dx, dy, 3.0, mode="upper")
    on, (predicted, resolved), *_ = out[True]
    assert_same_gradient(on, out[False][0], RTOL[solver])
    upper = on.sides[+1]
    moved = np.abs(upper.x - state.x).max(axis=1) > 1e-6
    assert 0 < moved.sum() < B  # some elements change vertex, some do not
    by_active_set = np.array([who == ACTIVE_SET for who in upper.solvers])
    assert not np.any(by_active_set & moved)  # a changed vertex is never predicted
    assert resolved >= moved.sum() and predicted == by_active_set.sum() > 0
    assert np.all(upper.ok)


def test_degenerate_vertex_is_not_predicted():
    """min −x₁ − x₂ s.t. x₁ ≤ 1, x₂ ≤ 1, x₁ + x₂ ≤ 2, x ≥ 0: three active rows at (1, 1)."""
    x, c = cp.Variable(2, name="x"), cp.Parameter(2, name="c")
    problem = cp.Problem(cp.Minimize(c @ x), [x <= 1, cp.sum(x) <= 2, x >= 0])
    layer_on = cvxlpgd.CvxpyLayer(
        problem, [c], [x], solver="CLARABEL", tau=0.1, solver_args=CLARABEL_TIGHT
    )
    c0 = torch.tensor([[-1.0, -1.0], [-1.0, 0.5]], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([[1.0, -2.0], [0.5, 1.0]], dtype=torch.float64)
    (out,) = layer_on(c0)
    with warnings.catch_warnings():  # element 0 does not move at this τ: a zero gradient
        warnings.simplefilter("ignore", cvxlpgd.ZeroGradientWarning)
        (weights * out).sum().backward()
    stats = layer_on.solver_stats
    assert [r.solver for r in stats.backward[0].values()] == ["CLARABEL", "CLARABEL"]
    assert {r.solver for r in stats.backward[1].values()} == {ACTIVE_SET}
    template = compile_problem(problem, [c], [x])
    batch = template.program_data(template.stack_parameters([c0.detach().numpy()], 2), [True])
    engine = BatchEngine("CLARABEL", CLARABEL_TIGHT)
    state = engine.forward(template, batch, lpgd_tau=0.1)
    dx, dy = template.output_adjoint([weights.numpy()], 2)
    results = both(engine, state, dx, dy, 0.1)
    assert_same_gradient(results[True][0], results[False][0])
    grad = template.parameter_gradient(*results[True][0].gradient.parts())[0]
    assert np.allclose(grad, c0.grad.numpy())


def test_a_tie_in_the_perturbed_problem_is_left_to_the_solver():
    """max rᵀw, Σw = 1, w ≥ 0 at r = (1, .5, .2); the upper side's costs c + τd tie
    assets 1 and 3 (τ = 1): its optimum is a whole edge. The forward vertex e₁ is one
    optimal point (its dual on w₃ ≥ 0 is 0: not strictly complementary); the solver
    returns the edge's middle, and the gradient is the solver's."""
    problem, params, w = problems.portfolio_lp()
    template = compile_problem(problem, params, [w])
    batch = template.program_data(template.stack_parameters([np.array([1.0, 0.5, 0.2])], 1))
    engine = BatchEngine("CLARABEL", CLARABEL_TIGHT)
    state = engine.forward(template, batch, lpgd_tau=1.0)
    dx, dy = template.output_adjoint([-np.array([[0.2, 0.5, 1.0]])], 1)
    out = both(engine, state, dx, dy, 1.0)
    on = out[True][0]
    assert on.sides[+1].solvers == ["CLARABEL"] and on.sides[-1].solvers == [ACTIVE_SET]
    assert np.allclose(on.sides[+1].x, [[0.5, 0.0, 0.5]], atol=1e-6)
    assert_same_gradient(on, out[False][0])


def test_duplicated_active_rows_are_not_predicted():
    """A QP whose optimum has the same row active twice: its duals are not unique."""
    x, t = cp.Variable(2, name="x"), cp.Parameter(2, name="t")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - t)), [x[0] <= 1, x[0] <= 1, x >= -5])
    template = compile_problem(problem, [t], [x])
    values = np.array([[2.0, 0.3], [0.5, 0.3]])
    batch = template.program_data(template.stack_parameters([values], 2), [True])
    engine = BatchEngine("CLARABEL", CLARABEL_TIGHT)
    state = engine.forward(template, batch, lpgd_tau=0.1)
    dx, dy = template.output_adjoint([np.ones((2, 2))], 2)
    out = both(engine, state, dx, dy, 0.1)
    solvers = out[True][0].sides[+1].solvers
    assert solvers == ["CLARABEL", ACTIVE_SET]
    assert_same_gradient(out[True][0], out[False][0])


# ---- the checks reject wrong predictions -------------------------------------------------


def test_a_wrong_active_set_is_rejected(monkeypatch):
    engine, _, state, dx, dy = setup("QP", 8, tau=0.05)
    right = both(engine, state, dx, dy, 0.05)
    assert right[True][1][0] > B

    def flipped(y, s, zero):
        active = y <= s
        active[:, :zero] = True
        return active

    monkeypatch.setattr(prediction, "active_rows", flipped)
    wrong = both(engine, state, dx, dy, 0.05)
    assert wrong[True][1] == (0, 2 * B)
    assert_same_gradient(wrong[True][0], right[False][0])


@pytest.mark.parametrize("damage", ["dual sign", "slack sign", "x", "y"])
def test_check_rejects_a_damaged_point(damage):
    engine, template, state, dx, dy = setup("QP", 9, tau=0.05)
    structure, batch = template.structure, state.batch
    c, b = perturbed_costs(
        +1, 0.05, 0.0, batch, structure.A_pattern, dx, dy, None, state.x, state.s
    )
    side = batch.with_vectors(c, b)
    active = active_set_module.active_rows(state.y, state.s, structure.cones.zero)
    x, y, trusted = predict([side], structure, active)
    x, y = x[0], y[0]
    s = np.where(active, 0.0, side.b - prediction.products(side, structure, x)[0])
    point = BatchSolution(x, y, s, [OPTIMAL] * B, np.zeros(B, int), np.zeros(B), ACTIVE_SET)
    base = check(point, side, structure, active, 1e-10)
    ok = base & trusted
    assert ok.sum() > B / 2
    i = int(np.flatnonzero(ok)[0])
    z = structure.cones.zero
    inequality_active = np.flatnonzero(active[i, z:]) + z
    inactive = np.flatnonzero(~active[i])
    bad_x, bad_y, bad_s = x.copy(), y.copy(), s.copy()
    if damage == "dual sign":  # y_i < 0 on an active row: the row should be inactive
        bad_y[i, inequality_active[0]] = -1e-3
    elif damage == "slack sign":  # s_i < 0 on an inactive row: infeasible
        bad_s[i, inactive[0]] = -1e-3
    elif damage == "x":
        bad_x[i, 0] += 1e-5
    else:
        bad_y[i, 0] += 1e-5
    damaged = BatchSolution(
        bad_x, bad_y, bad_s, [OPTIMAL] * B, np.zeros(B, int), np.zeros(B), ACTIVE_SET
    )
    again = check(damaged, side, structure, active, 1e-10)
    assert not again[i]
    assert np.array_equal(np.delete(again, i), np.delete(base, i))


# ---- options, statistics, other cones ----------------------------------------------------


def test_engine_option_turns_prediction_off():
    _, template, state, dx, dy = setup("QP", 11, tau=0.05)
    engine = BatchEngine(SOLVER, active_set=False)
    state = engine.forward(template, state.batch, lpgd_tau=0.05)
    engine.backward_lpgd(state, dx, dy, tau=0.05, rho=0.0, mode="central")
    assert (state.stats.active_set_predicted, state.stats.active_set_resolved) == (0, 0)
    assert all(r.solver == SOLVER for sides in state.stats.backward for r in sides.values())
    engine.backward_lpgd(state, dx, dy, tau=0.05, rho=0.0, mode="central", active_set=True)
    assert state.stats.active_set_predicted > 0


def test_layer_solver_stats_count_predictions():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", tau=1e-3)
    q = torch.tensor(values["q"]).repeat(4, 1).requires_grad_(True)
    (out,) = layer(torch.tensor(values["a"]), q, torch.tensor(values["lo"]))
    out.sum().backward()
    stats = layer.solver_stats
    assert stats.active_set_predicted == 8 and stats.active_set_resolved == 0
    assert stats.summary()["backward_predicted"] == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = cvxlpgd.CvxpyLayer(problem, params, [x], gradient="exact", solver="SCS")
        q2 = q.detach().clone().requires_grad_(True)
        (out2,) = exact(torch.tensor(values["a"]), q2, torch.tensor(values["lo"]))
        out2.sum().backward()
    assert torch.allclose(q.grad, q2.grad, atol=1e-5)


def test_curved_cones_are_not_predicted():
    problem, params, x, values = problems.socp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL", tau=0.01)
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    layer(*tensors)[0].sum().backward()
    stats = layer.solver_stats
    assert (stats.active_set_predicted, stats.active_set_resolved) == (0, 0)
    assert all(r.solver == "CLARABEL" for sides in stats.backward for r in sides.values())


@pytest.mark.parametrize("shared", [True, False], ids=["range-space", "KKT"])
def test_nearly_singular_systems_are_not_trusted(shared):
    """Two active rows that are parallel up to rounding: LU meets no zero pivot, but the
    system is singular in exact arithmetic (the duals are not unique)."""
    import scipy.sparse as sp

    from cvxlpgd.problem.cones import ConeDims
    from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern

    rows = {"parallel": [[0.1, 0.7], [0.3, 2.1]], "independent": [[0.1, 0.7], [0.3, -2.1]]}
    trusted = {}
    for name, A in rows.items():
        A = sp.csc_matrix(np.array(A))
        P = sp.csc_matrix(np.eye(2))
        structure = ProgramStructure(ConeDims(nonneg=2), SparsePattern.of(A), SparsePattern.of(P))
        count = 1 if shared else 2
        batch = ProgramBatch(
            c=np.ones((2, 2)),
            b=np.zeros((2, 2)),
            A_data=np.tile(A.data, (count, 1)),
            P_data=np.tile(P.data, (count, 1)),
        )
        if shared:
            batch = ProgramBatch(
                c=batch.c,
                b=batch.b,
                A_data=np.broadcast_to(A.data, (2, A.nnz)),
                P_data=np.broadcast_to(P.data, (2, P.nnz)),
            )
        x, y, ok = predict([batch], structure, np.ones((2, 2), dtype=bool))
        trusted[name] = ok
    assert not trusted["parallel"].any() and trusted["independent"].all()


def test_layer_option_turns_prediction_off():
    problem, params, x, values = problems.scaled_qp()
    q = torch.tensor(values["q"]).repeat(4, 1)
    grads = {}
    for on in (True, False):
        layer = cvxlpgd.CvxpyLayer(
            problem,
            params,
            [x],
            solver="CLARABEL",
            tau=1e-2,
            active_set=on,
            solver_args=CLARABEL_TIGHT,
        )
        assert ("active_set=False" in repr(layer)) is not on
        qt = q.clone().requires_grad_(True)
        (out,) = layer(torch.tensor(values["a"]), qt, torch.tensor(values["lo"]))
        (out * torch.arange(3.0, dtype=torch.float64)).sum().backward()
        grads[on] = qt.grad
        stats = layer.solver_stats
        assert (stats.active_set_predicted > 0) is on and stats.active_set_resolved == 0
    assert torch.allclose(grads[True], grads[False], rtol=1e-6, atol=1e-8)
    with pytest.raises(TypeError, match="active_set must be True or False"):
        cvxlpgd.CvxpyLayer(problem, params, [x], active_set=1)


@pytest.mark.parametrize("family", ["simplex LP", "QP", "OptNet QP"])
def test_sparse_factorization_gives_the_same_predictions(family, monkeypatch):
    engine, _, state, dx, dy = setup(family, 12, tau=0.05)
    dense = both(engine, state, dx, dy, 0.05)[True]
    monkeypatch.setattr(active_set_module, "DENSE_LIMIT", 0)  # every system to SuperLU
    sparse = both(engine, state, dx, dy, 0.05)[True]
    assert sparse[1] == dense[1] and dense[1][0] > B
    for a, b in zip(sparse[0].gradient.parts(), dense[0].gradient.parts()):
        if a is not None:
            assert np.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_a_primal_degenerate_prediction_is_rejected():
    """min −x₁ − 2x₂ s.t. x₁ ≤ 1, x₂ ≤ 1, x₁ + x₂ ≤ 2, predicted on the rows {1, 2}:
    the point (1, 1) is optimal, but the third row is at zero on both sides (s₃ = y₃ = 0)
    and the duals are not unique (y₃ ∈ [0, 1]): not the prediction's to choose."""
    import scipy.sparse as sp

    from cvxlpgd.problem.cones import ConeDims
    from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern

    A = sp.csc_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    structure = ProgramStructure(ConeDims(nonneg=3), SparsePattern.of(A), None)
    b = np.array([[1.0, 1.0, 2.0], [1.0, 1.0, 2.5]])  # the second: row 3 strictly slack
    batch = ProgramBatch(
        c=np.array([[-1.0, -2.0]] * 2), b=b, A_data=np.broadcast_to(A.data, (2, A.nnz)), P_data=None
    )
    active = np.array([[True, True, False]] * 2)
    x, y, trusted = predict([batch], structure, active)
    assert trusted.all() and np.allclose(x[0], [[1.0, 1.0]] * 2)
    s = np.where(active, 0.0, b - x[0] @ A.toarray().T)
    point = BatchSolution(x[0], y[0], s, [OPTIMAL] * 2, np.zeros(2, int), np.zeros(2), ACTIVE_SET)
    assert check(point, batch, structure, active, 1e-10).tolist() == [False, True]


@pytest.mark.skipif(not moreau_available(), reason="needs Moreau")
def test_default_leaves_small_problems_to_moreau_and_predicts_for_other_solvers():
    """Small QPs (n + m < 100): Moreau re-solves them by default; Clarabel's are predicted,
    and an explicit ``active_set=True`` on the engine call predicts Moreau's too."""
    from cvxlpgd.engine.prediction import MOREAU_PREDICTION_MIN_SIZE, worth_predicting

    problem, params, x, values = problems.scaled_qp()
    template = compile_problem(problem, params, [x])
    structure = template.structure
    assert structure.n + structure.m < MOREAU_PREDICTION_MIN_SIZE
    assert not worth_predicting("MOREAU", structure)
    assert worth_predicting("CLARABEL", structure)
    q = torch.tensor(values["q"]).repeat(4, 1)
    counts = {}
    for solver in ("MOREAU", "CLARABEL"):
        layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver=solver, tau=1e-2)
        qt = q.clone().requires_grad_(True)
        (out,) = layer(torch.tensor(values["a"]), qt, torch.tensor(values["lo"]))
        (out * torch.arange(3.0, dtype=torch.float64)).sum().backward()
        counts[solver] = layer.solver_stats.active_set_predicted
    assert counts["MOREAU"] == 0 and counts["CLARABEL"] > 0
