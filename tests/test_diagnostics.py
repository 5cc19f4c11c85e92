"""Diagnostics: gradient comparison, τ scan and the zero-gradient warning.

References are independent of the code under test where it matters: the finite
differences of ``compare_gradients`` are checked against the exact gradient (diffcp)
and against ``tests.reference`` (CVXPY's own solves).
"""

import sys
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd import diagnostics
from tests import problems
from tests.reference import TIGHT_CLARABEL, finite_difference_gradient, relative_error

R_INIT = [1.0, 0.5, 0.2]
R_TRUE = torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64)


def projection_layer(solver="CLARABEL", **kwargs):
    """min ½‖x − z‖² s.t. Gx ≤ h, with parameters z, G, h (differentiable, some rows active)."""
    rng = np.random.default_rng(0)
    n, m = 3, 4
    x = cp.Variable(n, name="x")
    z = cp.Parameter(n, name="z")
    G = cp.Parameter((m, n), name="G")
    h = cp.Parameter(m, name="h")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - z)), [G @ x <= h])
    settings = TIGHT_CLARABEL if solver == "CLARABEL" else {"eps": 1e-10}
    layer = cvxlpgd.CvxpyLayer(
        problem, [z, G, h], [x], solver=solver, solver_args=settings, **kwargs
    )
    values = {
        "z": rng.standard_normal(n),
        "G": rng.standard_normal((m, n)),
        "h": rng.uniform(0.1, 0.5, m),
    }
    return problem, [z, G, h], x, layer, values


def lp_layer(**kwargs):
    problem, params, w = problems.portfolio_lp()
    return cvxlpgd.CvxpyLayer(problem, params, [w], **kwargs)


def lp_backward(layer, r=R_INIT, **call):
    r_hat = torch.tensor(r, dtype=torch.float64, requires_grad=True)
    (w,) = layer(r_hat, **call)
    (-(R_TRUE * w).sum()).backward()
    return r_hat.grad


# ---- compare_gradients -------------------------------------------------------------------


def test_compare_gradients_finite_differences_match_exact_and_an_independent_reference():
    problem, params, x, layer, values = projection_layer()
    tensors = [torch.tensor(values[p.name()]) for p in params]
    weights = [np.random.default_rng(3).standard_normal(3)]
    result = cvxlpgd.compare_gradients(layer, *tensors, taus=(1e-5, 1.0), loss_weights=weights)
    reference = finite_difference_gradient(problem, params, values, [x], weights)
    for p in params:
        grads = result["gradients"][p.name()]
        assert relative_error(grads["fd"], reference[p.name()]) < 1e-4, p.name()
        assert relative_error(grads["exact"], reference[p.name()]) < 1e-4, p.name()
        assert relative_error(grads["lpgd"][1e-5], reference[p.name()]) < 1e-4, p.name()
    small = result.row("(all)", "lpgd", 1e-5)
    assert small["cosine_fd"] > 0.99999 and small["rel_error_fd"] < 1e-4
    assert small["cosine_exact"] > 0.99999 and small["rel_error_exact"] < 1e-4
    assert result.row("(all)", "lpgd", 1.0)["rel_error_exact"] > 1e-3  # large τ smooths
    assert result.row("(all)", "exact")["rel_error_fd"] < 1e-4
    assert result["seed"] is None and result["errors"] == {}


def test_compare_gradients_is_a_plain_dict_that_prints_as_a_table():
    _, params, _, layer, values = projection_layer()
    result = cvxlpgd.compare_gradients(
        layer, *[torch.tensor(values[p.name()]) for p in params], taus=[1e-3], fd_step=None
    )
    assert type(result).__mro__[1] is dict
    assert result["fd_step"] is None and result["seed"] == 0
    assert set(result["rows"][0]) == {
        "parameter",
        "method",
        "tau",
        "norm",
        "cosine_fd",
        "rel_error_fd",
        "cosine_exact",
        "rel_error_exact",
    }
    assert [r["method"] for r in result["rows"] if r["parameter"] == "z"] == ["exact", "lpgd"]
    assert all(r["cosine_fd"] is None for r in result["rows"])  # no finite differences
    text = str(result)
    assert "cos(exact)" in text and "lpgd tau=0.001" in text
    assert {line.split()[0] for line in text.splitlines()[3:]} == {"z", "G", "h", "(all)"}
    with pytest.raises(KeyError):
        result.row("z", "lpgd", 0.5)


