"""The exact derivative of LPs and QPs from the forward's active set
(cvxlpgd.engine.exact_active_set), the default of ``gradient="exact"`` there.

References: central finite differences of the solution map in random directions of
all the data (c, b, A, P), each side re-solved by CVXPY + Clarabel at 1e-10, on random
elements of six families and several seeds; and, where the active set does not
determine the derivative (degenerate vertices, ties), the other exact backends, which
those elements are handed to.
"""

import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.engine import batch as batch_module
from cvxlpgd.engine import exact_active_set
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.exact_active_set import ACTIVE_SET_BACKEND, exact_from_active_set
from cvxlpgd.solvers.moreau_backend import moreau_available
from tests.test_active_set import FAMILIES, B, cvxpy_solution, setup

#: Families whose elements are (almost all) strictly complementary.
DETERMINED = ["box LP", "simplex LP", "QP", "dense QP", "OptNet QP"]


def loss(structure, A, b, c, P, dx, dy):
    """⟨dx, x*⟩ + ⟨dy, y*⟩ of one element, solved by CVXPY + Clarabel (None: failed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = cvxpy_solution(A, b, c, P, structure.cones)
    return None if solution is None else dx @ solution[0] + dy @ solution[1]


def directional_errors(template, state, gradient, dx, dy, rows, rng, eps=1e-4, costs_only=False):
    """(predicted, finite difference) of the loss along random (Δc, Δb, ΔA, ΔP) (only Δc
    with ``costs_only``) for elements ``rows`` (an element CVXPY fails on is left out)."""
    structure, batch = template.structure, state.batch
    pairs = []
    for i in rows:
        A, P = batch.element_matrices(structure, i)
        dc, db = rng.standard_normal(structure.n), rng.standard_normal(structure.m)
        dA = A.copy()
        dA.data = rng.standard_normal(A.nnz)
        if costs_only:
            db, dA = 0 * db, 0 * dA
        predicted = gradient.dc[i] @ dc + gradient.db[i] @ db
        predicted += (
            gradient.dA_data[i] @ dA.toarray()[structure.A_pattern.rows, structure.A_pattern.cols]
        )
        dP = None
        if P is not None and P.nnz:
            half = rng.standard_normal((structure.n, structure.n))
            dense = np.where(P.toarray() != 0, half + half.T, 0.0)
            dP = type(P)(dense)
            pattern = structure.P_pattern
            predicted += gradient.dP_data[i] @ dense[pattern.rows, pattern.cols]
        plus, minus = (
            loss(
                structure,
                A + sign * eps * dA,
                batch.b[i] + sign * eps * db,
                batch.c[i] + sign * eps * dc,
                None if dP is None else P + sign * eps * dP,
                dx[i],
                dy[i],
            )
            for sign in (+1, -1)
        )
        if plus is not None and minus is not None:
            pairs.append((float(predicted), (plus - minus) / (2 * eps)))
    return pairs


def directional_check(template, state, gradient, dx, dy, rows, rng):
    """Assert the directional derivatives match within 1e-4 (relative to 1 + |FD|);
    returns how many were compared."""
    pairs = directional_errors(template, state, gradient, dx, dy, rows, rng)
    for predicted, difference in pairs:
        assert abs(predicted - difference) <= 1e-4 * (1 + abs(difference)), pairs
    return len(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("family", DETERMINED)
def test_derivative_matches_finite_differences_of_the_solution_map(family, seed):
    engine, template, state, dx, dy = setup(family, seed)
    gradient, ok = exact_from_active_set(
        state.batch, template.structure, state.solution, dx, dy, state.tolerance
    )
    assert ok.mean() > 0.9  # these families are strictly complementary but for rare ties
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(ok), size=4, replace=False)
    assert directional_check(template, state, gradient, dx, dy, rows, rng) >= 3
    assert np.all(gradient.dc[~ok] == 0)  # left to the other backend


@pytest.mark.parametrize("family", ["box LP", "QP"])
def test_engine_path_equals_the_other_backends_where_both_are_exact(family):
    """Through the engine (forward with exact_backend="active-set", then backward) the
    gradient equals diffcp's adjoint (LP) and Moreau's derivative (QP) on this family,
    up to their accuracy; every element was answered by the active set."""
    engine, template, lpgd_state, dx, dy = setup(family, 5)
    batch = lpgd_state.batch
    state = engine.forward(template, batch, exact_backend=ACTIVE_SET_BACKEND)
    ours = engine.backward_exact(state, dx, dy)
    assert state.stats.active_set_predicted == B and state.stats.active_set_resolved == 0
    other = exact_active_set.rescue_backend(template.structure)
    if other == "moreau" and not moreau_available():
        pytest.skip("needs Moreau")
    reference_engine = BatchEngine("MOREAU" if other == "moreau" else "CLARABEL")
    reference = reference_engine.forward(template, batch, exact_backend=other)
    theirs = reference_engine.backward_exact(reference, dx, dy)
    for a, b in zip(ours.parts(), theirs.parts()):
        if a is not None and b is not None:
            assert np.abs(a - b).max() <= 5e-3 * max(1.0, np.abs(b).max())


def test_degenerate_vertices_go_to_diffcp(monkeypatch):
    """Degenerate vertices the certificate of a fixed vertex does not cover go to diffcp's
    adjoint, and the gradient is diffcp's."""
    monkeypatch.setattr(
        exact_active_set, "fixed_vertices", lambda batch, structure, solution, rows: rows < 0
    )
    engine, template, state, dx, dy = setup("assignment LP", 0)
    forward = engine.forward(template, state.batch, exact_backend=ACTIVE_SET_BACKEND)
    ours = engine.backward_exact(forward, dx, dy)
    assert forward.stats.active_set_predicted == 0
    assert forward.stats.active_set_resolved == B
    diffcp_state = engine.forward(template, state.batch, exact_backend="diffcp")
    theirs = engine.backward_exact(diffcp_state, dx, dy)
    for a, b in zip(ours.parts(), theirs.parts()):
        if a is not None:
            assert np.allclose(a, b, atol=1e-9)


