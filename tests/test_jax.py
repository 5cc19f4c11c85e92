"""The JAX front end (cvxlpgd.jax.CvxpyLayer): values, gradients and JAX transformations.

References: CVXPY's own Clarabel solves, central differences of the solution map
(re-solving with CVXPY), and the PyTorch layer on the same solver (same engine, so
the same numbers).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cvxpy as cp
import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

import cvxlpgd  # noqa: E402
from cvxlpgd.jax import CvxpyLayer  # noqa: E402
from tests.problems import lp, qp, scaled_qp  # noqa: E402
from tests.reference import (  # noqa: E402
    TIGHT_CLARABEL,
    finite_difference_gradient,
    relative_error,
    solve_outputs,
)

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _qp_layers(**kwargs):
    problem, params, x, ineq, eq, values = qp()
    outputs = [x, ineq, eq]
    layer = CvxpyLayer(problem, params, outputs, solver="CLARABEL", solver_args=TIGHT, **kwargs)
    torch_layer = cvxlpgd.CvxpyLayer(
        problem, params, outputs, solver="CLARABEL", solver_args=TIGHT, **kwargs
    )
    return problem, params, outputs, values, layer, torch_layer


def _torch(values):
    return [torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True) for v in values]


def test_values_and_duals_match_cvxpy_and_the_torch_layer():
    problem, params, outputs, values, layer, torch_layer = _qp_layers()
    args = [values[p.name()] for p in params]
    got = layer(*map(jnp.asarray, args))
    assert all(o.dtype == jnp.float64 for o in got)
    reference = solve_outputs(problem, params, values, outputs)
    for a, b in zip(got, reference):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-6)
    for a, b in zip(got, torch_layer(*_torch(args))):
        np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), atol=1e-8, rtol=0)


def test_exact_gradient_matches_finite_differences_of_the_solution_map():
    problem, params, outputs, values, layer, _ = _qp_layers(gradient="exact", exact_mode="dense")
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(o.shape) for o in outputs]
    args = [jnp.asarray(values[p.name()]) for p in params]

    def loss(*args):
        return sum(jnp.sum(jnp.asarray(w) * o) for w, o in zip(weights, layer(*args)))

    grads = jax.grad(loss, argnums=tuple(range(len(args))))(*args)
    fd = finite_difference_gradient(problem, params, values, outputs, weights, step=1e-5)
    for p, g in zip(params, grads):
        assert relative_error(np.asarray(g), fd[p.name()]) < 1e-4, p.name()


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_gradients_equal_the_torch_layer(gradient):
    problem, params, x, values = lp()
    kwargs = dict(gradient=gradient, tau=0.3, solver="CLARABEL")
    layer = CvxpyLayer(problem, params, [x], **kwargs)
    torch_layer = cvxlpgd.CvxpyLayer(problem, params, [x], **kwargs)
    args = [values[p.name()] for p in params]
    w = np.array([1.0, -2.0, 0.5, 3.0])
    grads = jax.grad(lambda c, b: jnp.sum(jnp.asarray(w) * layer(c, b)[0]), argnums=(0, 1))(
        *map(jnp.asarray, args)
    )
    tensors = _torch(args)
    (torch.tensor(w) * torch_layer(*tensors)[0]).sum().backward()
    for g, t in zip(grads, tensors):
        np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), atol=1e-8, rtol=0)
    if gradient == "lpgd":
        assert np.linalg.norm(np.asarray(grads[0])) > 0  # LPGD is informative on an LP


def test_jit_grad_vjp_and_jacrev():
    problem, params, outputs, values, layer, _ = _qp_layers(gradient="exact", exact_mode="dense")
    args = [jnp.asarray(values[p.name()]) for p in params]
    q = args[1]

    def x_of(q):
        return layer(args[0], q, *args[2:])[0]

    eager = x_of(q)
    np.testing.assert_allclose(jax.jit(x_of)(q), eager, atol=1e-10)
    jacobian = jax.jacrev(x_of)(q)
    assert jacobian.shape == (4, 4)
    np.testing.assert_allclose(jax.jit(jax.jacrev(x_of))(q), jacobian, atol=1e-10)
    out, vjp = jax.vjp(x_of, q)
    for i in range(4):
        (row,) = vjp(jnp.eye(4)[i])
        np.testing.assert_allclose(row, jacobian[i], atol=1e-10)
    g = jax.grad(lambda q: jnp.sum(x_of(q) ** 2))(q)
    np.testing.assert_allclose(g, 2 * jacobian.T @ out, atol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda q: jnp.sum(x_of(q) ** 2)))(q), g, atol=1e-10)
    with pytest.raises(TypeError, match="jvp"):
        jax.jvp(x_of, (q,), (q,))


def test_vmap_is_one_batched_call_and_broadcasts():
    problem, params, x, values = lp()
    layer = CvxpyLayer(problem, params, [x], tau=0.3, solver="CLARABEL")
    torch_layer = cvxlpgd.CvxpyLayer(problem, params, [x], tau=0.3, solver="CLARABEL")
    rng = np.random.default_rng(1)
    cs = jnp.asarray(values["c"] + 0.3 * rng.standard_normal((5, 4)))
    b = jnp.asarray(values["b"])
    batched = layer(cs, b)[0]  # c batched, b broadcast
    assert batched.shape == (5, 4)
    mapped = jax.vmap(lambda c: layer(c, b)[0])(cs)
    assert len(layer.solver_stats.forward) == 5  # one solve of the whole batch
    np.testing.assert_allclose(mapped, batched, atol=1e-10)
    for i in range(5):
        np.testing.assert_allclose(layer(cs[i], b)[0], batched[i], atol=1e-8)
    # A vmap over batched calls: 3 × 5 elements in one solve.
    stacked = jax.vmap(lambda c: layer(c, b)[0])(jnp.stack([cs, cs, cs]))
    assert stacked.shape == (3, 5, 4) and len(layer.solver_stats.forward) == 15
    np.testing.assert_allclose(stacked[2], batched, atol=1e-10)

    def loss(cs, b):
        return jnp.sum(jnp.arange(4.0) * layer(cs, b)[0])

    def mapped_loss(cs, b):
        return jnp.sum(jnp.arange(4.0) * jax.vmap(lambda c: layer(c, b)[0])(cs))

    gc, gb = jax.grad(loss, argnums=(0, 1))(cs, b)
    mc, mb = jax.grad(mapped_loss, argnums=(0, 1))(cs, b)
    assert gb.shape == (2,)
    np.testing.assert_allclose(mc, gc, atol=1e-10)
    np.testing.assert_allclose(mb, gb, atol=1e-10)
    tensors = _torch([np.asarray(cs), np.asarray(b)])
    (torch.arange(4.0, dtype=torch.float64) * torch_layer(*tensors)[0]).sum().backward()
    np.testing.assert_allclose(gc, tensors[0].grad.numpy(), atol=1e-8)
    np.testing.assert_allclose(gb, tensors[1].grad.numpy(), atol=1e-8)


def test_geometric_program():
    x, y = cp.Variable(pos=True, name="x"), cp.Variable(pos=True, name="y")
    a, b = cp.Parameter(pos=True, name="a"), cp.Parameter(pos=True, name="b")
    problem = cp.Problem(cp.Minimize(a * x + 1 / (x * y)), [y <= b])
    layer = CvxpyLayer(
        problem, [a, b], [x, y], gp=True, solver="CLARABEL", solver_args=TIGHT, gradient="exact"
    )
    torch_layer = cvxlpgd.CvxpyLayer(
        problem, [a, b], [x, y], gp=True, solver="CLARABEL", solver_args=TIGHT, gradient="exact"
    )
    a.value, b.value = 2.0, 0.5
    problem.solve(gp=True, solver=cp.CLARABEL, **TIGHT_CLARABEL)
    xs, ys = layer(jnp.asarray(2.0), jnp.asarray(0.5))
    np.testing.assert_allclose([xs, ys], [x.value, y.value], rtol=1e-4)
    grads = jax.grad(lambda a, b: jnp.sum(layer(a, b)[0]), argnums=(0, 1))(
        jnp.asarray(2.0), jnp.asarray(0.5)
    )
    tensors = _torch([2.0, 0.5])
    torch_layer(*tensors)[0].sum().backward()
    np.testing.assert_allclose(grads, [t.grad.item() for t in tensors], atol=1e-8)
    # x* = 1/sqrt(a b): dx*/da = -x*/(2a).
    np.testing.assert_allclose(grads[0], -float(xs) / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="must be positive"):
        layer(jnp.asarray(-1.0), jnp.asarray(0.5))


def test_quad_form_parameter_and_per_call_overrides():
    problem, params, x, values = scaled_qp()
    layer = CvxpyLayer(problem, params, [x], solver="CLARABEL", solver_args=TIGHT)
    exact = CvxpyLayer(
        problem,
        params,
        [x],
        solver="CLARABEL",
        solver_args=TIGHT,
        gradient="exact",
        exact_mode="dense",
    )
    torch_layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL", solver_args=TIGHT)
    args = [jnp.asarray(values[p.name()]) for p in params]
    np.testing.assert_allclose(
        layer(*args)[0],
        torch_layer(*_torch([values[p.name()] for p in params]))[0].detach().numpy(),
        atol=1e-8,
    )

    def grads(layer, **overrides):
        return jax.grad(
            lambda *a: jnp.sum(jnp.arange(1.0, 4.0) * layer(*a, **overrides)[0]), argnums=(0, 1, 2)
        )(*args)

    overridden, reference = grads(layer, gradient="exact"), grads(exact)
    for g, r in zip(overridden, reference):
        np.testing.assert_allclose(g, r, atol=1e-8)
    big_tau = CvxpyLayer(problem, params, [x], solver="CLARABEL", solver_args=TIGHT, tau=2.0)
    for g, r in zip(grads(layer, tau=2.0), grads(big_tau)):
        np.testing.assert_allclose(g, r, atol=1e-10)
    for g, r in zip(grads(layer, tau=1e-3), reference):
        assert relative_error(np.asarray(g), np.asarray(r)) < 1e-2
    # Solver settings per call: a loose tolerance changes the solution.
    loose = layer(*args, solver_args={"tol_gap_abs": 1e-2, "tol_gap_rel": 1e-2})[0]
    assert loose.shape == (3,)


def test_argument_errors_name_the_parameter():
    problem, params, x, values = lp()
    layer = CvxpyLayer(problem, params, [x], solver="CLARABEL")
    c, b = jnp.asarray(values["c"]), jnp.asarray(values["b"])
    with pytest.raises(ValueError, match=r"parameter .c. .*shape \(4,\)"):
        layer(jnp.ones(3), b)
    with pytest.raises(ValueError, match=r"parameter .c. .*shape \(4,\)"):
        jax.jit(layer)(jnp.ones(3), b)
    with pytest.raises(ValueError, match="Inconsistent batch sizes"):
        layer(jnp.ones((2, 4)), jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="expected 2 tensors"):
        layer(c)
    with pytest.raises(ValueError, match="parameter .b. has non-finite"):
        layer(c, jnp.asarray([1.0, jnp.nan]))
    with pytest.raises(TypeError, match="floating-point"):
        layer(c, jnp.asarray([1, 2]))
    with pytest.raises(ValueError, match="gradient must be one of"):
        layer(c, b, gradient="nope")


def test_import_does_not_load_the_torch_front_end_and_float32_works():
    script = textwrap.dedent("""
        import sys
        import cvxpy as cp
        import jax, jax.numpy as jnp
        import cvxlpgd.jax
        x = cp.Variable(2)
        c = cp.Parameter(2)
        problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x >= -1])
        layer = cvxlpgd.jax.CvxpyLayer(problem, [c], [x], solver="CLARABEL")
        c0 = jnp.asarray([1.0, -1.0], dtype=jnp.float32)
        (out,) = layer(c0)
        assert out.dtype == jnp.float32, out.dtype
        assert jnp.allclose(out, jnp.asarray([-0.5, 0.5]), atol=1e-5), out
        g = jax.jit(jax.grad(lambda c: jnp.sum(layer(c)[0] ** 2)))(c0)
        assert g.dtype == jnp.float32 and jnp.allclose(g, jnp.asarray([0.5, -0.5]), atol=1e-3), g
        assert "cvxlpgd.torch" not in sys.modules, sorted(
            m for m in sys.modules if m.startswith("cvxlpgd.torch"))
        print("ok")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_an_infeasible_problem_raises_the_solver_error_eagerly():
    """An eager call re-raises the engine's SolverError (a diffcp.SolverError too), not
    JAX's wrapper around it."""
    x = cp.Variable(1)
    lo = cp.Parameter(1)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(cp.sum(x)), [x >= lo, x <= 1]), [lo], [x])
    with pytest.raises(cvxlpgd.SolverError, match="'infeasible' at batch index 1") as info:
        layer(jnp.array([[0.0], [2.0]]))
    assert info.value.batch_index == 1
    with pytest.raises(ValueError, match="A tensor must be provided for each CVXPY parameter"):
        layer()
