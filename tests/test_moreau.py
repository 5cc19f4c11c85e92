"""Moreau as the batch engine and solver="auto": batched = loop, LPGD = the other
solvers' LPGD, the choice of "auto", and the device fallback (no GPU needed)."""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
import cvxlpgd.engine.selection
import cvxlpgd.solvers.moreau_settings
from cvxlpgd.engine.selection import LARGE_PROBLEM_NONZEROS, choose_solver
from cvxlpgd.engine.status import verify
from cvxlpgd.problem.compile import compile_problem
from cvxlpgd.solvers import batch_solver, solve_cone_program
from tests import problems
from tests.reference import relative_error

TIGHT = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def optnet(n=6, m=5, B=5, seed=0):
    """½‖x‖² + qᵀx s.t. Gx ≤ h with G batched: every element has its own A."""
    x = cp.Variable(n, name="x")
    q, G, h = cp.Parameter(n, name="q"), cp.Parameter((m, n), name="G"), cp.Parameter(m, name="h")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h])
    rng = np.random.default_rng(seed)
    Gv = rng.standard_normal((B, m, n))
    hv = np.einsum("bmn,bn->bm", Gv, rng.standard_normal((B, n))) + rng.uniform(0.1, 1, (B, m))
    return problem, [q, G, h], x, [rng.standard_normal((B, n)) * 3, Gv, hv]


@pytest.mark.parametrize("settings", [{}, {"solver": "ipm"}], ids=["auto", "ipm"])
def test_one_batched_call_equals_a_loop_of_single_solves(settings):
    problem, params, x, values = optnet()
    template = compile_problem(problem, params, [x])
    batch = template.program_data(template.stack_parameters(values, 5), [True] * 3)
    assert not batch.shared_matrices
    together = batch_solver("MOREAU", template.structure, settings).solve(batch)
    for i in range(5):
        A, P = batch.element_matrices(template.structure, i)
        alone = solve_cone_program(
            A, batch.b[i], batch.c[i], template.cones, P=P, solver="MOREAU", settings=settings
        )
        np.testing.assert_allclose(together.x[i], alone.x, atol=1e-9)
        np.testing.assert_allclose(together.y[i], alone.y, atol=1e-9)
    assert together.status == ["optimal"] * 5


@pytest.mark.parametrize("case", ["qp", "socp", "exp"])
def test_lpgd_with_moreau_equals_lpgd_with_clarabel(case):
    if case == "qp":
        problem, params, x, _, _, values = problems.qp()
    elif case == "socp":
        problem, params, x, values = problems.socp()
    else:
        problem, params, x, values = problems.exp_cone()
    rng = np.random.default_rng(3)
    arrays = [
        values[p.name()] + 0.05 * rng.standard_normal((3, *np.shape(values[p.name()])))
        for p in params[:1]
    ] + [values[p.name()] for p in params[1:]]
    weights = torch.tensor(rng.standard_normal((3, *x.shape)))
    grads = {}
    for solver in ("MOREAU", "CLARABEL"):
        layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver=solver, tau=0.05, solver_args=TIGHT)
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        (out,) = layer(*tensors)
        (weights * out).sum().backward()
        grads[solver] = np.concatenate([t.grad.numpy().ravel() for t in tensors])
        assert layer.solver_stats.solver == solver
    assert np.linalg.norm(grads["CLARABEL"]) > 1e-2
    assert relative_error(grads["MOREAU"], grads["CLARABEL"]) < 1e-4


def test_auto_chooses_moreau_for_batches_and_scs_for_one_large_problem(monkeypatch):
    problem, params, x, _, _, _ = problems.qp()
    structure = compile_problem(problem, params, [x]).structure
    assert choose_solver(structure, 64)[0] == "MOREAU"
    assert choose_solver(structure, 1)[0] == "MOREAU"  # small: Moreau even alone
    D = np.random.default_rng(0).standard_normal((100, 200))  # 20 000 nonzeros
    y = cp.Parameter(100, name="y")
    z = cp.Variable(200, name="z")
    lasso = cp.Problem(cp.Minimize(cp.sum_squares(D @ z - y) + cp.norm1(z)))
    large = compile_problem(lasso, [y], [z]).structure
    assert large.A_pattern.nnz >= LARGE_PROBLEM_NONZEROS
    name, reason = choose_solver(large, 1)
    assert name == "SCS" and "a large problem" in reason
    assert choose_solver(large, 8)[0] == "SCS"  # one factorization serves the batch
    assert choose_solver(large, 8, shared_matrices=False)[0] == "MOREAU"
    assert choose_solver(structure, 64, executor=True)[0] == "SCS"
    monkeypatch.setattr(cvxlpgd.engine.selection, "moreau_available", lambda: False)
    assert choose_solver(structure, 64) == ("SCS", "Moreau is not installed")


