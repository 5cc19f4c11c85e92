"""One status policy for every solve (forward, LPGD sides, exact path; every solver).

Failures raise SolverError naming status, batch index and side; inaccurate solutions
warn once per call (or raise with inaccurate="raise"); LPGD falls back (other side,
then smaller τ) before it fails; nothing non-finite leaves the layer.
"""

import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd

ALL = ["MOREAU", "SCS", "CLARABEL", "ECOS"]


def interval_layer(solver, gradient="lpgd"):
    """min x s.t. x ≥ lo, x ≤ hi: infeasible when lo > hi."""
    x = cp.Variable(name="x")
    lo, hi = cp.Parameter(name="lo"), cp.Parameter(name="hi")
    problem = cp.Problem(cp.Minimize(x), [x >= lo, x <= hi])
    return cvxlpgd.CvxpyLayer(problem, [lo, hi], [x], solver=solver, gradient=gradient)


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
@pytest.mark.parametrize("solver", ALL)
def test_infeasible_element_raises_with_status_and_index_on_every_path(solver, gradient):
    layer = interval_layer(solver, gradient)
    lo = torch.tensor([0.0, 2.0, 0.0], requires_grad=True)  # element 1: x ≥ 2, x ≤ 1
    hi = torch.tensor([1.0, 1.0, 1.0])
    with pytest.raises(cvxlpgd.SolverError, match="infeasible.* batch index 1") as info:
        layer(lo, hi)
    assert info.value.batch_index == 1 and "infeasible" in info.value.status


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
@pytest.mark.parametrize("solver", ALL)
def test_unbounded_element_raises_on_every_path(solver, gradient):
    x = cp.Variable(name="x")
    c = cp.Parameter(name="c")
    layer = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(c * x), [x >= 0]), [c], [x], solver=solver, gradient=gradient
    )
    with pytest.raises(cvxlpgd.SolverError, match="unbounded.* batch index 2") as info:
        layer(torch.tensor([1.0, 2.0, -1.0], requires_grad=True))
    assert info.value.batch_index == 2


@pytest.mark.parametrize(
    "solver, settings",
    [("CLARABEL", {"max_iter": 2}), ("MOREAU", {"max_iter": 2}), ("ECOS", {"max_iters": 2})],
)
@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_iteration_limit_of_an_interior_point_method_is_never_silent(solver, settings, gradient):
    """Its last iterate is "inaccurate" (a warning) or, where it violates the
    constraints, a failure; inaccurate="raise" makes either an error."""
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z) + cp.norm(x, 1)), [cp.sum(x) == 1])
    value = torch.tensor([[0.3, -2.0, 5.0]], requires_grad=True)
    layer = cvxlpgd.CvxpyLayer(
        problem, [z], [x], solver=solver, solver_args=settings, gradient=gradient
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            layer(value)
        except cvxlpgd.SolverError as error:
            assert error.batch_index == 0
        else:
            assert any(issubclass(w.category, cvxlpgd.InaccurateSolutionWarning) for w in caught)
            assert layer.solver_stats.inaccurate == [0]
    strict = cvxlpgd.CvxpyLayer(
        problem,
        [z],
        [x],
        solver=solver,
        solver_args=settings,
        gradient=gradient,
        inaccurate="raise",
    )
    with pytest.raises(cvxlpgd.SolverError, match="batch index 0"):
        strict(value)


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_scs_iteration_limit_warns_and_marks_the_stats(gradient):
    x = cp.Variable(3, name="x")
    z = cp.Parameter(3, name="z")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [cp.sum(x) == 1, x >= 0])
    layer = cvxlpgd.CvxpyLayer(
        problem, [z], [x], solver="SCS", gradient=gradient, solver_args={"max_iters": 65}
    )
    z_value = torch.tensor([[0.3, -2.0, 5.0], [0.1, 0.2, 0.3]], requires_grad=True)
    # 65 iterations: close, not converged; 25: a point that violates the constraints.
    with pytest.raises(cvxlpgd.SolverError, match="'failed' at batch index 0"):
        cvxlpgd.CvxpyLayer(
            problem, [z], [x], solver="SCS", gradient=gradient, solver_args={"max_iters": 25}
        )(z_value)
    with pytest.warns(cvxlpgd.InaccurateSolutionWarning, match="batch index 0 .*inaccurate"):
        (out,) = layer(z_value)
    assert 0 in layer.solver_stats.inaccurate
    strict = cvxlpgd.CvxpyLayer(
        problem,
        [z],
        [x],
        solver="SCS",
        gradient=gradient,
        solver_args={"max_iters": 65},
        inaccurate="raise",
    )
    with pytest.raises(cvxlpgd.SolverError, match="inaccurate='raise'"):
        strict(z_value)


@pytest.mark.parametrize("scale", [1e20, 1e154, 1e200])
@pytest.mark.parametrize("solver", ["SCS", "CLARABEL", "MOREAU"])
def test_huge_costs_never_give_silent_garbage(solver, scale):
    x = cp.Variable(2, name="x")
    c = cp.Parameter(2, name="c")
    layer = cvxlpgd.CvxpyLayer(
        cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == 1, x >= 0]), [c], [x], solver=solver
    )
    c_value = torch.tensor([scale, 1.0], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cvxlpgd.InaccurateSolutionWarning)
        try:
            (out,) = layer(c_value)
            out.sum().backward()
        except (cvxlpgd.SolverError, cvxlpgd.InaccurateSolutionWarning):
            return  # refused, loudly: fine
    # Accepted without a word: then it must be right (x = e₂) and finite.
    np.testing.assert_allclose(out.detach().numpy(), [0.0, 1.0], atol=1e-5)
    assert torch.isfinite(c_value.grad).all()


