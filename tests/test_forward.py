"""Forward solutions of the layer equal CVXPY's own solve, batched and unbatched."""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from tests import problems

TIGHT = {
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    "CLARABEL": {},
    "MOREAU": {},
}


def reference(problem, params, values, outputs):
    problems.assign(params, values)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return [o.value if isinstance(o, cp.Variable) else o.dual_value for o in outputs]


CASES = {
    "lp": lambda: (*problems.lp()[:3], problems.lp()[3]),
    "qp": lambda: (lambda t: (t[0], t[1], t[2], t[5]))(problems.qp()),
    "socp": lambda: problems.socp(),
    "sdp": lambda: (lambda t: (t[0], t[1], t[2], t[4]))(problems.sdp()),
    "exp": lambda: problems.exp_cone(),
}


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "MOREAU"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_unbatched_forward_matches_cvxpy(case, solver):
    problem, params, var, values = CASES[case]()
    layer = cvxlpgd.CvxpyLayer(problem, params, [var], solver=solver, solver_args=TIGHT[solver])
    (out,) = layer(*[torch.tensor(values[p.name()]) for p in params])
    (expected,) = reference(problem, params, values, [var])
    assert out.shape == tuple(var.shape)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("solver", ["CLARABEL", "MOREAU"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_forward_matches_cvxpy_per_element(case, solver):
    problem, params, var, values = CASES[case]()
    rng = np.random.default_rng(7)
    B = 3
    first = params[0]
    batch = np.stack([values[first.name()] * (1 + 0.2 * rng.standard_normal()) for _ in range(B)])
    if first.attributes.get("symmetric"):
        batch = 0.5 * (batch + np.swapaxes(batch, 1, 2))
    tensors = [torch.tensor(batch)] + [torch.tensor(values[p.name()]) for p in params[1:]]
    layer = cvxlpgd.CvxpyLayer(problem, params, [var], solver=solver)
    (out,) = layer(*tensors)
    assert out.shape == (B, *var.shape)
    for i in range(B):
        (expected,) = reference(problem, params, {**values, first.name(): batch[i]}, [var])
        np.testing.assert_allclose(out[i].numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("solver", ["CLARABEL", "MOREAU"])
def test_dual_outputs_match_cvxpy(solver):
    problem, params, x, ineq, eq, values = problems.qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x, ineq, eq], solver=solver)
    outs = layer(*[torch.tensor(values[p.name()]) for p in params])
    expected = reference(problem, params, values, [x, ineq, eq])
    assert np.max(np.abs(expected[1])) > 1e-3  # an active inequality: the check has teeth
    for out, ref in zip(outs, expected):
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)


@pytest.mark.parametrize("solver", ["CLARABEL", "MOREAU"])
def test_dual_of_scalar_inequality_through_a_norm_matches_cvxpy(solver):
    problem, params, x, values = problems.socp()
    norm_bound = problem.constraints[0]  # ‖x‖₂ ≤ r: canonicalized to t ≤ r plus an SOC
    layer = cvxlpgd.CvxpyLayer(problem, params, [norm_bound], solver=solver)
    (dual,) = layer(*[torch.tensor(values[p.name()]) for p in params])
    (expected,) = reference(problem, params, values, [norm_bound])
    assert dual.shape == () and expected > 1e-2
    np.testing.assert_allclose(dual.numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("solver", ["CLARABEL", "MOREAU"])
def test_psd_dual_and_symmetric_variable_match_cvxpy(solver):
    problem, params, X, psd, values = problems.sdp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [X, psd], solver=solver)
    X_out, Y_out = layer(torch.tensor(values["C"]))
    X_ref, Y_ref = reference(problem, params, values, [X, psd])
    assert np.max(np.abs(Y_ref - np.diag(np.diag(Y_ref)))) > 1e-3  # off-diagonal duals matter
    # SDPs are solved to ~1e-6 relative accuracy by interior-point defaults.
    np.testing.assert_allclose(X_out.numpy(), X_ref, atol=2e-5)
    np.testing.assert_allclose(Y_out.numpy(), Y_ref, atol=2e-5)


def test_outputs_keep_dtype_and_batch_convention():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL")
    a, q, lo = (torch.tensor(values[p.name()], dtype=torch.float32) for p in params)
    (out,) = layer(a, q, lo)
    assert out.dtype == torch.float32 and out.shape == (3,)
    (out,) = layer(a, q.unsqueeze(0), lo)
    assert out.dtype == torch.float32 and out.shape == (1, 3)
    (out64,) = layer(a.double(), q, lo)
    assert out64.dtype == torch.float64
