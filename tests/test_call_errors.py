"""Layer-level faults: incoming NaN/inf, higher-order derivatives, parameter-free problems,
integer variables, meta tensors, and how unnamed parameters and variables are shown."""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.engine.batch import BatchEngine


def smooth_qp(gradient, **options):
    """min c'x + |x|^2: x*(c) = -c/2, so |x*|^2 has the Hessian 0.5 I."""
    x = cp.Variable(3, name="x")
    c = cp.Parameter(3, name="c")
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x <= 10])
    options.setdefault("solver", "SCS")
    return cvxlpgd.CvxpyLayer(problem, [c], [x], gradient=gradient, **options)


def count_backward_solves(monkeypatch):
    calls = []
    for name in ("backward_lpgd", "backward_exact"):
        original = getattr(BatchEngine, name)

        def recording(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(BatchEngine, name, recording)
    return calls


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_incoming_gradients_name_the_output_and_element(gradient, bad, monkeypatch):
    layer = smooth_qp(gradient)
    solves = count_backward_solves(monkeypatch)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    (x,) = layer(c)
    with pytest.raises(ValueError, match=r"incoming gradient of output 'x' holds NaN or inf; "):
        x.backward(torch.tensor([0.0, bad, 1.0], dtype=torch.float64))
    cs = torch.ones(3, 3, dtype=torch.float64, requires_grad=True)
    (xs,) = layer(cs)
    incoming = torch.ones(3, 3, dtype=torch.float64)
    incoming[1, 2] = bad
    with pytest.raises(ValueError, match=r"output 'x' holds NaN or inf at batch index 1;"):
        xs.backward(incoming)
    assert solves == []  # refused before anything was solved


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_higher_order_derivatives_are_refused_never_zero(gradient):
    layer = smooth_qp(gradient)
    c0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)

    def loss(c):
        return (layer(c)[0] ** 2).sum()

    with pytest.raises(cvxlpgd.FirstOrderOnlyError, match="first order only"):
        torch.autograd.functional.hessian(loss, c0)
    with pytest.raises(cvxlpgd.FirstOrderOnlyError, match="first order only"):
        torch.func.hessian(loss)(c0)
    with pytest.raises(cvxlpgd.FirstOrderOnlyError, match="forward-mode"):
        torch.func.jacfwd(lambda c: layer(c)[0])(c0)
    # create_graph=True gives the right first-order gradient (x = -c/2: d|x|^2/dc = c/2);
    # differentiating it again raises.
    c = c0.clone().requires_grad_()
    (first,) = torch.autograd.grad(loss(c), c, create_graph=True)
    torch.testing.assert_close(first.detach(), c0 / 2, atol=1e-4, rtol=0)
    with pytest.raises(cvxlpgd.FirstOrderOnlyError, match="double backward"):
        first.sum().backward()


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_a_problem_without_parameters_builds_and_solves(gradient):
    x = cp.Variable(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - np.array([1.0, -2.0]))), [x >= 0])
    layer = cvxlpgd.CvxpyLayer(problem, [], [x], gradient=gradient)
    (solution,) = layer()
    torch.testing.assert_close(
        solution, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert "parameters: none" in repr(layer)
    with pytest.raises(ValueError, match=r"expected 0 tensors \(for none\), got 1"):
        layer(torch.ones(2))


@pytest.mark.parametrize("attribute", ["integer", "boolean"])
def test_integer_and_boolean_variables_are_refused_by_name(attribute):
    c = cp.Parameter(2, name="c")
    k = cp.Variable(2, name="k", **{attribute: True})
    problem = cp.Problem(cp.Minimize(c @ k), [k >= 0, k <= 3])
    with pytest.raises(ValueError, match=f"variable 'k' is {attribute}; .*continuous"):
        cvxlpgd.CvxpyLayer(problem, [c], [k])
    unnamed = cp.Variable(3, **{attribute: True})
    x = cp.Variable(2, name="x")
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum(unnamed)), [x >= 0, unnamed >= 0])
    with pytest.raises(ValueError, match=rf"\(unnamed, shape \(3,\)\) is {attribute}"):
        cvxlpgd.CvxpyLayer(problem, [c], [x])


