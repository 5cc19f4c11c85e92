"""Exact and LPGD gradients against finite differences of the solution map."""

import numpy as np
import pytest
import torch

import cvxlpgd
from tests import problems
from tests.reference import (
    TIGHT_CLARABEL,
    finite_difference_gradient,
    relative_error,
    solve_outputs,
)

SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 500_000}


def layer_gradients(layer, params, values, weights, **call):
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    outputs = layer(*tensors, **call)
    loss = sum((torch.as_tensor(w) * o).sum() for w, o in zip(weights, outputs))
    loss.backward()
    return {p.name(): t.grad.numpy() for p, t in zip(params, tensors)}


def random_weights(outputs, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(o.shape) for o in outputs]


@pytest.fixture(scope="module")
def qp_case():
    problem, params, x, ineq, eq, values = problems.qp()
    outputs = [x, ineq, eq]
    weights = random_weights([np.zeros(x.shape), np.zeros(ineq.shape), np.zeros(eq.shape)])
    fd = finite_difference_gradient(problem, params, values, outputs, weights)
    return problem, params, outputs, values, weights, fd


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL"])
def test_exact_gradient_matches_finite_differences_on_qp(qp_case, solver):
    problem, params, outputs, values, weights, fd = qp_case
    settings = SCS_TIGHT if solver == "SCS" else TIGHT_CLARABEL
    layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, gradient="exact", solver=solver, solver_args=settings
    )
    grads = layer_gradients(layer, params, values, weights)
    for name in fd:  # L (quadratic term), q (c), G, E (A), h, f (b)
        assert relative_error(grads[name], fd[name]) < 1e-3, name


def test_lpgd_gradient_with_dual_outputs_matches_finite_differences(qp_case):
    problem, params, outputs, values, weights, fd = qp_case
    layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, solver="CLARABEL", tau=1e-4, solver_args=TIGHT_CLARABEL
    )
    grads = layer_gradients(layer, params, values, weights)
    for name in fd:
        assert relative_error(grads[name], fd[name]) < 1e-4, name


def test_exact_and_lpgd_gradients_match_finite_differences_on_socp():
    problem, params, x, values = problems.socp()
    weights = random_weights([np.zeros(x.shape)], seed=1)
    fd = finite_difference_gradient(problem, params, values, [x], weights)
    for gradient in ("exact", "lpgd"):
        layer = cvxlpgd.CvxpyLayer(
            problem,
            params,
            [x],
            gradient=gradient,
            solver="CLARABEL",
            tau=1e-4,
            solver_args=TIGHT_CLARABEL,
        )
        grads = layer_gradients(layer, params, values, weights)
        for name in fd:
            assert relative_error(grads[name], fd[name]) < 1e-3, (gradient, name)


def test_symmetric_parameter_gradient_matches_symmetric_finite_differences():
    import cvxpy as cp

    n = 3
    X = cp.Variable((n, n), symmetric=True)
    C = cp.Parameter((n, n), symmetric=True, name="C")
    problem = cp.Problem(
        cp.Minimize(cp.trace(C @ X) + cp.sum_squares(X)), [X >> 0, cp.trace(X) == 1]
    )
    M = np.random.default_rng(3).standard_normal((n, n))
    values = {"C": M + M.T}
    weights = random_weights([np.zeros((n, n))], seed=2)
    fd = finite_difference_gradient(problem, [C], values, [X], weights, symmetric={"C"})
    layer = cvxlpgd.CvxpyLayer(
        problem, [C], [X], solver="CLARABEL", tau=1e-4, solver_args=TIGHT_CLARABEL
    )
    grads = layer_gradients(layer, [C], values, weights)
    np.testing.assert_allclose(grads["C"], grads["C"].T)
    assert relative_error(grads["C"], fd["C"]) < 1e-3


@pytest.mark.parametrize("case, mode", [("qp", "upper"), ("socp", "central")])
def test_lpgd_approaches_exact_as_tau_shrinks(case, mode):
    """One-sided differences on a QP (whose solution map is locally affine, so central
    differences would be exact already) and central ones on an SOCP."""
    if case == "qp":
        problem, params, x, _, _, values = problems.qp(seed=4)
    else:
        problem, params, x, values = problems.socp()
    weights = random_weights([np.zeros(x.shape)], seed=5)
    exact = layer_gradients(
        cvxlpgd.CvxpyLayer(
            problem, params, [x], gradient="exact", solver="SCS", solver_args=SCS_TIGHT
        ),
        params,
        values,
        weights,
    )
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x], solver="SCS", lpgd_mode=mode, solver_args=SCS_TIGHT
    )
    flat_exact = np.concatenate([exact[p.name()].ravel() for p in params])
    errors = []
    for tau in (1.0, 1e-1, 1e-2, 1e-4):
        lpgd = layer_gradients(layer, params, values, weights, tau=tau)
        errors.append(
            relative_error(np.concatenate([lpgd[p.name()].ravel() for p in params]), flat_exact)
        )
    assert errors[0] > 1e-2, errors  # large τ really differs: the checks below have teeth
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3, errors


@pytest.mark.parametrize("mode", ["upper", "lower", "central"])
def test_lpgd_modes_agree_with_exact_for_small_tau(mode):
    problem, params, x, values = problems.socp()
    weights = random_weights([np.zeros(x.shape)], seed=6)
    exact = layer_gradients(
        cvxlpgd.CvxpyLayer(
            problem, params, [x], gradient="exact", solver="CLARABEL", solver_args=TIGHT_CLARABEL
        ),
        params,
        values,
        weights,
    )
    lpgd = layer_gradients(
        cvxlpgd.CvxpyLayer(
            problem, params, [x], solver="SCS", lpgd_mode=mode, tau=1e-4, solver_args=SCS_TIGHT
        ),
        params,
        values,
        weights,
    )
    for p in params:
        assert relative_error(lpgd[p.name()], exact[p.name()]) < 1e-3, (mode, p.name())


def test_quadratic_parameter_gradients_agree_between_qp_and_conic_forms():
    """P = 2aM depends on a: LPGD on the QP form (∂P on both triangles) vs exact on the
    conic form vs finite differences, and the same forward solution in both forms."""
    problem, params, x, values = problems.scaled_qp()
    weights = random_weights([np.zeros(x.shape)], seed=7)
    fd = finite_difference_gradient(problem, params, values, [x], weights)
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", solver_args=SCS_TIGHT, tau=1e-4)
    assert layer._template(quadratic=True).quadratic  # the LPGD path really uses P
    lpgd = layer_gradients(layer, params, values, weights)
    exact = layer_gradients(layer, params, values, weights, gradient="exact")
    for name in fd:
        assert relative_error(lpgd[name], fd[name]) < 1e-3, name
        assert relative_error(exact[name], fd[name]) < 1e-3, name
    tensors = [torch.tensor(values[p.name()]) for p in params]
    (x_qp,) = layer(*tensors)
    (x_conic,) = cvxlpgd.CvxpyLayer(problem, params, [x], solver="ECOS")(*tensors)
    np.testing.assert_allclose(x_qp.numpy(), x_conic.numpy(), atol=1e-5)
    (expected,) = solve_outputs(problem, params, values, [x])
    np.testing.assert_allclose(x_qp.numpy(), expected, atol=1e-6)