def test_lpgd_falls_back_to_the_side_that_solves_and_says_so():
    """Lower side at τ = 5: c − τ·1 < 0 makes the LP unbounded; the upper side is used."""
    x = cp.Variable(2, name="x")
    c = cp.Parameter(2, name="c")
    problem = cp.Problem(cp.Minimize(c @ x), [x >= 0])
    c_value = torch.tensor([[1.0, 2.0], [10.0, 10.0]], requires_grad=True)
    for mode in ("central", "lower"):
        layer = cvxlpgd.CvxpyLayer(problem, [c], [x], solver="CLARABEL", tau=5.0, lpgd_mode=mode)
        c_value.grad = None
        (x_star,) = layer(c_value)
        with pytest.warns(cvxlpgd.LPGDFallbackWarning, match=r"0: upper only, tau=5"):
            x_star.sum().backward()
        # Element 0: x* = 0; upper problem min (c + 5)ᵀx has x₊ = 0 too: zero gradient
        # from the upper difference (G₊ − G*)/τ, in c: (x₊ − x*)/τ = 0.
        assert layer.solver_stats.fallbacks == {0: "upper only, tau=5"}
        assert c_value.grad[0].abs().max() < 1e-6
        assert torch.isfinite(c_value.grad).all()


def test_lpgd_fails_only_when_no_fallback_solves():
    """x ≥ 0, x ≤ 0 twice, and a dual output whose incoming gradient tightens every row
    on both sides: every perturbed problem is infeasible at every τ."""
    x = cp.Variable(name="x")
    a = cp.Parameter(name="a")
    cons = [x >= 0, x <= 0, x >= 0, x <= 0]
    layer = cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(a * x), cons), [a], cons, solver="CLARABEL")
    outs = layer(torch.tensor(1.0, requires_grad=True))
    loss = outs[0] + outs[1] - outs[2] - outs[3]
    with pytest.raises(cvxlpgd.SolverError, match="infeasible.* also with .* tau down to") as info:
        loss.backward()
    assert info.value.batch_index == 0 and info.value.side in ("upper", "lower")


def test_cvxpylayers_readme_example_trains_with_all_defaults():
    """cvxpylayers' README example, unchanged but for the import, default options."""
    n, m = 2, 3
    x = cp.Variable(n)
    A = cp.Parameter((m, n))
    b = cp.Parameter(m)
    constraints = [x >= 0]
    objective = cp.Minimize(0.5 * cp.pnorm(A @ x - b, p=1))
    problem = cp.Problem(objective, constraints)
    assert problem.is_dpp()
    layer = cvxlpgd.CvxpyLayer(problem, parameters=[A, b], variables=[x])
    torch.manual_seed(0)
    A_tch = torch.randn(m, n, requires_grad=True)
    b_tch = torch.randn(m, requires_grad=True)
    optimizer = torch.optim.Adam([A_tch, b_tch], lr=0.1)
    for _ in range(20):
        A_batch = A_tch + 0.5 * torch.randn(16, m, n)
        b_batch = b_tch + 0.5 * torch.randn(16, m)
        (solution,) = layer(A_batch, b_batch)
        optimizer.zero_grad()
        solution.sum().backward()
        assert torch.isfinite(A_tch.grad).all() and torch.isfinite(b_tch.grad).all()
        optimizer.step()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "own matrices"])
def test_residuals_are_the_same_on_every_product_path(shared, monkeypatch):
    """verify's residuals from dense shared matrices, one sparse matrix, and per-entry
    products agree (the path depends only on sizes), on a point that is not optimal."""
    from cvxlpgd.engine import status
    from cvxlpgd.problem import program
    from cvxlpgd.problem.compile import compile_problem
    from cvxlpgd.solvers.base import OPTIMAL, BatchSolution

    rng = np.random.default_rng(0)
    n, m, B = 6, 9, 5
    x, q, h = cp.Variable(n), cp.Parameter(n), cp.Parameter(m)
    G = cp.Parameter((m, n)) if not shared else rng.standard_normal((m, n))
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x) + q @ x), [G @ x <= h])
    params = [q, h] + ([] if shared else [G])
    template = compile_problem(problem, params, [x])
    values = [rng.standard_normal((B, n)), rng.standard_normal((B, m))]
    if not shared:
        values.append(rng.standard_normal((B, m, n)))
    results = []
    for dense_limit, product_limit in ((1 << 18, 1 << 20), (0, 0), (0, 1 << 20)):
        monkeypatch.setattr(program, "SHARED_DENSE_ENTRIES", dense_limit)
        monkeypatch.setattr(status, "SHARED_PRODUCT_ENTRIES", product_limit)
        batch = template.program_data(template.stack_parameters(values, B), [True] * len(values))
        size = template.structure
        point = BatchSolution(
            rng.standard_normal((B, size.n)) if not results else results[0][3][0],
            rng.standard_normal((B, size.m)) if not results else results[0][3][1],
            rng.standard_normal((B, size.m)) if not results else results[0][3][2],
            [OPTIMAL] * B,
            np.zeros(B, np.int64),
            np.zeros(B),
            "test",
        )
        results.append((*status.residuals(point, batch, size), point.point))
    for other in results[1:]:
        for a, b in zip(results[0][:3], other[:3]):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    assert results[0][0].min() > 1e-3  # a random point: the residuals are not all zero