def test_meta_tensors_are_refused_by_parameter_name():
    layer = smooth_qp("lpgd")
    with pytest.raises(ValueError, match="parameter 'c' is a meta tensor"):
        layer(torch.ones(3, dtype=torch.float64, device="meta"))


def test_arguments_that_are_not_lists_say_what_was_expected():
    x = cp.Variable(2, name="x")
    c = cp.Parameter(2, name="c")
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)))
    with pytest.raises(
        TypeError,
        match=r"parameters must be a list or tuple of "
        r"cvxpy.Parameter, got Parameter; to pass one, wrap",
    ):
        cvxlpgd.CvxpyLayer(problem, c, [x])
    with pytest.raises(
        TypeError,
        match=r"variables must be a list or tuple of cvxpy.Variable "
        r"or cvxpy constraints, got Variable",
    ):
        cvxlpgd.CvxpyLayer(problem, [c], x)
    with pytest.raises(TypeError, match="parameters must be a list or tuple .* got str"):
        cvxlpgd.CvxpyLayer(problem, "c", [x])
    assert cvxlpgd.CvxpyLayer(problem, (c,), (x,))(torch.ones(2))[0].shape == (2,)


def test_unnamed_parameters_and_variables_show_shape_and_position():
    x = cp.Variable(2)
    y = cp.Variable(3, name="y")
    A = cp.Parameter((3, 2))
    b = cp.Parameter(3, name="b")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + cp.sum_squares(y - b)))
    layer = cvxlpgd.CvxpyLayer(problem, [b, A], [y, x])
    text = repr(layer)
    assert f"parameters: b (3,), {A.name()} (3, 2) [unnamed parameters[1]]" in text
    assert f"outputs: y (3,), {x.name()} (2,) [unnamed variables[1]]" in text
    with pytest.raises(
        ValueError,
        match=rf"parameter '{A.name()}' \(unnamed, parameters\[1\], "
        r"shape \(3, 2\)\) must have shape \(3, 2\)",
    ):
        layer(torch.ones(3), torch.ones(2, 3))
    with pytest.raises(
        TypeError,
        match=rf"'{A.name()}' \(unnamed, parameters\[1\], shape "
        r"\(3, 2\)\) must be a torch.Tensor",
    ):
        layer(torch.ones(3), [[1.0, 2.0]] * 3)
    (_, x_out) = layer(torch.ones(3, requires_grad=True), torch.ones(3, 2))
    with pytest.raises(
        ValueError,
        match=rf"output '{x.name()}' \(unnamed, variables\[1\], "
        r"shape \(2,\)\) holds NaN",
    ):
        x_out.backward(torch.tensor([float("nan"), 0.0]))
    stranger = cp.Parameter(4)
    with pytest.raises(
        ValueError,
        match=rf"'{stranger.name()}' \(unnamed, parameters\[2\], "
        r"shape \(4,\)\) does not appear",
    ):
        cvxlpgd.CvxpyLayer(problem, [b, A, stranger], [x])
    with pytest.raises(
        ValueError,
        match=rf"'{A.name()}' \(unnamed, shape \(3, 2\)\) are not "
        "listed",
    ):
        cvxlpgd.CvxpyLayer(problem, [b], [x])


def test_per_call_overrides_under_a_tau_schedule_keep_a_bounded_cache():
    layer = smooth_qp("lpgd")
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    first = layer(c, tau=0.05)[0]  # its graph lives while 600 other calls come and go
    for step in range(600):
        layer(c, tau=0.1 + 1e-3 * step)
    assert len(layer._runtime.kinds) <= 256
    first.sum().backward()  # its key decodes again: the right τ, the right gradient
    torch.testing.assert_close(
        c.grad, torch.full((3,), -0.5, dtype=torch.float64), atol=1e-4, rtol=0
    )