def weakly_active_qp():
    """min ½‖x − t‖² s.t. x₁ ≤ 1: at t₁ = 1 the row is active with a zero dual (a tie)."""
    x, t = cp.Variable(2, name="x"), cp.Parameter(2, name="t")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - t)), [x[0] <= 1])
    return problem, t, x, np.array([[1.0, 0.3], [2.0, 0.3], [0.2, -1.0]])


@pytest.mark.skipif(not moreau_available(), reason="needs Moreau")
def test_a_tie_goes_to_moreau_and_the_others_stay():
    """Element 0 sits on the kink of the solution map: its derivative is Moreau's; the
    others' are the closed form (x = min(t₁, 1), t₂)."""
    problem, t, x, values = weakly_active_qp()
    layer = cvxlpgd.CvxpyLayer(problem, [t], [x], gradient="exact")
    tensor = torch.tensor(values, requires_grad=True)
    (out,) = layer(tensor)
    weights = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], dtype=torch.float64)
    (weights * out).sum().backward()
    stats = layer.solver_stats
    assert stats.exact_backend == ACTIVE_SET_BACKEND
    assert (stats.active_set_predicted, stats.active_set_resolved) == (2, 1)
    assert np.allclose(tensor.grad[1:].numpy(), [[0.0, 2.0], [1.0, 2.0]], atol=1e-7)
    reference = cvxlpgd.CvxpyLayer(problem, [t], [x], gradient="exact", exact_backend="moreau")
    tensor_ref = torch.tensor(values[:1], requires_grad=True)
    (out_ref,) = reference(tensor_ref)
    (weights[:1] * out_ref).sum().backward()
    assert np.allclose(tensor.grad[0].numpy(), tensor_ref.grad[0].numpy(), atol=1e-6)


