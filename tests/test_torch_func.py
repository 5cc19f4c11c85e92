"""torch.func over the layer: grad, vjp, jacrev and vmap give the eager results, and vmap
is the layer's own batch (one batched solve)."""

import cvxpy as cp
import pytest
import torch
from torch.func import grad, jacrev, vjp, vmap

import cvxlpgd
from cvxlpgd.engine.batch import BatchEngine

TIGHT = {"SCS": {"eps_abs": 1e-10, "eps_rel": 1e-10}}


def box_qp_layer(gradient="exact", **kwargs):
    """x*(c, h) = min(-c/2, h): min c'x + |x|^2 s.t. x <= h, a closed form to check."""
    x = cp.Variable(3, name="x")
    c = cp.Parameter(3, name="c")
    h = cp.Parameter(3, name="h")
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x <= h])
    kwargs.setdefault("solver", "SCS")
    kwargs.setdefault("solver_args", TIGHT["SCS"])
    return cvxlpgd.CvxpyLayer(problem, [c, h], [x], gradient=gradient, **kwargs)


C = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
H = torch.tensor([0.2, 0.1, 1.0], dtype=torch.float64)


def loss_of(layer):
    return lambda c, h: (layer(c, h)[0] ** 2).sum()


def eager_grads(layer, c, h, weights=None):
    c, h = c.clone().requires_grad_(), h.clone().requires_grad_()
    (x,) = layer(c, h)
    loss = (x**2).sum() if weights is None else (x * weights).sum()
    loss.backward()
    return c.grad, h.grad


