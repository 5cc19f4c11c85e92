"""The batch engine's fast paths change no result.

Shared factorizations, warm starts across calls and parallel execution are checked
against the plain reference (one workspace per element, cold starts, one thread):
values and gradients agree to solver tolerance, and for any worker count they are
bitwise identical. No timing assertions.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.problem.compile import compile_problem
from cvxlpgd.solvers import PooledSolver, get_backend
from cvxlpgd.solvers.parallel import WarmStartMemory, split
from cvxlpgd.solvers.scs_backend import ScsBackend
from tests import problems

SCS_TIGHT = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}
TAU = 1e-3


def qp_values(params, values, batch_size, batched, seed=0, scale=0.1):
    """Parameter arrays: those named in ``batched`` get a leading batch dimension."""
    rng = np.random.default_rng(seed)
    out = []
    for p in params:
        value = np.asarray(values[p.name()], dtype=float)
        if p.name() in batched:
            value = value + scale * rng.standard_normal((batch_size, *p.shape))
        out.append(value)
    return out


@pytest.fixture(scope="module")
def qp():
    problem, params, x, ineq, eq, values = problems.qp()
    return problem, params, [x, ineq], values


def run_engine(
    template,
    arrays,
    batched_names,
    params,
    batch_size,
    *,
    gradient="lpgd",
    rho=0.0,
    weights_seed=1,
    solver="SCS",
    settings=SCS_TIGHT,
    **engine_options,
):
    """Forward and backward through a BatchEngine: outputs and parameter gradients."""
    engine = BatchEngine(solver, settings, **engine_options)
    theta = template.stack_parameters(arrays, batch_size)
    batch = template.program_data(theta, [p.name() in batched_names for p in params])
    state = engine.forward(
        template, batch, exact_backend="diffcp" if gradient == "exact" else None, exact_mode="dense"
    )
    outputs = template.recover_outputs(state.x, state.y)
    rng = np.random.default_rng(weights_seed)
    weights = [rng.standard_normal(out.shape) for out in outputs]
    dx, dy = template.output_adjoint(weights, batch_size)
    if gradient == "exact":
        grad = engine.backward_exact(state, dx, dy)
    else:
        grad = engine.backward_lpgd(state, dx, dy, tau=TAU, rho=rho, mode="central").gradient
    return outputs, template.parameter_gradient(*grad.parts()), state


# ---- bitwise identical for any worker count -----------------------------------------------


@pytest.mark.parametrize("batched", [("q", "h"), ("G", "q")], ids=["shared-A", "batched-A"])
@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_results_are_bitwise_identical_for_any_worker_count(qp, batched, gradient):
    problem, params, outputs, values = qp
    arrays = qp_values(params, values, 5, batched)
    results = []
    for workers in (1, 2, 3):
        layer = cvxlpgd.CvxpyLayer(
            problem,
            params,
            outputs,
            solver="SCS",
            solver_args=SCS_TIGHT,
            tau=TAU,
            gradient=gradient,
            workers=workers,
        )
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        outs = layer(*tensors)
        sum((o * (k + 1)).sum() for k, o in enumerate(outs)).backward()
        results.append(([o.detach().numpy() for o in outs], [t.grad.numpy() for t in tensors]))
    for outs, grads in results[1:]:
        for a, b in zip(outs + grads, results[0][0] + results[0][1]):
            np.testing.assert_array_equal(a, b)


def test_partition_layout_depends_on_batch_size_only(qp):
    assert [len(r) for r in split(7, 3)] == [3, 2, 2]
    assert [len(r) for r in split(2, 8)] == [1, 1]
    problem, params, outputs, values = qp
    template = compile_problem(problem, params, outputs)
    batch = template.program_data(
        template.stack_parameters(qp_values(params, values, 7, ("q", "h")), 7),
        [p.name() in ("q", "h") for p in params],
    )
    layouts = [
        PooledSolver(ScsBackend(), template.structure, {}, workers=w, partitions=3).layout(batch)
        for w in (1, 4)
    ]
    assert layouts[0] == layouts[1] == (True, split(7, 3))


# ---- the fast paths agree with the reference ----------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5])
@pytest.mark.parametrize("batched", [("q", "h"), ("G", "h")], ids=["shared-A", "batched-A"])
def test_reuse_warm_start_and_parallelism_agree_with_the_reference(qp, rho, batched):
    problem, params, outputs, values = qp
    template = compile_problem(problem, params, outputs)
    B = 6
    arrays = qp_values(params, values, B, batched)
    reference = run_engine(
        template, arrays, batched, params, B, rho=rho, workers=1, share_factorizations=False
    )
    memory = WarmStartMemory()
    # Fill the warm-start memory from a nearby batch, as a previous training step would.
    run_engine(
        template,
        qp_values(params, values, B, batched, seed=0, scale=0.11),
        batched,
        params,
        B,
        rho=rho,
        warm_starts=memory,
    )
    fast = run_engine(
        template, arrays, batched, params, B, rho=rho, workers=2, partitions=2, warm_starts=memory
    )
    assert fast[2].warm_started and not reference[2].warm_started
    assert fast[2].batch.shared_matrices == (batched == ("q", "h"))
    for ref, got in zip(reference[0], fast[0]):
        np.testing.assert_allclose(got, ref, atol=1e-7)
    for ref, got in zip(reference[1], fast[1]):
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4)


def test_exact_path_through_the_engine_agrees_with_the_reference(qp):
    problem, params, outputs, values = qp
    template = compile_problem(problem, params, outputs, quadratic=False)
    arrays = qp_values(params, values, 4, ("q", "h"))
    reference = run_engine(
        template,
        arrays,
        ("q", "h"),
        params,
        4,
        gradient="exact",
        workers=1,
        share_factorizations=False,
    )
    fast = run_engine(
        template, arrays, ("q", "h"), params, 4, gradient="exact", executor=ThreadPoolExecutor(2)
    )
    for ref, got in zip(reference[0] + reference[1], fast[0] + fast[1]):
        np.testing.assert_allclose(got, ref, atol=1e-6)


@pytest.mark.parametrize("solver", ["SCS", "CLARABEL"])
def test_shared_structure_factorizes_once_per_partition(qp, monkeypatch, solver):
    problem, params, outputs, values = qp
    template = compile_problem(problem, params, outputs)
    setups = []
    backend = type(get_backend(solver))
    original = backend.setup

    def counting_setup(self, A, P, cones, settings):
        setups.append(P is not None and P.nnz)
        return original(self, A, P, cones, settings)

    monkeypatch.setattr(backend, "setup", counting_setup)
    arrays = qp_values(params, values, 6, ("q", "h"))
    # The re-solves' workspaces are the subject: no perturbed problem answered from the
    # active set (cvxlpgd.lpgd.active_set).
    engine = BatchEngine(
        solver, SCS_TIGHT if solver == "SCS" else {}, workers=2, partitions=2, active_set=False
    )
    batch = template.program_data(
        template.stack_parameters(arrays, 6), [p.name() in ("q", "h") for p in params]
    )
    assert batch.A_data.strides[0] == 0  # one row, broadcast: A is built once
    state = engine.forward(template, batch)
    assert len(setups) == 2
    dx, dy = template.output_adjoint([np.ones((6, 4)), np.ones((6, 3))], 6)
    first = engine.backward_lpgd(state, dx, dy, tau=TAU, rho=0.0, mode="central")
    assert len(setups) == 2  # ρ = 0: the forward workspaces serve both sides
    second = engine.backward_lpgd(state, dx, dy, tau=TAU, rho=0.0, mode="central")
    # A second pass: Clarabel reuses them again; SCS (whose workspaces carry
    # acceleration memory between solves) replays the forward on fresh ones first, so
    # that the second pass repeats the first bit for bit.
    assert len(setups) == (4 if solver == "SCS" else 2)
    for a, b in zip(first.gradient.parts(), second.gradient.parts()):
        assert a is None or np.array_equal(a, b)
    before = len(setups)
    engine.backward_lpgd(state, dx, dy, tau=TAU, rho=0.5, mode="central")
    assert len(setups) == before + 2  # ρ > 0: one regularized workspace per partition
    setups.clear()
    BatchEngine(solver, share_factorizations=False).forward(template, batch)
    assert len(setups) == 6


def test_program_data_evaluates_shared_matrices_once(qp):
    problem, params, outputs, values = qp
    template = compile_problem(problem, params, outputs)
    arrays = qp_values(params, values, 3, ("q", "h"))
    theta = template.stack_parameters(arrays, 3)
    flags = [p.name() in ("q", "h") for p in params]
    fast = template.program_data(theta, flags)
    full = template.program_data(theta)
    for name in ("c", "b", "A_data", "P_data"):
        np.testing.assert_allclose(getattr(fast, name), getattr(full, name), atol=1e-14)
    assert not fast.A_data.flags.writeable and fast.shared_matrices
    assert full.shared_matrices  # equal rows are recognized too


# ---- warm start across calls --------------------------------------------------------------


def test_warm_start_across_calls_is_used_when_it_applies(qp):
    problem, params, outputs, values = qp
    warm = cvxlpgd.CvxpyLayer(
        problem, params, outputs, solver="SCS", solver_args=SCS_TIGHT, tau=TAU, warm_start=True
    )
    cold = cvxlpgd.CvxpyLayer(
        problem, params, outputs, solver="SCS", solver_args=SCS_TIGHT, tau=TAU
    )
    first = [torch.tensor(a) for a in qp_values(params, values, 4, ("q", "h"), seed=0)]
    second = [
        torch.tensor(a) for a in qp_values(params, values, 4, ("q", "h"), seed=0, scale=0.101)
    ]
    warm(*first)
    assert not warm.solver_stats.warm_started
    # The same values again: every solve starts at its solution and stops at once.
    warm(*first)
    assert warm.solver_stats.warm_started
    assert warm.solver_stats.summary()["forward_iterations"] == 0
    outs = warm(*second)
    assert warm.solver_stats.warm_started
    ref = cold(*second)
    for a, b in zip(outs, ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)
    # A new batch size: the stored solutions do not apply.
    warm(*[torch.tensor(a) for a in qp_values(params, values, 3, ("q", "h"))])
    assert not warm.solver_stats.warm_started


def test_warm_start_applies_to_the_exact_path_too(qp):
    problem, params, outputs, values = qp
    layer = cvxlpgd.CvxpyLayer(
        problem,
        params,
        outputs,
        solver="SCS",
        solver_args=SCS_TIGHT,
        gradient="exact",
        warm_start=True,
    )
    arrays = qp_values(params, values, 3, ("q", "h"))
    results = []
    for _ in range(2):
        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        outs = layer(*tensors)
        sum(o.sum() for o in outs).backward()
        results.append([o.detach() for o in outs] + [t.grad for t in tensors])
    assert layer.solver_stats.warm_started
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_warm_start_is_ignored_by_solvers_without_it():
    problem, params, x, values = problems.scaled_qp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="CLARABEL", warm_start=True)
    tensors = [torch.tensor(values[p.name()]) for p in params]
    first = layer(*tensors)
    second = layer(*tensors)
    assert not layer.solver_stats.warm_started
    torch.testing.assert_close(first[0], second[0])


def test_warm_start_option_is_validated():
    problem, params, x, _ = problems.scaled_qp()
    with pytest.raises(TypeError, match="warm_start"):
        cvxlpgd.CvxpyLayer(problem, params, [x], warm_start="yes")
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        cvxlpgd.CvxpyLayer(problem, params, [x], executor=object())
    with pytest.raises(ValueError, match="workers"):
        cvxlpgd.CvxpyLayer(problem, params, [x], workers=0)


# ---- other solvers and failures ------------------------------------------------------------


def test_clarabel_agrees_with_scs_on_the_batch(qp):
    problem, params, outputs, values = qp
    arrays = [torch.tensor(a) for a in qp_values(params, values, 5, ("q", "h"))]
    results = {}
    for solver, args in (("CLARABEL", {}), ("SCS", SCS_TIGHT)):
        layer = cvxlpgd.CvxpyLayer(
            problem, params, outputs, solver=solver, solver_args=args, tau=TAU
        )
        tensors = [a.clone().requires_grad_(True) for a in arrays]
        outs = layer(*tensors)
        sum(o.sum() for o in outs).backward()
        results[solver] = [o.detach() for o in outs] + [t.grad for t in tensors]
    for a, b in zip(results["CLARABEL"], results["SCS"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_failure_names_the_lowest_failing_batch_index():
    problem, params, x, values = problems.lp()
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS", workers=2)
    b = torch.tensor(values["b"]).repeat(6, 1)
    b[3] = -1.0  # A x ≤ b with x ≥ 0 and A > 0: infeasible
    b[5] = -1.0
    with pytest.raises(cvxlpgd.SolverError) as info:
        layer(torch.tensor(values["c"]), b)
    assert info.value.batch_index == 3 and "infeasible" in str(info.value)


# ---- executors that do not share memory -----------------------------------------------------


@pytest.fixture(scope="module")
def process_pool():
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_process_pool_gives_the_thread_pool_results(qp, process_pool, gradient):
    problem, params, outputs, values = qp
    arrays = [torch.tensor(a) for a in qp_values(params, values, 4, ("q", "h"))]
    results = []
    for executor in (None, process_pool):
        layer = cvxlpgd.CvxpyLayer(
            problem,
            params,
            outputs,
            solver="SCS",
            solver_args=SCS_TIGHT,
            tau=TAU,
            gradient=gradient,
            executor=executor,
        )
        tensors = [a.clone().requires_grad_(True) for a in arrays]
        outs = layer(*tensors)
        sum((o * (k + 1)).sum() for k, o in enumerate(outs)).backward()
        results.append(([o.detach() for o in outs], [t.grad for t in tensors]))
    (outs_t, grads_t), (outs_p, grads_p) = results
    for a, b in zip(outs_t, outs_p):  # same partitions, fresh workspaces: same bits
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # The processes keep no workspace from the upper side for the lower side: the
    # same re-solves, histories differing by one solve (solver round-off apart).
    for a, b in zip(grads_t, grads_p):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
