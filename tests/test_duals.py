"""Duals of SOC, exponential and power cone constraints as outputs.

Values against CVXPY's ``dual_value``; gradients through them (LPGD and exact)
against finite differences of CVXPY's own solves (tests/reference.py).
"""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from tests.reference import (
    SCS_EXACT,
    TIGHT_CLARABEL,
    finite_difference_gradient,
    relative_error,
    solve_outputs,
)
from tests.test_gradients import SCS_TIGHT, layer_gradients, random_weights

TIGHT = {
    "SCS": SCS_TIGHT,
    "CLARABEL": TIGHT_CLARABEL,
    "MOREAU": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
}


def soc_case():
    """Three SOC shapes: columns of a matrix (vector t), rows (axis=1), one cone, scalar X.

    Each block is ``min −⟨G, X⟩ + ½‖X‖²`` over its cone with ‖G‖ beyond the cone, so
    every cone is active and its dual unique.
    """
    X, Y = cp.Variable((3, 2), name="X"), cp.Variable((2, 3), name="Y")
    u, v = cp.Variable(3, name="u"), cp.Variable(name="v")
    G, t = cp.Parameter((3, 2), name="G"), cp.Parameter(2, name="t")
    H, s = cp.Parameter((2, 3), name="H"), cp.Parameter(2, name="s")
    h, r = cp.Parameter(3, name="h"), cp.Parameter(name="r")
    constraints = [cp.SOC(t, X, axis=0), cp.SOC(s, Y, axis=1), cp.SOC(r, u), cp.SOC(r, v)]
    objective = (
        -cp.sum(cp.multiply(G, X))
        - cp.sum(cp.multiply(H, Y))
        - h @ u
        - 2 * v
        + 0.5 * (cp.sum_squares(X) + cp.sum_squares(Y) + cp.sum_squares(u) + cp.square(v))
    )
    rng = np.random.default_rng(1)
    values = {
        "G": 2 * rng.standard_normal((3, 2)),
        "t": np.array([0.5, 0.8]),
        "H": 2 * rng.standard_normal((2, 3)),
        "s": np.array([0.6, 0.4]),
        "h": 2 * rng.standard_normal(3),
        "r": np.array(0.7),
    }
    return cp.Problem(cp.Minimize(objective), constraints), [G, t, H, s, h, r], values


def exp_case():
    """``min −aᵀx + ½‖x‖² + Σz  s.t.  (x, b, z) ∈ K_exp`` (z = b·exp(x/b) at the optimum)."""
    x, z = cp.Variable(2, name="x"), cp.Variable(2, name="z")
    a, b = cp.Parameter(2, name="a"), cp.Parameter(2, pos=True, name="b")
    problem = cp.Problem(
        cp.Minimize(-a @ x + 0.5 * cp.sum_squares(x) + cp.sum(z)), [cp.ExpCone(x, b, z)]
    )
    return problem, [a, b], {"a": np.array([1.0, 0.3]), "b": np.array([0.8, 1.2])}


def pow_case():
    """PowCone3D (two cones), PowConeND (one cone of dimension 3, and two along axis 0).

    Each block buys |z| at the cheapest point of its power cone with linear costs and
    is paid ``g·z − ½z²``: the optimum is interior to no cone, so the duals are active.
    """
    x, y, z = (cp.Variable(2, name=name) for name in "xyz")
    W, w = cp.Variable(3, name="W"), cp.Variable(name="w")
    V, q = cp.Variable((3, 2), name="V"), cp.Variable(2, name="q")
    c, g = cp.Parameter(2, pos=True, name="c"), cp.Parameter(2, name="g")
    d, f = cp.Parameter(3, pos=True, name="d"), cp.Parameter(name="f")
    alpha = np.array([[0.2, 0.5], [0.3, 0.25], [0.5, 0.25]])
    constraints = [
        cp.PowCone3D(x, y, z, 0.3),
        cp.PowConeND(W, w, np.array([0.2, 0.3, 0.5])),
        cp.PowConeND(V, q, alpha, axis=0),
    ]
    objective = (
        c @ x
        + cp.sum(y)
        - g @ z
        + 0.5 * cp.sum_squares(z)
        + d @ W
        - f * w
        + 0.5 * cp.square(w)
        + cp.sum(V)
        - cp.sum(q)
        + 0.5 * cp.sum_squares(q)
    )
    values = {
        "c": np.array([1.0, 2.0]),
        "g": np.array([3.0, 2.5]),
        "d": np.array([1.0, 2.0, 0.5]),
        "f": np.array(4.0),
    }
    return cp.Problem(cp.Minimize(objective), constraints), [c, g, d, f], values


CASES = {"soc": soc_case, "exp": exp_case, "pow": pow_case}


def dual_outputs(problem):
    return [dual for con in problem.constraints for dual in con.dual_variables]


def all_outputs(problem):
    """Every dual part, then every variable (some parameters move only the primal)."""
    return dual_outputs(problem) + sorted(problem.variables(), key=lambda v: v.id)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    problem, params, values = CASES[request.param]()
    outputs = all_outputs(problem)
    reference = solve_outputs(problem, params, values, outputs, SCS_EXACT)
    # In CVXPY's shapes for the reference (an SOC's one-cone X dual is (d, 1)); the
    # layer's outputs have the dual variables' shapes.
    weights = random_weights(reference, seed=3)
    fd = finite_difference_gradient(
        problem, params, values, outputs, weights, step=1e-5, solve=SCS_EXACT
    )
    weights = [w.reshape(dual.shape) for w, dual in zip(weights, outputs)]
    return request.param, problem, params, values, outputs, reference, weights, fd


