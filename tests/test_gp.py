"""Geometric programs (gp=True): values and gradients in the user's positive space.

References: CVXPY's own DGP solves (``problem.solve(gp=True)``) and their finite
differences.
"""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from tests.reference import (
    SCS_EXACT,
    finite_difference_gradient,
    relative_error,
    solve_outputs,
)
from tests.test_gradients import layer_gradients

# SCS_EXACT's 1e-12 costs up to its iteration limit on some of these problems.
GP_SOLVE = {**SCS_EXACT, "eps_abs": 1e-11, "eps_rel": 1e-11, "max_iters": 100_000, "gp": True}
TIGHT = {
    "SCS": {"eps_abs": 1e-11, "eps_rel": 1e-11, "max_iters": 200_000},
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
    "MOREAU": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
}
VALUES = {"a": np.array(2.0), "b": np.array(0.5), "c": np.array(0.8), "e": np.array(0.5)}


def geometric_program():
    """min a·x + y·z + 1/(xyz)  s.t.  x²y ≤ b,  z ≤ c·y^e  (both constraints active).

    a, b, c enter through their logarithms; the exponent e enters as itself.
    """
    x, y, z = (cp.Variable(pos=True, name=name) for name in "xyz")
    a, b, c = (cp.Parameter(pos=True, name=name) for name in "abc")
    e = cp.Parameter(name="e")
    constraints = [x**2 * y <= b, z <= c * y**e]
    problem = cp.Problem(cp.Minimize(a * x + y * z + 1 / (x * y * z)), constraints)
    return problem, [a, b, c, e], [x, y, z, *constraints]


@pytest.fixture(scope="module")
def reference():
    problem, params, outputs = geometric_program()
    values = solve_outputs(problem, params, VALUES, outputs, GP_SOLVE)
    weights = [np.array(w) for w in (1.0, 2.0, -1.0, 0.7, -0.3)]
    fd = finite_difference_gradient(
        problem, params, VALUES, outputs, weights, step=1e-5, solve=GP_SOLVE
    )
    return values, weights, fd


# Interior-point solvers reach ~1e-4 relative accuracy in exponential cones' duals.
@pytest.mark.parametrize("solver, rtol", [("MOREAU", 1e-4), ("SCS", 1e-6), ("CLARABEL", 5e-4)])
def test_values_equal_cvxpy_gp_solve(reference, solver, rtol):
    expected, _, _ = reference
    assert all(abs(float(dual)) > 1e-3 for dual in expected[3:])  # active: duals matter
    problem, params, outputs = geometric_program()
    layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, gp=True, solver=solver, solver_args=TIGHT[solver]
    )
    results = layer(*[torch.tensor(VALUES[p.name()]) for p in params])
    for result, value in zip(results, expected):
        assert np.allclose(result.numpy(), value, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize(
    "solver, gradient, options, tolerance",
    [
        ("SCS", "lpgd", {"tau": 1e-4}, 1e-4),
        ("MOREAU", "lpgd", {"tau": 1e-3}, 3e-3),
        ("SCS", "exact", {}, 1e-5),
        ("MOREAU", "exact", {"exact_backend": "moreau"}, 1e-4),
    ],
)
def test_gradients_match_finite_differences_of_cvxpy(
    reference, solver, gradient, options, tolerance
):
    _, weights, fd = reference
    problem, params, outputs = geometric_program()
    layer = cvxlpgd.CvxpyLayer(
        problem,
        params,
        outputs,
        gp=True,
        solver=solver,
        gradient=gradient,
        solver_args=TIGHT[solver],
        **options,
    )
    grads = layer_gradients(layer, params, VALUES, weights)
    for p in params:
        error = relative_error(grads[p.name()], fd[p.name()])
        assert error < tolerance, (p.name(), error)


@pytest.mark.parametrize("gradient, options", [("lpgd", {"tau": 1e-4}), ("exact", {})])
def test_batch_elements_match_their_own_cvxpy_solves(gradient, options):
    problem, params, outputs = geometric_program()
    batch = {
        "a": np.array([2.0, 1.0, 3.0]),
        "b": np.array([0.5, 0.9, 0.3]),
        "c": np.array([0.8, 0.6, 1.1]),
        "e": np.array([0.5, 0.2, -0.4]),
    }
    layer = cvxlpgd.CvxpyLayer(
        problem,
        params,
        outputs,
        gp=True,
        solver="SCS",
        gradient=gradient,
        solver_args=TIGHT["SCS"],
        **options,
    )
    tensors = [torch.tensor(batch[p.name()], requires_grad=True) for p in params]
    results = layer(*tensors)
    weights = [1.0, 2.0, -1.0, 0.7, -0.3]
    sum(w * out.sum() for w, out in zip(weights, results)).backward()
    for i in range(3):
        element = {name: value[i] for name, value in batch.items()}
        expected = solve_outputs(problem, params, element, outputs, GP_SOLVE)
        assert np.allclose([r[i].item() for r in results], expected, rtol=1e-5, atol=1e-7)
        fd = finite_difference_gradient(
            problem,
            params,
            element,
            outputs,
            [np.array(w) for w in weights],
            step=1e-5,
            solve=GP_SOLVE,
        )
        grad = np.array([t.grad[i].item() for t in tensors])
        assert relative_error(grad, [fd[p.name()] for p in params]) < 1e-4, i


def test_vector_parameters_and_variables():
    """A box with a parametrized floor area and wall limits, as in CVXPY's GP tutorial."""
    h, w, d = (cp.Variable(pos=True, name=name) for name in "hwd")
    limits = cp.Parameter(2, pos=True, name="limits")
    floor = cp.Parameter(pos=True, name="floor")
    problem = cp.Problem(
        cp.Maximize(h * w * d),
        [2 * (h * w + h * d) <= limits[0], w * d <= floor, h / w <= 2, w / h <= limits[1]],
    )
    params = [limits, floor]
    values = {"limits": np.array([100.0, 3.0]), "floor": np.array(10.0)}
    outputs = [h, w, d]
    layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, gp=True, solver="SCS", gradient="exact", solver_args=TIGHT["SCS"]
    )
    weights = [np.array(1.0), np.array(2.0), np.array(0.5)]
    grads = layer_gradients(layer, params, values, weights)
    expected = solve_outputs(problem, params, values, outputs, GP_SOLVE)
    results = layer(*[torch.tensor(values[p.name()]) for p in params])
    assert np.allclose([r.item() for r in results], expected, rtol=1e-5)
    fd = finite_difference_gradient(
        problem, params, values, outputs, weights, step=1e-3, solve=GP_SOLVE
    )  # the wall limit is ~100
    for p in params:
        assert relative_error(grads[p.name()], fd[p.name()]) < 1e-4, p.name()