def test_a_tie_without_moreau_names_the_elements(monkeypatch):
    problem, t, x, values = weakly_active_qp()
    layer = cvxlpgd.CvxpyLayer(
        problem, [t], [x], gradient="exact", exact_backend="active-set", solver="CLARABEL"
    )
    monkeypatch.setattr(batch_module, "moreau_available", lambda: False)
    (out,) = layer(torch.tensor(values, requires_grad=True))
    with pytest.raises(ValueError, match=r"batch elements \[0\].*not determined"):
        out.sum().backward()


def test_a_wrong_active_set_is_rejected(monkeypatch):
    """An active set with one row dropped gives a point the checks reject: those
    elements go to the other backend instead of getting a wrong derivative."""
    engine, template, state, dx, dy = setup("QP", 3)
    real = exact_active_set.active_rows

    def dropped(y, s, zero):
        active = real(y, s, zero)
        for row in active:
            row[np.flatnonzero(row[zero:])[:1] + zero] = False
        return active

    monkeypatch.setattr(exact_active_set, "active_rows", dropped)
    touched = real(state.solution.y, state.solution.s, template.structure.cones.zero)
    touched = touched[:, template.structure.cones.zero :].any(axis=1)
    _, ok = exact_from_active_set(
        state.batch, template.structure, state.solution, dx, dy, state.tolerance
    )
    assert touched.sum() > 10 and not np.any(ok & touched)


@pytest.mark.parametrize("damage", ["dc", "db", "dA", "dP"])
def test_each_term_of_the_formula_is_needed(damage, monkeypatch):
    """Flipping the sign of one term of the adjoint formula breaks the finite-difference
    check (so that check can fail)."""
    original = exact_active_set.adjoint_gradient

    def broken(x, y, wx, wy, structure):
        gradient = original(x, y, wx, wy, structure)
        name = {"dc": "dc", "db": "db", "dA": "dA_data", "dP": "dP_data"}[damage]
        setattr(gradient, name, -getattr(gradient, name))
        return gradient

    monkeypatch.setattr(exact_active_set, "adjoint_gradient", broken)
    engine, template, state, dx, dy = setup("dense QP" if damage == "dP" else "QP", 1)
    gradient, ok = exact_from_active_set(
        state.batch, template.structure, state.solution, dx, dy, state.tolerance
    )
    rng = np.random.default_rng(0)
    rows = np.flatnonzero(ok)[:2]
    with pytest.raises(AssertionError):
        directional_check(template, state, gradient, dx, dy, rows, rng)


def test_curved_cones_are_refused_by_name():
    x, z = cp.Variable(3, name="x"), cp.Parameter(3, name="z")
    problem = cp.Problem(cp.Minimize(cp.norm(x - z, 2)), [x >= 0])
    layer = cvxlpgd.CvxpyLayer(problem, [z], [x], gradient="exact", exact_backend="active-set")
    with pytest.raises(ValueError, match="LPs and QPs only"):
        layer(torch.ones(3, dtype=torch.float64, requires_grad=True))
    auto = cvxlpgd.CvxpyLayer(problem, [z], [x], gradient="exact")
    assert "(active-set)" not in repr(auto)


def test_layer_default_on_a_qp_is_the_active_set_and_matches_moreau():
    """gradient="exact" with every default on the tests' QP family (duals as outputs)."""
    if not moreau_available():
        pytest.skip("needs Moreau")
    problem, params, outputs, make = FAMILIES["QP"]()
    values = make(4)
    layers = {
        name: cvxlpgd.CvxpyLayer(problem, params, outputs, gradient="exact", exact_backend=name)
        for name in ("auto", "moreau")
    }
    grads = {}
    for name, layer in layers.items():
        tensors = [torch.tensor(v, requires_grad=True) for v in values]
        outs = layer(*tensors)
        rng = np.random.default_rng(0)
        sum((torch.tensor(rng.standard_normal(o.shape)) * o).sum() for o in outs).backward()
        grads[name] = [t.grad.numpy() for t in tensors]
    assert layers["auto"].solver_stats.exact_backend == ACTIVE_SET_BACKEND
    assert layers["auto"].solver_stats.active_set_predicted == B
    for ours, theirs in zip(grads["auto"], grads["moreau"]):
        assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max())