def test_compare_gradients_handles_batches_and_sign_constrained_parameters():
    """x* = s·1 + q (inside the box): batched q gets per-element differences; the shared
    nonneg scalar s sits closer to 0 than the step, so its difference is clipped
    (one-sided). ∂⟨w, x*⟩/∂s = Σ w and ∂/∂q = w, exactly."""
    x = cp.Variable(3)
    s = cp.Parameter(nonneg=True, name="s")
    q = cp.Parameter(3, name="q")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) - s * cp.sum(x) - q @ x), [x <= 10])
    layer = cvxlpgd.CvxpyLayer(problem, [s, q], [x], solver="CLARABEL", solver_args=TIGHT_CLARABEL)
    q_batch = torch.tensor([[0.1, -0.2, 0.3], [1.0, 2.0, -1.0]], dtype=torch.float64)
    weights = np.array([[1.0, 2.0, -0.5], [0.5, -1.0, 3.0]])
    result = cvxlpgd.compare_gradients(
        layer, torch.tensor(2e-5, dtype=torch.float64), q_batch, taus=[1e-4], loss_weights=[weights]
    )
    grads = result["gradients"]
    assert grads["q"]["fd"].shape == (2, 3) and grads["s"]["fd"].shape == ()
    np.testing.assert_allclose(grads["q"]["fd"], weights, atol=1e-5)
    np.testing.assert_allclose(grads["s"]["fd"], weights.sum(), atol=1e-5)
    for name in ("s", "q"):
        assert relative_error(grads[name]["exact"], grads[name]["fd"]) < 1e-5, name
        assert relative_error(grads[name]["lpgd"][1e-4], grads[name]["fd"]) < 1e-5, name


def test_compare_gradients_rejects_bad_weights_and_taus():
    _, params, _, layer, values = projection_layer()
    tensors = [torch.tensor(values[p.name()]) for p in params]
    with pytest.raises(ValueError, match="one array per output"):
        cvxlpgd.compare_gradients(layer, *tensors, loss_weights=[np.ones(3), np.ones(3)])
    with pytest.raises(ValueError, match=r"loss_weights\[0\] must have the output's shape"):
        cvxlpgd.compare_gradients(layer, *tensors, loss_weights=[np.ones(4)])
    with pytest.raises(ValueError, match="taus is empty"):
        cvxlpgd.compare_gradients(layer, *tensors, taus=[])
    with pytest.raises(ValueError, match="expected 3 tensors"):
        cvxlpgd.compare_gradients(layer, *tensors[:2])


# ---- tau_scan ----------------------------------------------------------------------------


def test_tau_scan_flags_too_small_taus_on_an_lp_and_suggests_a_scale():
    layer = lp_layer(solver="CLARABEL")
    r = torch.tensor(R_INIT, dtype=torch.float64)
    scan = cvxlpgd.tau_scan(layer, r, taus=[0.1, 0.5, 2.0, 5.0], loss_weights=[-R_TRUE])
    assert scan["too_small"] == [True, True, False, False]
    assert scan["lpgd_norm"][0] < 1e-6 < 0.1 < scan["lpgd_norm"][2]
    assert scan["lpgd_norm"][3] < scan["lpgd_norm"][2]  # the replacement shrinks like 1/τ
    assert scan["exact_norm"] < 1e-6
    assert 0.5 <= scan["suggested_tau"] <= 2.0
    text = str(scan)
    assert "tau too small" in text and "numerically zero" in text


def test_tau_scan_agreement_with_exact_on_a_smooth_problem_and_plot(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    _, params, _, layer, values = projection_layer()
    tensors = [torch.tensor(values[p.name()]) for p in params]
    scan = cvxlpgd.tau_scan(layer, *tensors, taus=[1e-5, 1e-3, 3.0], plot=True)
    assert scan["cosine"][0] > 0.99999 and scan["rel_error"][0] < 1e-4
    assert scan["rel_error"][2] > scan["rel_error"][0]
    assert scan["too_small"] == [False, False, False]
    assert scan.ax is not None and scan.ax.get_xscale() == "log"
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # as if not installed
    with pytest.raises(ImportError, match="needs matplotlib"):
        cvxlpgd.tau_scan(layer, *tensors, taus=[1e-3], plot=True)


# ---- zero-gradient warning ---------------------------------------------------------------


def caught_warnings(function):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function()
    return [w for w in caught if issubclass(w.category, cvxlpgd.ZeroGradientWarning)]


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "ECOS"])
def test_zero_gradient_warning_fires_once_per_layer_and_names_a_tau_scale(solver):
    layer = lp_layer(solver=solver, tau=0.1)
    caught = caught_warnings(lambda: [lp_backward(layer) for _ in range(3)])
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "LPGD gradient is zero: with tau=0.1" in message
    assert "try tau of the order of 1 " in message  # max(|c|, |A'y*|) / |dx| = 1 / 1
    # It points at the user's line (here: this file's backward call), not the package.
    assert caught[0].filename == __file__
    # Another layer warns again; the named scale does move the solution.
    assert len(caught_warnings(lambda: lp_backward(lp_layer(solver=solver, tau=0.1)))) == 1
    assert lp_backward(layer, tau=2.0).abs().max() > 0.1


