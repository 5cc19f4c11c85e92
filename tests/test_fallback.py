"""Defaults that never fail where an installed solver answers (cvxlpgd.engine.fallback), flat
cvxpylayers-style solver_args under solver="auto" (cvxlpgd.engine.solver_args), the exact
backend "auto" chooses, and executors that can be replaced."""

import os
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.solvers.moreau_backend import MoreauSolver
from tests.reference import CLARABEL_EXACT


def assignment_layer(**options):
    X = cp.Variable((10, 10), name="X")
    C = cp.Parameter((10, 10), name="C")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))),
        [X >= 0, cp.sum(X, axis=0) == 1, cp.sum(X, axis=1) == 1],
    )
    return problem, C, X, cvxlpgd.CvxpyLayer(problem, [C], [X], **options)


#: The batch of the issue: its element 34 is one Moreau reports "failed" for.
FAILING = np.random.default_rng(0).standard_normal((64, 10, 10))[30:38]
FAILING_ROW = 4


def clarabel_solution(problem, C, X, value):
    C.value = value
    problem.solve(**CLARABEL_EXACT)
    return X.value


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_an_element_moreau_fails_on_is_answered_by_the_next_solver(gradient):
    problem, C, X, layer = assignment_layer(gradient=gradient)
    costs = torch.tensor(FAILING, requires_grad=True)
    with pytest.warns(
        cvxlpgd.SolverFallbackWarning,
        match=f"batch index {FAILING_ROW} \\(forward: failed\\) → CLARABEL",
    ):
        (X_out,) = layer(costs)
    stats = layer.solver_stats
    assert stats.solver == "MOREAU"
    assert stats.solver_fallbacks == {FAILING_ROW: "CLARABEL"}
    assert [r.solver for r in stats.forward].count("MOREAU") == len(FAILING) - 1
    for i in (FAILING_ROW, 0):
        reference = clarabel_solution(problem, C, X, FAILING[i])
        np.testing.assert_allclose(X_out[i].detach().numpy(), reference, atol=1e-6)
    weights = torch.tensor(np.random.default_rng(1).standard_normal(X_out.shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cvxlpgd.SolverFallbackWarning)
        (weights * X_out).sum().backward()
    # The same gradient as Clarabel alone gives (which solves every element).
    _, _, _, clarabel = assignment_layer(gradient=gradient, solver="CLARABEL")
    reference = torch.tensor(FAILING, requires_grad=True)
    (weights * clarabel(reference)[0]).sum().backward()
    np.testing.assert_allclose(costs.grad.numpy(), reference.grad.numpy(), atol=1e-5)
    if gradient == "lpgd":  # (the exact derivative of an LP is zero)
        assert float(costs.grad[FAILING_ROW].abs().max()) > 0.1


def test_a_named_solver_falls_back_only_when_allowed():
    _, _, _, layer = assignment_layer(solver="MOREAU")
    with pytest.raises(
        cvxlpgd.SolverError, match=f"MOREAU returned status 'failed' at batch index {FAILING_ROW}"
    ):
        layer(torch.tensor(FAILING))
    _, _, _, layer = assignment_layer(solver="MOREAU", fallback=True)
    with pytest.warns(cvxlpgd.SolverFallbackWarning):
        layer(torch.tensor(FAILING))
    assert layer.solver_stats.solver_fallbacks == {FAILING_ROW: "CLARABEL"}


def test_an_infeasible_element_names_every_solver_tried():
    x = cp.Variable(2, name="x")
    lo = cp.Parameter(2, name="lo")
    layer = cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(cp.sum(x)), [x >= lo, x <= 1]), [lo], [x])
    with pytest.raises(
        cvxlpgd.SolverError,
        match="every solver tried \\(MOREAU 'infeasible', "
        "CLARABEL 'infeasible', SCS 'infeasible'\\) failed: status "
        "'infeasible' at batch index 1",
    ) as info:
        layer(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    assert info.value.batch_index == 1 and info.value.status == "infeasible"


def test_moreau_derivative_of_an_element_another_solver_answered(monkeypatch):
    """Moreau's derivative needs Moreau's own solution: an element that fell back is
    solved again by Moreau, from the fallback's solution, and differentiated there."""
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    h = cp.Parameter(3, name="h")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [x <= h])
    rng = np.random.default_rng(3)
    values = [torch.tensor(rng.standard_normal((4, 3)), requires_grad=True) for _ in range(2)]
    weights = torch.tensor(rng.standard_normal((4, 3)))

    def gradient():
        layer = cvxlpgd.CvxpyLayer(problem, [z, h], [x], gradient="exact", exact_backend="moreau")
        (out,) = layer(*values)
        grads = torch.autograd.grad((weights * out).sum(), values)
        return layer, out.detach(), grads

    _, expected_x, expected = gradient()
    solve = MoreauSolver.solve

    def failing_row_two(self, batch, warm_start=None, reuse=None):
        result = solve(self, batch, warm_start, reuse)
        if batch.batch_size == 4:
            result.status[2] = "failed"
        return result

    monkeypatch.setattr(MoreauSolver, "solve", failing_row_two)
    with pytest.warns(cvxlpgd.SolverFallbackWarning, match="batch index 2"):
        layer, out, grads = gradient()
    assert layer.solver_stats.exact_backend == "moreau"
    assert layer.solver_stats.solver_fallbacks == {2: "CLARABEL"}
    np.testing.assert_allclose(out.numpy(), expected_x.numpy(), atol=1e-6)
    for ours, reference in zip(grads, expected):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-6)