def test_the_layer_reports_what_auto_chose():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x])
    assert "solver='auto'" in repr(layer)
    layer(*[torch.tensor(values[p.name()]) for p in params])
    assert layer.solver_stats.solver == "MOREAU"
    assert "solver='auto (last call: MOREAU)'" in repr(layer)


def test_solver_args_per_solver_under_auto():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x], solver_args={"SCS": {"eps": 1e-3}, "MOREAU": {"max_iter": 1}}
    )
    # Moreau gets its own settings (one iteration: not solved), so the element falls back
    # to Clarabel (its defaults), not to SCS (whose loose settings are not applied).
    with pytest.warns(cvxlpgd.SolverFallbackWarning, match="batch index 0 .*→ CLARABEL"):
        layer(*[torch.tensor(values[p.name()]) for p in params])
    assert layer.solver_stats.solver == "MOREAU"
    assert layer.solver_stats.forward[0].solver == "CLARABEL"
    assert layer.solver_stats.solver_fallbacks == {0: "CLARABEL"}
    strict = cvxlpgd.CvxpyLayer(problem, params, [x], solver="MOREAU", solver_args={"max_iter": 1})
    with pytest.raises(cvxlpgd.SolverError, match="MOREAU returned status 'failed'"):
        strict(*[torch.tensor(values[p.name()]) for p in params])


def test_unknown_moreau_setting_is_named():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="MOREAU", solver_args={"eps_abs": 1e-3})
    with pytest.raises(ValueError, match="unknown Moreau setting.*eps_abs"):
        layer(*[torch.tensor(values[p.name()]) for p in params])


def test_cuda_inputs_without_a_cuda_solver_fall_back_to_the_cpu_once(monkeypatch):
    import cvxlpgd.torch.layer

    problem, params, x, _ = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x])
    monkeypatch.setattr(cvxlpgd.torch.layer, "moreau_devices", lambda: ["cpu"])
    with pytest.warns(RuntimeWarning, match="solved on the CPU"):
        engine = layer._engine(torch.device("cuda", 0))
    assert engine.device == "cpu"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer._engine(torch.device("cuda", 0)) is engine  # said once
    monkeypatch.setattr(cvxlpgd.torch.layer, "moreau_devices", lambda: ["cpu", "cuda"])
    assert layer._engine(torch.device("cuda", 0)).device == "cuda"
    scs = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS")
    with pytest.warns(RuntimeWarning, match="SCS has no CUDA backend"):
        assert scs._engine(torch.device("cuda", 0)).device == "cpu"


def test_an_active_set_failure_is_solved_again_by_the_interior_point_method():
    """A 260-variable lasso QP: Moreau's active-set method (its choice for small QPs)
    stops at its iteration limit; the layer solves that element with the interior-point
    method instead of failing."""
    rng = np.random.default_rng(2)
    D = rng.standard_normal((60, 100)) / np.sqrt(60)
    x = cp.Variable(100, name="x")
    y = cp.Parameter(60, name="y")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(D @ x - y) + 0.5 * cp.norm1(x)))
    template = compile_problem(problem, [y], [x])
    values = [D @ np.where(rng.uniform(size=100) < 0.05, 1.0, 0.0) + 0.05 * rng.standard_normal(60)]
    batch = template.program_data(template.stack_parameters(values, 1))
    assert cvxlpgd.solvers.moreau_settings.uses_active_set(template.structure, {})
    raw = template.structure
    import moreau

    active = batch_solver("MOREAU", raw, {"solver": "active_set"}).solve(batch)
    # The active-set method alone stops at its iteration limit: its last iterate is
    # returned as inaccurate, and the checks do not take it for a solution.
    assert active.status == ["optimal_inaccurate"]
    assert verify(active, batch, raw, 1e-8).status != ["optimal"]
    solved = batch_solver("MOREAU", raw, {}).solve(batch)
    assert solved.status == ["optimal"] and moreau is not None
    reference = batch_solver("MOREAU", raw, {"solver": "ipm"}).solve(batch)
    np.testing.assert_allclose(solved.x, reference.x, atol=1e-8)
