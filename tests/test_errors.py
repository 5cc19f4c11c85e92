"""Bad input gets a clear error naming the culprit, and leaves the layer usable."""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from tests import problems


@pytest.fixture
def qp():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL")
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    return problem, params, x, layer, tensors


def test_problem_must_be_dcp_and_dpp():
    x = cp.Variable(2)
    p = cp.Parameter(2, name="p")
    with pytest.raises(ValueError, match="not DCP"):
        cvxlpgd.CvxpyLayer(cp.Problem(cp.Maximize(cp.sum_squares(x) + p @ x)), [p], [x])
    a = cp.Parameter(nonneg=True, name="a")
    with pytest.raises(ValueError, match="not DPP"):
        cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(a * p @ x), [x >= -1]), [a, p], [x])
    with pytest.raises(TypeError, match="cvxpy.Problem"):
        cvxlpgd.CvxpyLayer("minimize x", [p], [x])


def test_parameters_and_outputs_must_match_the_problem(qp):
    problem, params, x, _, _ = qp
    stranger = cp.Parameter(3, name="stranger")
    with pytest.raises(ValueError, match="'stranger' does not appear"):
        cvxlpgd.CvxpyLayer(problem, [*params, stranger], [x])
    with pytest.raises(ValueError, match="'lo'.* not listed"):
        cvxlpgd.CvxpyLayer(problem, params[:2], [x])
    with pytest.raises(ValueError, match="'q' is listed more than once"):
        cvxlpgd.CvxpyLayer(problem, [*params, params[1]], [x])
    with pytest.raises(TypeError, match="cvxpy.Parameter"):
        cvxlpgd.CvxpyLayer(problem, [*params, np.ones(3)], [x])
    with pytest.raises(ValueError, match="variable 'ghost' does not appear"):
        cvxlpgd.CvxpyLayer(problem, params, [cp.Variable(3, name="ghost")])
    with pytest.raises(ValueError, match="not one of the problem's constraints"):
        cvxlpgd.CvxpyLayer(problem, params, [x >= 0])
    with pytest.raises(TypeError, match="Variable or cvxpy Constraint"):
        cvxlpgd.CvxpyLayer(problem, params, ["x"])
    with pytest.raises(ValueError, match="empty"):
        cvxlpgd.CvxpyLayer(problem, params, [])


def test_constraint_with_several_dual_parts_names_them():
    x = cp.Variable(2)
    r = cp.Parameter(nonneg=True, name="r")
    soc = cp.SOC(r, x)
    problem = cp.Problem(cp.Minimize(cp.sum(x)), [soc])
    with pytest.raises(
        ValueError,
        match=r"2 dual variables .*con.dual_variables\[0\], "
        r"con.dual_variables\[1\]",
    ):
        cvxlpgd.CvxpyLayer(problem, [r], [x, soc])


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("gradient", "adjoint", r"gradient must be one of \('lpgd', 'exact'\)"),
        ("tau", 0.0, "tau must be a positive"),
        ("tau", -1.0, "tau must be a positive"),
        ("rho", -0.1, "rho must be a nonnegative"),
        ("lpgd_mode", "forward", r"lpgd_mode must be one of \('central', 'upper', 'lower'\)"),
        ("exact_mode", "qr", r"exact_mode must be one of \('lsqr', 'dense', 'lsmr'\)"),
        ("solver", "GUROBI", "solver must be one of"),
        ("workers", 0, "workers must be a positive integer"),
    ],
)
def test_invalid_options_are_rejected_with_valid_values(qp, option, value, message):
    problem, params, x, _, _ = qp
    with pytest.raises(ValueError, match=message):
        cvxlpgd.CvxpyLayer(problem, params, [x], **{option: value})


def test_rho_needs_a_solver_with_quadratic_objectives():
    problem, params, x, values = problems.scaled_qp()
    conic = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(params[1] @ x), [x >= params[2]]), params[1:], [x], solver="ECOS"
    )
    message = (
        r"rho > 0 .* ECOS does not accept; use rho=0 or one of "
        r"\('MOREAU', 'SCS', 'CLARABEL'\)"
    )
    with pytest.raises(ValueError, match=message):
        cvxlpgd.CvxpyLayer(problem, params, [x], solver="ECOS", rho=0.5)
    with pytest.raises(ValueError, match=message):
        conic(torch.ones(3), torch.zeros(3), rho=0.5)


def test_invalid_call_overrides_leave_the_layer_unchanged(qp):
    _, _, _, layer, tensors = qp
    with pytest.raises(ValueError, match="tau must be a positive"):
        layer(*tensors, tau=-1)
    with pytest.raises(ValueError, match="gradient must be one of"):
        layer(*tensors, gradient="numeric")
    assert layer.options.tau == 0.1 and layer.options.gradient == "lpgd"
    (x,) = layer(*tensors)
    x.sum().backward()
    assert all(t.grad is not None for t in tensors)


def test_bad_tensors_name_the_parameter_and_shape(qp):
    _, _, _, layer, (a, q, lo) = qp
    with pytest.raises(ValueError, match=r"expected 3 tensors \(for 'a', 'q', 'lo'\), got 2"):
        layer(a, q)
    with pytest.raises(ValueError, match=r"'q' must have shape \(3,\) or \(batch, 3\), got \(4,\)"):
        layer(a, torch.ones(4), lo)
    with pytest.raises(ValueError, match=r"Inconsistent batch sizes \('q': 2, 'lo': 3\)"):
        layer(a, torch.ones(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="'lo' has non-finite values"):
        layer(a, q, torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(TypeError, match="'q' must be a torch.Tensor"):
        layer(a, [1.0, 2.0, 3.0], lo)
    with pytest.raises(TypeError, match="'q' must be a floating-point tensor"):
        layer(a, torch.ones(3, dtype=torch.int64), lo)
    with pytest.raises(ValueError, match="'a' is declared nonneg"):
        layer(torch.tensor(-1.0), q, lo)
    with pytest.raises(ValueError, match="batch size is 0"):
        layer(a, torch.ones(0, 3), lo)


def test_symmetric_parameter_value_must_be_symmetric():
    problem, params, X, _, values = problems.sdp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [X], solver="CLARABEL")
    with pytest.raises(ValueError, match="'C' is declared symmetric"):
        layer(torch.tensor(values["C"] + np.triu(np.ones((3, 3)), 1)))


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "ECOS"])
def test_infeasible_batch_element_raises_solver_error_with_status_and_index(solver):
    x = cp.Variable(2)
    b = cp.Parameter(name="b")
    problem = cp.Problem(cp.Minimize(cp.sum(x)), [x >= 0, cp.sum(x) <= b])
    layer = cvxlpgd.CvxpyLayer(problem, [b], [x], solver=solver)
    with pytest.raises(cvxlpgd.SolverError, match="'infeasible' at batch index 2") as info:
        layer(torch.tensor([1.0, 2.0, -1.0, 3.0]))
    assert info.value.batch_index == 2 and info.value.status == "infeasible"


def test_unbounded_problem_raises_solver_error():
    x = cp.Variable()
    c = cp.Parameter(name="c")
    layer = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(c * x), [x <= 1]), [c], [x], solver="CLARABEL"
    )
    with pytest.raises(cvxlpgd.SolverError, match="unbounded"):
        layer(torch.tensor(1.0))


def test_unknown_solver_setting_is_named(qp):
    problem, params, x, _, tensors = qp
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x], solver="CLARABEL", solver_args={"not_a_setting": 1}
    )
    with pytest.raises(ValueError, match="not_a_setting"):
        layer(*tensors)
