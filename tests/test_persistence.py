"""deepcopy, pickle and torch.save of a module holding a layer, before and after calls."""

import copy
import gc
import io
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import cvxpy as cp
import pytest
import torch

import cvxlpgd


class Model(torch.nn.Module):
    def __init__(self, **layer_options):
        super().__init__()
        x = cp.Variable(3, name="x")
        c = cp.Parameter(3, name="c")
        h = cp.Parameter(3, name="h")
        problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x <= h])
        self.layer = cvxlpgd.CvxpyLayer(problem, [c, h], [x], **layer_options)
        self.linear = torch.nn.Linear(2, 3, dtype=torch.float64)
        self.h = torch.nn.Parameter(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64))

    def forward(self, z):
        return self.layer(self.linear(z), self.h)[0]


def round_trip(model, how):
    if how == "deepcopy":
        return copy.deepcopy(model)
    if how == "pickle":
        return pickle.loads(pickle.dumps(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def step(model, z):
    model.zero_grad()
    out = model(z)
    (out**2).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


Z = torch.tensor([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.7]], dtype=torch.float64)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize(
    "options",
    [
        {"solver": "SCS"},
        {"solver": "MOREAU", "gradient": "exact", "exact_backend": "moreau"},
        {"solver": "CLARABEL", "warm_start": True, "workers": 2},
    ],
)
def test_copies_before_and_after_calls_give_the_same_outputs_and_gradients(how, options):
    torch.manual_seed(0)
    model = Model(**options)
    fresh = round_trip(model, how)  # before any call
    expected, expected_grads = step(model, Z)
    after = round_trip(model, how)  # after a call (caches and pools exist)
    for copied in (fresh, after):
        assert copied.layer is not model.layer
        out, grads = step(copied, Z)
        torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)
        for got, ref in zip(grads, expected_grads):
            torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
        assert copied.layer.solver_stats is not None
        assert repr(copied.layer).replace("MOREAU", "") == repr(model.layer).replace("MOREAU", "")
    # The copy is independent: the original still works after the copy ran.
    out, _ = step(model, Z)
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


def test_a_copy_rebuilds_its_caches_and_shares_nothing_runtime():
    model = Model(solver="SCS")
    step(model, Z)
    copied = copy.deepcopy(model)
    assert copied.layer._runtime.engines == {} and copied.layer._runtime.live == {}
    assert copied.layer._handle != model.layer._handle
    step(copied, Z)
    assert copied.layer._runtime.engines["cpu"] is not model.layer._runtime.engines["cpu"]
    # The pickled state holds no engine, warm start memory or pool.
    state = model.layer.__getstate__()
    for name in ("_runtime", "_handle"):
        assert name not in state


def test_a_user_executor_is_shared_by_deepcopy_and_left_out_of_pickles():
    with ThreadPoolExecutor(2) as pool:
        model = Model(solver="SCS", executor=pool)
        expected, _ = step(model, Z)
        copied = copy.deepcopy(model)
        assert copied.layer.executor is pool
        with pytest.warns(RuntimeWarning, match="executor .*ThreadPoolExecutor.* not pickled"):
            loaded = pickle.loads(pickle.dumps(model))
        assert loaded.layer.executor is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out, _ = step(loaded, Z)
        torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


def test_a_graph_keeps_its_layer_alive():
    model = Model(solver="SCS")
    expected, expected_grads = step(model, Z)
    copied = copy.deepcopy(model)
    out = copied(Z)
    linear = copied.linear
    del copied
    gc.collect()
    (out**2).sum().backward()  # the deleted copy's layer is still there for backward
    torch.testing.assert_close(linear.weight.grad, expected_grads[1], atol=1e-6, rtol=0)