def test_active_set_off_keeps_the_previous_backends():
    problem, params, outputs, make = FAMILIES["box LP"]()
    layer = cvxlpgd.CvxpyLayer(problem, params, outputs, gradient="exact", active_set=False)
    assert "exact_backend='auto' (diffcp)" in repr(layer)
    (out,) = layer(*[torch.tensor(v, requires_grad=True) for v in make(0)])
    out.sum().backward()
    stats = layer.solver_stats
    assert stats.exact_backend == "diffcp" and stats.active_set_predicted == 0


def test_the_derivative_does_not_depend_on_the_solver_that_found_the_vertex():
    """An LP whose vertex moves with h (min cᵀx, Gx ≤ h, box): SCS, ECOS, Clarabel and
    Moreau find the vertex to their own accuracy, the polished point is the same, and so
    is the derivative (to rounding); it equals diffcp's at a tight Clarabel solution."""
    rng = np.random.default_rng(3)
    n, k = 6, 4
    x, h = cp.Variable(n, name="x"), cp.Parameter(k, name="h")
    G, c = rng.standard_normal((k, n)), rng.standard_normal(n)
    problem = cp.Problem(cp.Minimize(c @ x), [G @ x <= h, x >= -1, x <= 1])
    values = rng.uniform(0.2, 1.0, (8, k))
    weights = torch.tensor(rng.standard_normal((8, n)))
    solvers = ["SCS", "ECOS", "CLARABEL"] + (["MOREAU"] if moreau_available() else [])
    grads = {}
    for solver in solvers + ["diffcp"]:
        options = {"solver": solver} if solver != "diffcp" else {"exact_backend": "diffcp"}
        if solver == "diffcp":
            options["solver"] = "CLARABEL"
            options["solver_args"] = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
        layer = cvxlpgd.CvxpyLayer(problem, [h], [x], gradient="exact", **options)
        tensor = torch.tensor(values, requires_grad=True)
        (out,) = layer(tensor)
        (weights * out).sum().backward()
        grads[solver] = tensor.grad.numpy()
        if solver != "diffcp":
            assert layer.solver_stats.exact_backend == ACTIVE_SET_BACKEND
            assert layer.solver_stats.active_set_predicted == 8
    assert np.abs(grads["CLARABEL"]).max() > 0.1  # the vertex moves with h
    for solver in solvers:
        np.testing.assert_allclose(grads[solver], grads["CLARABEL"], atol=1e-8)
    np.testing.assert_allclose(grads["diffcp"], grads["CLARABEL"], atol=1e-5)


def assignment(size=3):
    X, C = cp.Variable((size, size), name="X"), cp.Parameter((size, size), name="C")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))),
        [cp.sum(X, axis=1) == 1, cp.sum(X, axis=0) == 1, X >= 0],
    )
    return problem, C, X


def test_a_unique_degenerate_vertex_has_a_zero_derivative_in_the_costs():
    """The assignment LP's vertices are degenerate; where the optimal assignment is unique
    it stays optimal under small cost changes, so the exact gradient in C is 0 (diffcp's
    adjoint returns only noise of the solver's accuracy there); finite differences of the
    solution map agree."""
    engine, template, state, dx, dy = setup("assignment LP", 0)
    forward = engine.forward(template, state.batch, exact_backend=ACTIVE_SET_BACKEND)
    rows = np.arange(B)
    fixed = exact_active_set.fixed_vertices(
        forward.batch, template.structure, forward.solution, rows
    )
    assert fixed.all()
    gradient = engine.backward_exact(forward, dx, np.zeros_like(dy))
    assert forward.stats.active_set_predicted == B and not np.any(gradient.dc)
    diffcp_state = engine.forward(template, state.batch, exact_backend="diffcp")
    theirs = engine.backward_exact(diffcp_state, dx, np.zeros_like(dy))
    assert np.abs(theirs.dc).max() < 1e-5  # the same derivative, up to diffcp's noise
    rng = np.random.default_rng(1)
    pairs = directional_errors(
        template, forward, gradient, dx, np.zeros_like(dy), [0, 1], rng, costs_only=True
    )
    assert len(pairs) == 2 and all(abs(fd) < 1e-6 for _, fd in pairs)


