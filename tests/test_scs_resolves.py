"""SCS's LPGD re-solves: the tolerance they run at, what they cost against the forward,
and how accurate their gradient is (docs/benchmarks.md, "SCS re-solves").

The re-solves run on the forward's workspace (its factorization), warm-started from the
forward solution, at the forward's tolerance: SCS cannot change its tolerance between
solves of one workspace, and a τ-tightened tolerance would cost a second factorization
and more iterations without a more useful gradient (the measurements are on the page).
"""

import inspect

import cvxpy as cp
import diffcp
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import cvxlpgd
from benchmarks import problems
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.tolerances import call_tolerances
from cvxlpgd.solvers.scs_backend import DEFAULT_SETTINGS, ScsBackend, scs_settings
from tests.reference import TIGHT_CLARABEL, relative_error

#: Re-solve the perturbed problems with SCS even where the forward's active set would
#: answer them (the prediction of cvxlpgd.lpgd.active_set, where this checkout has it).
NO_PREDICTION = (
    {"active_set": False}
    if "active_set" in inspect.signature(cvxlpgd.CvxpyLayer).parameters
    else {}
)


def lasso_gradient(case, value, weights, **options):
    layer = cvxlpgd.CvxpyLayer(case.problem, case.parameters, case.outputs, **options)
    y = torch.tensor(value, requires_grad=True)
    (x,) = layer(y)
    (torch.as_tensor(weights) * x).sum().backward()
    return y.grad.numpy(), layer.solver_stats


@pytest.mark.parametrize("tau", [1.0, 1e-1, 1e-2, 1e-4, 1e-6])
def test_scs_lpgd_calls_run_at_the_forward_tolerance_for_every_tau(tau):
    """No τ-tightening for SCS: an LPGD call's settings are those of a call without a
    backward pass, so the re-solves share the forward's workspace and tolerance."""
    assert call_tolerances("SCS", tau, None) == call_tolerances("SCS", None, None) == {}
    engine = BatchEngine(solver="SCS")
    settings = engine.call_settings("SCS", {}, tau, None)
    assert settings == engine.call_settings("SCS", {}, None, None)
    assert ScsBackend.tolerance(settings) == DEFAULT_SETTINGS["eps_abs"] == 1e-7
    assert scs_settings(settings)["eps_rel"] == 1e-7


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scs_resolves_cost_less_than_the_forward_on_a_lasso(seed):
    """Lasso, τ = 0.01, W ~ N(0, I): each warm-started re-solve takes fewer iterations than
    the cold forward, both together at most 1.5 times as many (measured: 125 to 150
    forward, 75 to 100 per side)."""
    case = problems.lasso(n=100, m=60)
    weights = np.random.default_rng(10 + seed).standard_normal(100)
    _, stats = lasso_gradient(
        case, case.values(1, seed)[0][0], weights, solver="SCS", tau=0.01, **NO_PREDICTION
    )
    forward = stats.forward[0].iterations
    sides = [stats.backward[0][side].iterations for side in ("upper", "lower")]
    assert all(record.solver == "SCS" for record in stats.backward[0].values())
    assert all(0 < it <= forward for it in sides), (forward, sides)
    assert sum(sides) <= 1.5 * forward, (forward, sides)


@pytest.fixture(scope="module")
def small_lasso():
    """A lasso whose solution has nonzeros (λ = 0.05: at 0.5 the n = 60 lasso's x is 0)."""
    case = problems.lasso(n=60, m=40, lam=0.05)
    value = case.values(1, 0)[0][0]
    weights = np.random.default_rng(7).standard_normal(60)
    exact, _ = lasso_gradient(
        case, value, weights, gradient="exact", solver="CLARABEL", solver_args=TIGHT_CLARABEL
    )
    return case, value, weights, exact


def test_scs_lpgd_at_small_tau_matches_the_exact_gradient(small_lasso):
    """At the default SCS tolerance, τ = 1e-3 (no active-set change within ±τ here):
    measured 1.2e-6 from Clarabel's exact derivative."""
    case, value, weights, exact = small_lasso
    lpgd, stats = lasso_gradient(case, value, weights, solver="SCS", tau=1e-3, **NO_PREDICTION)
    assert stats.solver == "SCS"
    assert relative_error(lpgd, exact) < 1e-4


def test_scs_lpgd_matches_lpgd_with_tight_re_solves(small_lasso):
    """At τ = 0.01 the active set changes, so LPGD is not the exact gradient (43 % off
    here); SCS's default re-solves give the LPGD gradient of re-solves at 1e-9
    (Clarabel) to 2e-4."""
    case, value, weights, exact = small_lasso
    ours, _ = lasso_gradient(case, value, weights, solver="SCS", tau=1e-2, **NO_PREDICTION)
    tight, _ = lasso_gradient(
        case,
        value,
        weights,
        solver="CLARABEL",
        tau=1e-2,
        solver_args=TIGHT_CLARABEL,
        **NO_PREDICTION,
    )
    assert relative_error(tight, exact) > 0.1  # a finite-τ gradient: the check has teeth
    assert relative_error(ours, tight) < 1e-3


def test_scs_lpgd_matches_diffcps_lpgd(small_lasso):
    """diffcp's own LPGD (diffcp.solve_and_derivative(..., mode="lpgd"): SCS per side, a
    new factorization each) on CVXPY's conic form of the same lasso (the quadratic as a
    second-order cone), mapped to the parameter by CVXPY: the same gradient, because
    LPGD's is the derivative of the perturbed problems' optimal values, whatever the
    form."""
    case, value, weights, _ = small_lasso
    (y,) = case.parameters
    y.value = value
    data, _, _ = case.problem.get_problem_data(cp.SCS, solver_opts={"use_quad_obj": False})
    program = data["param_prob"]
    dims = data["dims"]
    cones = {"z": dims.zero, "l": dims.nonneg, "q": list(dims.soc)}
    _, _, _, _, adjoint = diffcp.solve_and_derivative(
        sp.csc_matrix(data["A"]),
        data["b"],
        data["c"],
        cones,
        mode="lpgd",
        solve_method="SCS",
        eps_abs=1e-9,
        eps_rel=1e-9,
        max_iters=100_000,
    )
    dx = np.zeros(data["c"].size)
    start = program.var_id_to_col[case.outputs[0].id]
    dx[start : start + 60] = weights
    zero = np.zeros(data["b"].size)
    for tau in (1e-2, 1e-3):
        dA, db, dc = adjoint(dx, zero, zero, tau=tau, rho=0.0)
        theirs = program.apply_param_jac(dc, -dA, db)[y.id]
        ours, _ = lasso_gradient(case, value, weights, solver="SCS", tau=tau, **NO_PREDICTION)
        assert relative_error(ours, theirs) < 1e-3, tau
