"""On an LP the exact derivative is zero almost everywhere; LPGD is not.

Long-only portfolio ``maximize rᵀw s.t. Σw = 1, w ≥ 0`` with learnable returns r and
loss ``−r_trueᵀw`` where r_true favours another asset than r does.
"""

import numpy as np
import torch

import cvxlpgd
from tests import problems

R_INIT = [1.0, 0.5, 0.2]
R_TRUE = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)


def loss_and_grad(layer, r, **call):
    r = r.detach().clone().requires_grad_(True)
    (w,) = layer(r, **call)
    loss = -(R_TRUE * w).sum()
    loss.backward()
    return loss.item(), r.grad, w.detach()


def train(layer, steps=30, lr=0.5):
    r = torch.tensor(R_INIT, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([r], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (w,) = layer(r)
        (-(R_TRUE * w).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        return layer(r)[0]


def test_exact_gradient_is_zero_and_lpgd_is_a_descent_direction():
    problem, params, w = problems.portfolio_lp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [w], solver="CLARABEL", tau=1.0)
    r0 = torch.tensor(R_INIT, dtype=torch.float64)
    loss0, grad_exact, w0 = loss_and_grad(layer, r0, gradient="exact")
    np.testing.assert_allclose(w0.numpy(), [1, 0, 0], atol=1e-6)
    assert grad_exact.abs().max() < 1e-6
    _, grad_lpgd, _ = loss_and_grad(layer, r0)
    assert grad_lpgd.abs().max() > 0.1
    # Stepping against the LPGD gradient lowers the true loss.
    loss1, _, w1 = loss_and_grad(layer, r0 - 4.0 * grad_lpgd)
    assert loss1 < loss0 - 0.1, (loss0, loss1, w1)


def test_sgd_reaches_optimal_allocation_with_lpgd_and_is_stuck_with_exact():
    problem, params, w = problems.portfolio_lp()
    lpgd_layer = cvxlpgd.CvxpyLayer(problem, params, [w], solver="SCS", tau=1.0)
    exact_layer = cvxlpgd.CvxpyLayer(problem, params, [w], solver="SCS", gradient="exact")
    np.testing.assert_allclose(train(lpgd_layer).numpy(), [0, 0, 1], atol=1e-4)
    np.testing.assert_allclose(train(exact_layer).numpy(), [1, 0, 0], atol=1e-4)
