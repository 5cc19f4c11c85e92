"""Batched calls equal a loop over single problems, for values and gradients."""

import numpy as np
import pytest
import torch

import cvxlpgd
from tests import problems

SCS_TIGHT = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 500_000}


def run(layer, tensors, weights, **call):
    tensors = [t.detach().clone().requires_grad_(True) for t in tensors]
    outputs = layer(*tensors, **call)
    loss = sum((w * o).sum() for w, o in zip(weights, outputs))
    loss.backward()
    return [o.detach() for o in outputs], [t.grad for t in tensors]


@pytest.fixture(scope="module")
def qp_layer_and_values():
    problem, params, x, ineq, eq, values = problems.qp()
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x, ineq], solver="SCS", solver_args=SCS_TIGHT, tau=1e-3
    )
    return layer, params, values


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_mixed_batched_and_unbatched_parameters_match_a_loop(
    qp_layer_and_values, gradient, batch_size
):
    layer, params, values = qp_layer_and_values
    rng = np.random.default_rng(batch_size)
    batched = {"q", "h"}  # c and b vary per element; L, G, E, f are shared (broadcast)
    tensors = []
    for p in params:
        base = torch.tensor(values[p.name()])
        if p.name() in batched:
            base = base + 0.1 * torch.tensor(rng.standard_normal((batch_size, *p.shape)))
        tensors.append(base)
    weights = [
        torch.tensor(rng.standard_normal((batch_size, 4))),
        torch.tensor(rng.standard_normal((batch_size, 3))),
    ]
    outs, grads = run(layer, tensors, weights, gradient=gradient)
    assert outs[0].shape == (batch_size, 4) and outs[1].shape == (batch_size, 3)
    for i in range(batch_size):
        single = [t[i] if p.name() in batched else t for p, t in zip(params, tensors)]
        outs_i, grads_i = run(layer, single, [w[i] for w in weights], gradient=gradient)
        for o, o_i in zip(outs, outs_i):
            np.testing.assert_allclose(o[i].numpy(), o_i.numpy(), atol=1e-7)
        for p, g, g_i in zip(params, grads, grads_i):
            if p.name() in batched:
                np.testing.assert_allclose(g[i].numpy(), g_i.numpy(), atol=1e-6)
    # Shared parameters get the batch sum of per-element gradients.
    for k, p in enumerate(params):
        if p.name() not in batched:
            total = sum(
                run(
                    layer,
                    [t[i] if q.name() in batched else t for q, t in zip(params, tensors)],
                    [w[i] for w in weights],
                    gradient=gradient,
                )[1][k]
                for i in range(batch_size)
            )
            np.testing.assert_allclose(grads[k].numpy(), total.numpy(), atol=1e-6)


def test_batched_matrix_parameter_matches_a_loop(qp_layer_and_values):
    layer, params, values = qp_layer_and_values
    rng = np.random.default_rng(11)
    G = torch.tensor(values["G"]) + 0.05 * torch.tensor(rng.standard_normal((3, 3, 4)))
    tensors = [G if p.name() == "G" else torch.tensor(values[p.name()]) for p in params]
    weights = [torch.ones(3, 4), torch.ones(3, 3)]
    outs, grads = run(layer, tensors, weights)
    for i in range(3):
        single = [t[i] if p.name() == "G" else t for p, t in zip(params, tensors)]
        outs_i, grads_i = run(layer, single, [torch.ones(4), torch.ones(3)])
        np.testing.assert_allclose(outs[0][i].numpy(), outs_i[0].numpy(), atol=1e-7)
        np.testing.assert_allclose(grads[2][i].numpy(), grads_i[2].numpy(), atol=1e-6)


def test_float32_in_float32_out_with_float32_gradients():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL")
    tensors = [
        torch.tensor(values[p.name()], dtype=torch.float32, requires_grad=True) for p in params
    ]
    (out,) = layer(*tensors)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert all(t.grad.dtype == torch.float32 and t.grad.shape == t.shape for t in tensors)


def test_no_grad_calls_keep_no_state_and_solve_the_lpgd_form(monkeypatch):
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", gradient="exact")
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    calls = []
    original = cvxlpgd.engine.batch.BatchEngine.forward

    def spy(self, template, batch, **kwargs):
        calls.append((template.quadratic, kwargs.get("exact_backend")))
        return original(self, template, batch, **kwargs)

    monkeypatch.setattr(cvxlpgd.engine.batch.BatchEngine, "forward", spy)
    with torch.no_grad():
        (out,) = layer(*tensors)
    assert out.grad_fn is None
    (out,) = layer(*tensors)
    assert out.grad_fn is not None
    # Without gradients no exact derivative is prepared (and the QP form is solved).
    assert calls == [(True, None), (False, "diffcp")]


def test_call_overrides_do_not_change_layer_defaults():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", tau=0.5)
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    layer(*tensors, gradient="exact", tau=0.01, lpgd_mode="upper")
    assert (layer.options.gradient, layer.options.tau, layer.options.lpgd_mode) == (
        "lpgd",
        0.5,
        "central",
    )


def test_solver_stats_record_forward_and_lpgd_backward_solves():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", tau=1e-4)
    assert layer.solver_stats is None
    q = torch.tensor(values["q"]).repeat(3, 1).requires_grad_(True)
    (out,) = layer(torch.tensor(values["a"]), q, torch.tensor(values["lo"]))
    stats = layer.solver_stats
    assert len(stats.forward) == 3 and not stats.backward
    assert all(
        r.status == "optimal" and r.iterations > 0 and r.solve_time > 0 for r in stats.forward
    )
    out.sum().backward()
    assert [sorted(sides) for sides in stats.backward] == [["lower", "upper"]] * 3
    # A QP: the perturbed problems are answered from the forward's active set (no
    # solver iterations) where that is verified, re-solved otherwise.
    assert all(
        r.status == "optimal" and (r.iterations > 0 or r.solver == "active-set")
        for sides in stats.backward
        for r in sides.values()
    )
    summary = stats.summary()
    assert summary["forward_solves"] == 3 and summary["backward_solves"] == 6
    assert summary["backward_predicted"] == stats.active_set_predicted
    assert stats.active_set_predicted + stats.active_set_resolved == 6
    assert summary["backward_iterations"] == sum(
        r.iterations for sides in stats.backward for r in sides.values()
    )