def test_no_zero_gradient_warning_for_a_healthy_tau_or_a_genuine_zero():
    assert caught_warnings(lambda: lp_backward(lp_layer(tau=2.0))) == []
    _, params, _, layer, values = projection_layer(solver="SCS", tau=1e-4)
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]

    def smooth():
        layer(*tensors)[0].sum().backward()

    assert caught_warnings(smooth) == []
    # At the optimum of the loss (all weight on the best asset) no τ moves the upper
    # solution: the zero gradient is correct and not reported, whatever τ.
    layer = lp_layer(tau=0.1, solver="CLARABEL")
    grads = []
    assert caught_warnings(lambda: grads.append(lp_backward(layer, r=[0.2, 0.5, 1.0]))) == []
    assert grads[0].abs().max() < 1e-6


def test_zero_gradient_warning_needs_every_batch_element_stuck():
    layer = lp_layer(tau=0.5, solver="CLARABEL")
    stuck = [[1.0, 0.5, 0.2], [0.9, 0.5, 0.2]]
    mixed = [[1.0, 0.5, 0.2], [0.6, 0.5, 0.55]]  # second element moves at τ = 0.5
    assert caught_warnings(lambda: lp_backward(layer, r=mixed)) == []
    assert len(caught_warnings(lambda: lp_backward(layer, r=stuck))) == 1


def test_diagnostics_neither_warn_nor_use_up_the_layers_warning():
    layer = lp_layer(tau=0.1, solver="CLARABEL")
    r = torch.tensor(R_INIT, dtype=torch.float64)
    caught = caught_warnings(
        lambda: (
            cvxlpgd.compare_gradients(layer, r, taus=[1e-3, 0.1], loss_weights=[-R_TRUE]),
            cvxlpgd.tau_scan(layer, r, taus=[1e-3], loss_weights=[-R_TRUE]),
        )
    )
    assert caught == []
    assert len(caught_warnings(lambda: lp_backward(layer))) == 1


def test_suggest_tau_and_solver_tolerance():
    # Batch first: two elements, n = 2, m = 1.
    c = np.array([[-1.0, -0.5], [-0.5, -2.0]]).T
    dx = np.array([[0.5, 0.0], [-0.25, 0.0]]).T
    dy = np.array([[0.0, 4.0]]).T
    b = np.array([[1.0, 1.0]]).T
    # Element 0: ‖c‖∞/‖dx‖∞ = 1/0.5 = 2; element 1: only dy, ‖b‖∞/‖dy‖∞ = 1/4.
    assert diagnostics.suggest_tau(c, b, dx, dy) == pytest.approx(np.median([2.0, 0.25]))
    assert np.isnan(diagnostics.suggest_tau(c, b, 0 * dx, 0 * dy))
    assert diagnostics.solver_tolerance("SCS") == 1e-7
    assert diagnostics.solver_tolerance("scs", {"eps": 1e-9}) == 1e-9
    assert diagnostics.solver_tolerance("CLARABEL") == 1e-8
    assert diagnostics.solver_tolerance("ECOS", {"feastol": 1e-6}) == 1e-6
    assert diagnostics.solver_tolerance("MOREAU") == 1e-8
    assert diagnostics.solver_tolerance("MOREAU", {"tol_feas": 1e-6}) == 1e-6
    with pytest.raises(ValueError, match="unknown solver"):
        diagnostics.solver_tolerance("GUROBI")


# ---- what print(layer) shows -------------------------------------------------------------


def test_layer_repr_names_parameters_outputs_and_every_option():
    problem, params, x, ineq, eq, _ = problems.qp()
    layer = cvxlpgd.CvxpyLayer(
        problem,
        params,
        [x, ineq, eq],
        gradient="exact",
        tau=1e-3,
        rho=0.5,
        lpgd_mode="upper",
        solver="clarabel",
        solver_args={"max_iter": 50},
        workers=2,
    )
    assert repr(layer) == (
        "CvxpyLayer(\n"
        "  parameters: L (4, 4), q (4,), G (3, 4), h (3,), E (2, 4), f (2,)\n"
        "  outputs: x (4,), dual(G @ x <= h) (3,), dual(E @ x == f) (2,)\n"
        "  gradient='exact', tau=0.001, rho=0.5, lpgd_mode='upper', exact_mode='lsqr', "
        "exact_backend='auto' (diffcp)\n"
        "  solver='CLARABEL', solver_args={'max_iter': 50}, workers=2\n"
        ")"
    )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        text = repr(cvxlpgd.CvxpyLayer(problem, params, [x], executor=pool))
    assert "workers=ThreadPoolExecutor" in text and "solver='auto'" in text
    layer = cvxlpgd.CvxpyLayer(problem, params, [x])
    values = problems.qp()[-1]
    layer(*[torch.tensor(values[p.name()]) for p in params])
    assert "solver='auto (last call: MOREAU)'" in repr(layer)


def test_the_repr_shown_in_the_docs_is_the_real_one():
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "getting-started.md").read_text()
    documented = page.split("```text\n", 1)[1].split("```", 1)[0].strip()
    x = cp.Variable(4, name="x")
    z = cp.Parameter(4, name="z")
    h = cp.Parameter(4, name="h")
    upper = x <= h
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - z)), [upper])
    layer = cvxlpgd.CvxpyLayer(problem, parameters=[z, h], variables=[x, upper])
    assert repr(layer) == documented