@pytest.mark.parametrize("solver, atol", [("MOREAU", 1e-5), ("SCS", 1e-6), ("CLARABEL", 1e-6)])
def test_dual_outputs_equal_cvxpy_dual_value(case, solver, atol):
    # Moreau reaches ~1e-6 on exponential cones at its tightest tolerances.
    name, problem, params, values, outputs, reference, _, _ = case
    layer = cvxlpgd.CvxpyLayer(problem, params, outputs, solver=solver, solver_args=TIGHT[solver])
    results = layer(*[torch.tensor(values[p.name()]) for p in params])
    for dual, result, expected in zip(outputs, results, reference):
        # CVXPY reports an SOC's one-cone X dual as (d, 1); the layer keeps the dual
        # variable's own shape (d,): the same numbers.
        assert tuple(result.shape) == dual.shape
        assert np.allclose(result.numpy(), expected.reshape(dual.shape), atol=atol), (name, dual)
    for expected in reference[: len(dual_outputs(problem))]:
        assert np.max(np.abs(expected)) > 1e-2  # the cone is active: a real test


# LPGD's τ must sit above the solver's accuracy (Moreau's ~1e-6 on exponential
# cones) and below the curvature scale of the solution map.
@pytest.mark.parametrize(
    "solver, gradient, options, tolerance",
    [
        ("SCS", "lpgd", {"tau": 1e-4}, 1e-3),
        ("MOREAU", "lpgd", {"tau": 1e-3}, 3e-3),
        ("SCS", "exact", {}, 1e-4),
        ("MOREAU", "exact", {"exact_backend": "moreau"}, 1e-4),
    ],
)
def test_gradients_through_duals_match_finite_differences(
    case, solver, gradient, options, tolerance
):
    name, problem, params, values, outputs, _, weights, fd = case
    if name == "pow" and options.get("exact_backend") != "moreau" and gradient == "exact":
        with pytest.raises(ValueError, match="power cones"):
            layer = cvxlpgd.CvxpyLayer(
                problem, params, outputs, solver=solver, gradient=gradient, **options
            )
            layer_gradients(layer, params, values, weights)
        return
    layer = cvxlpgd.CvxpyLayer(
        problem,
        params,
        outputs,
        solver=solver,
        gradient=gradient,
        solver_args=TIGHT[solver],
        **options,
    )
    grads = layer_gradients(layer, params, values, weights)
    for param in params:
        error = relative_error(grads[param.name()], fd[param.name()])
        assert error < tolerance, (name, param.name(), error)


def test_batched_dual_outputs_are_per_element():
    problem, params, values = soc_case()
    outputs = dual_outputs(problem)
    batch = {name: np.stack([value, 1.5 * value]) for name, value in values.items()}
    layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, solver="MOREAU", solver_args=TIGHT["MOREAU"]
    )
    results = layer(*[torch.tensor(batch[p.name()]) for p in params])
    for index in range(2):
        element = {name: value[index] for name, value in batch.items()}
        expected = solve_outputs(problem, params, element, outputs)
        for dual, result, reference in zip(outputs, results, expected):
            assert np.allclose(result[index].numpy(), reference.reshape(dual.shape), atol=1e-6)


def test_dual_variable_and_whole_constraint_give_the_same_output():
    x = cp.Variable(2)
    b = cp.Parameter(2, name="b")
    con = x >= b
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), [con])
    layer = cvxlpgd.CvxpyLayer(problem, [b], [con, con.dual_variables[0]], solver="CLARABEL")
    whole, part = layer(torch.tensor([1.0, -1.0]))
    assert torch.equal(whole, part)
    assert np.allclose(whole.numpy(), [2.0, 0.0], atol=1e-6)  # y = 2x at x = b where active


def test_foreign_dual_variable_is_refused():
    x = cp.Variable(2)
    b = cp.Parameter(2, name="b")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= b])
    other = cp.SOC(cp.Constant(1.0), x)
    with pytest.raises(ValueError, match="nor is it a dual variable"):
        cvxlpgd.CvxpyLayer(problem, [b], [other.dual_variables[1]])


def test_gradcheck_through_a_symmetric_parameter():
    """gradcheck perturbs one entry of a symmetric parameter at a time (within the
    symmetry check's tolerance): the layer reads (C + Cᵀ)/2, whose derivative is the
    symmetrized gradient it returns."""
    X = cp.Variable((2, 2), symmetric=True)
    C = cp.Parameter((2, 2), symmetric=True)
    psd = X >> 0
    problem = cp.Problem(cp.Minimize(cp.trace(C @ X)), [psd, cp.trace(X) == 1])
    layer = cvxlpgd.CvxpyLayer(problem, [C], [X, psd.dual_variables[0]], gradient="exact")
    value = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: layer(c)[1].sum(), (value,), atol=1e-4, rtol=1e-3)