def test_nonpositive_value_names_the_parameter():
    problem, params, outputs = geometric_program()
    layer = cvxlpgd.CvxpyLayer(problem, params, outputs, gp=True, solver="SCS")
    values = [torch.tensor(VALUES[p.name()]) for p in params]
    values[1] = torch.tensor([0.5, -0.1])
    with pytest.raises(ValueError, match="parameter 'b' must be positive .*min -0.1"):
        layer(*values)
    values[1] = torch.tensor(0.5)
    values[3] = torch.tensor(-0.5)  # the exponent is not logged: any sign is fine
    x = layer(*values)[0]
    assert x.item() > 0


def test_gp_flag_must_match_the_problem():
    x = cp.Variable(pos=True)
    a = cp.Parameter(pos=True, name="a")
    dgp = cp.Problem(cp.Minimize(a * x + 1 / x))
    with pytest.raises(ValueError, match="not DCP.*pass gp=True"):
        cvxlpgd.CvxpyLayer(dgp, [a], [x])
    y = cp.Variable()
    dcp = cp.Problem(cp.Minimize(cp.square(y - a)), [y >= -1])
    with pytest.raises(
        ValueError,
        match="gp=True, but the problem is not a geometric program"
        r".*drop gp=True",
    ):
        cvxlpgd.CvxpyLayer(dcp, [a], [y], gp=True)
    with pytest.raises(TypeError, match="gp must be True or False"):
        cvxlpgd.CvxpyLayer(dgp, [a], [x], gp="yes")


def test_a_parameter_in_two_roles_is_refused():
    x = cp.Variable(pos=True)
    a = cp.Parameter(pos=True, name="a")
    problem = cp.Problem(cp.Minimize(a * x + 1 / x), [x**a <= 2])
    with pytest.raises(ValueError, match="'a' enters the geometric program both"):
        cvxlpgd.CvxpyLayer(problem, [a], [x], gp=True)


def test_repr_shows_gp():
    problem, params, outputs = geometric_program()
    layer = cvxlpgd.CvxpyLayer(problem, params, outputs, gp=True, solver="SCS")
    assert "gp=True" in repr(layer)


def test_gp_layer_under_vmap_and_compile_equals_eager():
    x, y = cp.Variable(pos=True), cp.Variable(pos=True)
    a = cp.Parameter(pos=True, name="a")
    layer = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(1 / (x * y)), [x + y <= a]), [a], [x], gp=True
    )
    values = torch.tensor([2.0, 3.0], dtype=torch.float64)

    def first(t):
        return layer(t)[0]

    eager = torch.stack([first(v) for v in values])
    torch.testing.assert_close(eager, values / 2, atol=1e-5, rtol=1e-5)  # x* = a/2
    torch.testing.assert_close(torch.func.vmap(first)(values), eager)
    compiled = torch.compile(first, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(values), eager)
    with pytest.raises(ValueError, match="'a'.*(positive|non-finite)"):
        torch.func.vmap(first)(torch.tensor([2.0, -1.0], dtype=torch.float64))


def test_two_layers_on_one_geometric_program_in_different_parameter_orders():
    """Each layer compiles its own copy: CVXPY's cache on the shared problem (filled by
    the first layer, before any parameter has a value) must not reach the second."""
    x, y, z = (cp.Variable(pos=True, name=n) for n in "xyz")
    a, b = cp.Parameter(pos=True, name="a"), cp.Parameter(pos=True, name="b")
    c = cp.Parameter(name="c")
    problem = cp.Problem(
        cp.Minimize(1 / (x * y * z)), [a * (x * y + x * z + y * z) <= b, x >= y**c]
    )
    first = cvxlpgd.CvxpyLayer(problem, [a, b, c], [x, y, z], gp=True)
    second = cvxlpgd.CvxpyLayer(problem, [c, b, a], [x, y, z], gp=True)
    values = {"a": 2.0, "b": 1.0, "c": 0.5}
    out_first = first(*[torch.tensor(values[n], dtype=torch.float64) for n in "abc"])
    out_second = second(*[torch.tensor(values[n], dtype=torch.float64) for n in "cba"])
    for p in (a, b, c):
        p.value = values[p.name()]
    problem.solve(gp=True, solver=cp.CLARABEL)
    for ours, theirs, v in zip(out_first, out_second, (x, y, z)):
        assert abs(float(ours) - v.value) < 1e-5 * max(1.0, abs(v.value))
        assert abs(float(theirs) - v.value) < 1e-5 * max(1.0, abs(v.value))