@pytest.mark.parametrize(
    "costs",
    [np.ones((3, 3)), np.array([[0.0, 1, 1], [1, 0, 0], [1, 0, 0]])],
    ids=["all tied", "two assignments tied"],
)
def test_a_tied_assignment_is_not_certified(costs):
    """Where two or more assignments are optimal the solution is a face, not a vertex: the
    certificate fails and the element goes to diffcp."""
    problem, C, X = assignment()
    layer = cvxlpgd.CvxpyLayer(problem, [C], [X], gradient="exact", solver="CLARABEL")
    values = np.stack([costs, np.arange(9.0).reshape(3, 3) ** 1.5])
    tensor = torch.tensor(values, requires_grad=True)
    (out,) = layer(tensor)
    out.sum().backward()
    stats = layer.solver_stats
    assert (stats.active_set_predicted, stats.active_set_resolved) == (1, 1)


def test_costs_only_is_required_for_the_zero_derivative():
    """With a parameter in b, or an incoming gradient on the duals, a degenerate vertex's
    derivative is not determined: those elements go to diffcp."""
    X, C = cp.Variable((3, 3), name="X"), cp.Parameter((3, 3), name="C")
    r = cp.Parameter(3, name="r")
    rows = cp.sum(X, axis=1) == r
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))), [rows, cp.sum(X, axis=0) == 1, X >= 0]
    )
    costs = torch.tensor(np.arange(9.0).reshape(3, 3) ** 1.5, requires_grad=True)
    with_b = cvxlpgd.CvxpyLayer(problem, [C, r], [X], gradient="exact")
    (out,) = with_b(costs, torch.ones(3, dtype=torch.float64, requires_grad=True))
    out.sum().backward()
    assert with_b.solver_stats.active_set_resolved == 1
    r.value = np.ones(3)
    problem_c = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))),
        [cp.sum(X, axis=1) == 1, cp.sum(X, axis=0) == 1, X >= 0],
    )
    duals = cvxlpgd.CvxpyLayer(problem_c, [C], [X, problem_c.constraints[0]], gradient="exact")
    x_out, y_out = duals(costs)
    (x_out.sum() + y_out.sum()).backward()
    assert duals.solver_stats.active_set_resolved == 1
    x_only = cvxlpgd.CvxpyLayer(problem_c, [C], [X, problem_c.constraints[0]], gradient="exact")
    x_out, y_out = x_only(costs)
    x_out.sum().backward()
    assert x_only.solver_stats.active_set_predicted == 1


def test_an_ambiguous_row_does_not_enter_the_dual_support():
    """A row whose dual and slack are both small (an interior-point iterate that has not
    decided it) is left out of S: here it would fix the second variable and certify a
    vertex that the clear rows do not determine."""
    from cvxlpgd.problem.compile import compile_problem
    from cvxlpgd.solvers.base import OPTIMAL, BatchSolution

    x, c = cp.Variable(2, name="x"), cp.Parameter(2, name="c")
    problem = cp.Problem(cp.Minimize(c @ x), [x >= 0])
    template = compile_problem(problem, [c], [x])
    batch = template.program_data(template.stack_parameters([np.array([[1.0, 1.0]])], 1), [True])
    structure = template.structure
    assert structure.m == 2 and structure.cones.zero == 0

    def certified(y2, s2):
        solution = BatchSolution(
            np.zeros((1, 2)),
            np.array([[1.0, y2]]),
            np.array([[0.0, s2]]),
            [OPTIMAL],
            np.zeros(1, np.int64),
            np.zeros(1),
            "test",
        )
        return exact_active_set.fixed_vertices(batch, structure, solution, np.arange(1))[0]

    assert certified(1.0, 0.0)  # both duals clearly positive: the vertex (0, 0)
    assert not certified(1e-4, 1e-4)  # the second row undecided
    assert not certified(0.0, 0.0)