def test_a_badly_scaled_wrong_answer_is_never_silent():
    """A cost of 1e20 next to 1: Moreau's x₂ = 0 (true −0.5) hid behind the huge
    coordinate in norm-wise residuals; component-wise it is a failure."""
    x = cp.Variable(2, name="x")
    c = cp.Parameter(2, name="c")
    layer = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(cp.sum_squares(x) + c @ x), [x >= -1]), [c], [x]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            (out,) = layer(torch.tensor([1e20, 1.0], dtype=torch.float64))
        except cvxlpgd.SolverError:
            return  # refused: not silent
    if abs(float(out[1]) + 0.5) > 1e-4:
        assert any(issubclass(w.category, cvxlpgd.InaccurateSolutionWarning) for w in caught)
    assert layer.solver_stats.forward[0].solver != "MOREAU"


# ---- flat solver_args under solver="auto" ---------------------------------------------


def small_qp_layer(**options):
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [cp.sum(x) == 1, x >= 0])
    return cvxlpgd.CvxpyLayer(problem, [z], [x], **options)


@pytest.mark.parametrize(
    "args, solver",
    [
        ({"eps": 1e-10}, "SCS"),
        ({"eps": 1e-10, "max_iters": 20_000}, "SCS"),
        ({"acceleration_lookback": 5}, "SCS"),
        ({"solve_method": "SCS"}, "SCS"),
        ({"solve_method": "Clarabel", "verbose": False}, "CLARABEL"),
        ({"verbose": False}, "MOREAU"),
        ({"tol_gap_abs": 1e-10}, "MOREAU"),
    ],
)
def test_flat_settings_pick_the_solver_that_knows_them(args, solver):
    layer = small_qp_layer(solver_args=args)
    z = torch.tensor([0.3, -2.0, 5.0], requires_grad=True)
    (out,) = layer(z)
    assert layer.solver_stats.solver == solver
    np.testing.assert_allclose(out.detach().numpy(), [0.0, 0.0, 1.0], atol=1e-6)
    (out,) = small_qp_layer()(z, solver_args=args)  # per call, too
    np.testing.assert_allclose(out.detach().numpy(), [0.0, 0.0, 1.0], atol=1e-6)


