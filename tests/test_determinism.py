"""The same forward and incoming gradient give bitwise the same gradient, every time.

Whatever ran in between (a second backward pass, another batch through the same
layer) and for any worker count; an element without incoming gradient gets an exact
zero and costs no re-solve.
"""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd


def socp_layer(solver, **options):
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    F = cp.Parameter((2, 3), name="F")
    objective = cp.Minimize(cp.sum_squares(x - z) + cp.norm(F @ x, 2))
    problem = cp.Problem(objective, [cp.norm(x, 2) <= 1.5, x >= -1])
    return cvxlpgd.CvxpyLayer(problem, [z, F], [x], solver=solver, **options)


def inputs(seed, batch=4):
    rng = np.random.default_rng(seed)
    return [
        torch.tensor(rng.standard_normal((batch, 3)), requires_grad=True),
        torch.tensor(rng.standard_normal((batch, 2, 3)), requires_grad=True),
    ]


def gradient_of(layer, tensors, weights, **call):
    for t in tensors:
        t.grad = None
    (x,) = layer(*tensors, **call)
    (weights * x).sum().backward()
    return [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
@pytest.mark.parametrize("solver", ["MOREAU", "SCS", "CLARABEL", "ECOS"])
def test_repeated_backward_passes_are_bitwise_identical(solver, gradient):
    layer = socp_layer(solver, gradient=gradient, tau=0.01)
    tensors = inputs(0)
    weights = torch.tensor(np.random.default_rng(1).standard_normal((4, 3)))
    (x,) = layer(*tensors)
    loss = (weights * x).sum()
    first = torch.autograd.grad(loss, tensors, retain_graph=True)
    layer(*inputs(5))  # another batch of the same size through the same layer
    layer(*inputs(6, batch=2))  # and one of another size
    second = torch.autograd.grad(loss, tensors, retain_graph=True)
    third = torch.autograd.grad(loss, tensors)
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert max(float(g.abs().max()) for g in first) > 1e-3


def test_scs_gradients_do_not_depend_on_the_worker_count():
    weights = torch.tensor(np.random.default_rng(1).standard_normal((4, 3)))
    results = [
        gradient_of(socp_layer("SCS", workers=workers, tau=0.01), inputs(0), weights)
        for workers in (1, 2)
    ]
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("solver", ["MOREAU", "SCS", "CLARABEL"])
def test_elements_without_incoming_gradient_get_zero_and_no_solve(solver):
    layer = socp_layer(solver, tau=0.01)
    tensors = inputs(2)
    weights = torch.tensor(np.random.default_rng(3).standard_normal((4, 3)))
    weights[1] = 0.0
    grads = gradient_of(layer, tensors, weights)
    for grad in grads:
        assert torch.count_nonzero(grad[1]) == 0
        assert grad[0].abs().max() > 1e-3
    stats = layer.solver_stats
    assert stats.backward[1] == {} and sorted(stats.backward[0]) == ["lower", "upper"]
    assert stats.summary()["backward_solves"] == 2 * 3