@pytest.mark.parametrize("gradient", ["exact", "lpgd"])
def test_grad_and_vjp_equal_the_eager_backward(gradient):
    layer = box_qp_layer(gradient)
    dc, dh = grad(loss_of(layer), argnums=(0, 1))(C, H)
    ref_c, ref_h = eager_grads(layer, C, H)
    torch.testing.assert_close(dc, ref_c, atol=1e-9, rtol=0)
    torch.testing.assert_close(dh, ref_h, atol=1e-9, rtol=0)
    # Closed form: x = min(-c/2, h); loss = |x|^2 -> dL/dc = -x on free coordinates.
    x = torch.minimum(-C / 2, H)
    free = -C / 2 < H
    torch.testing.assert_close(dc, torch.where(free, -x, 0.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(dh, torch.where(free, 0.0, 2 * x), atol=1e-5, rtol=0)

    weights = torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    out, pullback = vjp(lambda c, h: layer(c, h)[0], C, H)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    vc, vh = pullback(weights)
    ref_c, ref_h = eager_grads(layer, C, H, weights)
    torch.testing.assert_close(vc, ref_c, atol=1e-9, rtol=0)
    torch.testing.assert_close(vh, ref_h, atol=1e-9, rtol=0)


def test_jacrev_with_exact_gradients_equals_the_eager_jacobian():
    layer = box_qp_layer("exact")
    jac_c, jac_h = jacrev(lambda c, h: layer(c, h)[0], argnums=(0, 1))(C, H)
    rows = [eager_grads(layer, C, H, torch.eye(3, dtype=torch.float64)[i]) for i in range(3)]
    torch.testing.assert_close(jac_c, torch.stack([r[0] for r in rows]), atol=1e-8, rtol=0)
    torch.testing.assert_close(jac_h, torch.stack([r[1] for r in rows]), atol=1e-8, rtol=0)
    free = (-C / 2 < H).double()
    torch.testing.assert_close(jac_c, torch.diag(-0.5 * free), atol=1e-6, rtol=0)
    torch.testing.assert_close(jac_h, torch.diag(1 - free), atol=1e-6, rtol=0)


def test_jacrev_of_a_batched_call_with_moreau_derivative():
    layer = box_qp_layer(
        "exact",
        solver="MOREAU",
        exact_backend="moreau",
        solver_args={"solver": "ipm", "tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10},
    )
    cs = torch.tensor([[1.0, -1.0, 0.5], [-0.1, 0.4, -3.0]], dtype=torch.float64)
    jac = jacrev(lambda c: layer(c, H)[0])(cs)  # (2, 3, 2, 3)
    free = (-cs / 2 < H).double()
    expected = torch.zeros(2, 3, 2, 3, dtype=torch.float64)
    for b in range(2):
        expected[b, :, b, :] = torch.diag(-0.5 * free[b])
    torch.testing.assert_close(jac, expected, atol=1e-6, rtol=0)


def count_forward_solves(monkeypatch):
    calls = []
    original = BatchEngine.forward

    def counting(self, template, batch, **kwargs):
        calls.append(batch.batch_size)
        return original(self, template, batch, **kwargs)

    monkeypatch.setattr(BatchEngine, "forward", counting)
    return calls


@pytest.mark.parametrize("gradient", ["exact", "lpgd"])
def test_vmap_is_one_batched_solve_with_the_batched_call_values(gradient, monkeypatch):
    layer = box_qp_layer(gradient)
    cs = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = layer(cs, H)[0]
    solves = count_forward_solves(monkeypatch)
    values = vmap(lambda c: layer(c, H)[0])(cs)
    assert solves == [5]  # one solve of the whole batch, not a loop
    torch.testing.assert_close(values, expected, atol=1e-9, rtol=0)

    # vmap over a call that is batched itself: (K, B) becomes one batch of K·B.
    solves.clear()
    nested = cs.reshape(1, 5, 3).expand(2, 5, 3) * torch.tensor([1.0, -1.0]).reshape(2, 1, 1)
    values = vmap(lambda c: layer(c, H)[0])(nested)
    assert solves == [10]
    torch.testing.assert_close(
        values, layer(nested.reshape(10, 3), H)[0].reshape(2, 5, 3), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("gradient", ["exact", "lpgd"])
def test_vmap_of_grad_gives_per_element_gradients(gradient, monkeypatch):
    layer = box_qp_layer(gradient)
    cs = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    per_element = vmap(grad(loss_of(layer), argnums=(0, 1)), in_dims=(0, None))(cs, H)
    # Eager reference: a batched call with h repeated per element gives per-element grads.
    c_ref = cs.clone().requires_grad_()
    h_ref = H.expand(4, 3).clone().requires_grad_()
    (loss_of(layer)(c_ref, h_ref)).backward()
    torch.testing.assert_close(per_element[0], c_ref.grad, atol=1e-9, rtol=0)
    torch.testing.assert_close(per_element[1], h_ref.grad, atol=1e-9, rtol=0)


def test_vmap_with_two_outputs_and_a_dual():
    x = cp.Variable(2, name="x")
    c = cp.Parameter(2, name="c")
    limit = x <= 1
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [limit])
    layer = cvxlpgd.CvxpyLayer(problem, [c], [x, limit], solver="SCS", solver_args=TIGHT["SCS"])
    cs = torch.tensor([[-4.0, 1.0], [2.0, -1.0], [0.0, -6.0]], dtype=torch.float64)
    xs, duals = vmap(lambda c: layer(c))(cs)
    ref_x, ref_dual = layer(cs)
    torch.testing.assert_close(xs, ref_x, atol=1e-9, rtol=0)
    torch.testing.assert_close(duals, ref_dual, atol=1e-9, rtol=0)
    # Active bound x_i = 1 has dual -c_i - 2.
    torch.testing.assert_close(
        duals[0], torch.tensor([2.0, 0.0], dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_call_keys_name_the_layer_so_cached_compiled_graphs_are_not_shared():
    """torch.compile caches graphs on disk across processes, keyed on the graph's
    constants: the operators' key must differ between layers of different problems
    (the handle alone can repeat in a new process), and agree for a copy."""
    import copy

    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    first = cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(x - z))), [z], [x])
    y = cp.Variable(4, name="x")
    w = cp.Parameter(4, name="z")
    second = cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(y - w))), [w], [y])
    for needs_grad in (False, True):
        assert first._call_key(needs_grad) != second._call_key(needs_grad)
        assert first._call_key(needs_grad, tau=0.5) != second._call_key(needs_grad, tau=0.5)
        assert copy.deepcopy(first)._call_key(needs_grad) == first._call_key(needs_grad)
    key = first._call_key(True, tau=0.5)
    first._runtime.kinds.clear()  # decoded again from the key alone
    kind = first._call_kind(key)
    assert kind.needs_grad and kind.options.tau == 0.5