def test_a_setting_no_solver_knows_is_named():
    with pytest.raises(ValueError, match="unknown setting\\(s\\) 'epsilon'"):
        small_qp_layer(solver_args={"epsilon": 1e-9})(torch.zeros(3))
    with pytest.raises(ValueError, match="solve_method='GUROBI'"):
        small_qp_layer(solver_args={"solve_method": "GUROBI"})(torch.zeros(3))


# ---- exact_backend="auto" ---------------------------------------------------------------


@pytest.mark.parametrize(
    "solver, quadratic, expected",
    [
        ("auto", False, "active-set"),
        ("auto", True, "active-set"),
        ("MOREAU", True, "active-set"),
        ("SCS", True, "diffcp"),
        ("CLARABEL", False, "active-set"),
    ],
)
def test_exact_backend_auto(solver, quadratic, expected):
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    objective = cp.sum_squares(x - z) if quadratic else z @ x
    problem = cp.Problem(cp.Minimize(objective), [cp.sum(x) == 1, x >= 0])
    layer = cvxlpgd.CvxpyLayer(problem, [z], [x], gradient="exact", solver=solver)
    assert layer.exact_backend_for("auto") == expected
    assert f"exact_backend='auto' ({expected})" in repr(layer)
    (out,) = layer(torch.tensor([0.3, -2.0, 5.0], requires_grad=True))
    out.sum().backward()
    assert layer.solver_stats.exact_backend == expected


# ---- executors --------------------------------------------------------------------------


def test_a_broken_process_pool_can_be_replaced():
    pool = ProcessPoolExecutor(1)
    layer = small_qp_layer(solver="SCS", executor=pool)
    z = torch.tensor([[0.3, -2.0, 5.0], [0.1, 0.2, 0.3]])
    layer(z)
    for process in list(pool._processes.values()):
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    with pytest.raises(BrokenProcessPool, match="layer.executor = None"):
        layer(z)
    layer.executor = None
    (out,) = layer(z)
    np.testing.assert_allclose(out[0].numpy(), [0.0, 0.0, 1.0], atol=1e-5)
    assert "workers=auto" in repr(layer)
    pool.shutdown()
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        layer.executor = "threads"


def test_exact_gradient_with_scs_settings_differentiates_what_scs_solved():
    """cvxpylayers' solver_args={"eps": ...} with gradient="exact": the settings send
    the call to SCS, so the derivative is diffcp's (not Moreau's, whose solver would
    reject eps), and it matches the closed form of the projection onto the simplex."""
    layer = small_qp_layer(gradient="exact", solver_args={"eps": 1e-10})
    assert layer.exact_backend_for("auto") == "diffcp"
    z = torch.tensor([0.6, 0.5, -3.0], dtype=torch.float64, requires_grad=True)
    (out,) = layer(z)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (w * out).sum().backward()
    assert layer.solver_stats.solver == "SCS" and layer.solver_stats.exact_backend == "diffcp"
    # x = (0.55, 0.45, 0); on the free coordinates ∂x/∂z = I − 11ᵀ/2, so the gradient is
    # w minus its mean there, and 0 on the third.
    np.testing.assert_allclose(out.detach().numpy(), [0.55, 0.45, 0.0], atol=1e-7)
    np.testing.assert_allclose(z.grad.numpy(), [1.5, -1.5, 0.0], atol=1e-5)
    layer = small_qp_layer(gradient="exact")
    assert layer.exact_backend_for("auto") == "active-set"


def test_cvxpylayers_solver_names():
    assert small_qp_layer(solver=None).solver == "AUTO"
    layer = small_qp_layer(solver="DIFFCP", gradient="exact")
    assert layer.solver == "SCS" and layer.exact_backend_for("auto") == "diffcp"
    with pytest.raises(ValueError, match="solver must be one of"):
        small_qp_layer(solver="GUROBI")
