"""Once autograd has released a call's graph, the layer keeps nothing of the batch alive
beyond solver_stats (O(B) records) and, with warm_start=True, the solution (O(B·(n+m)))."""

import gc
import tracemalloc
import weakref

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from cvxlpgd.engine.runtime import KEEP_WORKSPACE_NUMBERS

N, M = 10, 15


def batched_qp_layer(**options):
    x = cp.Variable(N, name="x")
    c = cp.Parameter(N, name="c")
    G = cp.Parameter((M, N), name="G")
    h = cp.Parameter(M, name="h")
    problem = cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [G @ x <= h])
    return cvxlpgd.CvxpyLayer(problem, [c, G, h], [x], **options)


def batch(B, seed=0):
    rng = np.random.default_rng(seed)
    return (
        torch.tensor(rng.standard_normal((B, N)), requires_grad=True),
        torch.tensor(rng.standard_normal((B, M, N)), requires_grad=True),
        torch.ones(M, dtype=torch.float64, requires_grad=True),
    )


def live_solvers(layer):
    """Weak references to the solvers the layer's live calls use."""
    return [weakref.ref(live.state.solver) for live in layer._runtime.live.values()]


@pytest.mark.parametrize("warm_start", [False, True])
def test_a_large_batch_is_released_with_its_graph(warm_start):
    layer = batched_qp_layer(solver="MOREAU", warm_start=warm_start)
    layer(*batch(4))[0].sum().backward()  # imports, compiled templates: not batch memory
    B = 20000
    tensors = batch(B)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    (x,) = layer(*tensors)
    assert len(layer._runtime.live) == 1  # the graph holds the forward state ...
    solvers = live_solvers(layer)
    x.sum().backward()
    del x, tensors  # the caller's tensors and their .grad
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert layer._runtime.live == {}  # ... and drops it with the graph
    # Moreau's compiled solver for B (C++ memory tracemalloc does not see) is gone too.
    assert all(ref() is None for ref in solvers)
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    solution_bytes = B * (N + 2 * M) * 8  # x, y, s: what warm starts need
    stats_bytes = B * 600  # solver_stats: 3 records per element
    bound = stats_bytes + (solution_bytes if warm_start else 0) + 2**20
    assert held < bound, f"{held / 2**20:.1f} MiB held after the graph is gone"
    assert len(layer.solver_stats.forward) == B


def test_a_call_whose_outputs_are_dropped_without_backward_is_forgotten():
    layer = batched_qp_layer(solver="SCS")
    (x,) = layer(*batch(3))
    assert len(layer._runtime.live) == 1
    del x
    gc.collect()
    assert layer._runtime.live == {}


def test_small_batches_keep_their_solver_for_the_next_call():
    layer = batched_qp_layer(solver="MOREAU")
    B = 8
    assert B * (N + M + M * N) <= KEEP_WORKSPACE_NUMBERS
    layer(*batch(B))[0].sum().backward()
    (cached,) = [
        entry[-1]
        for entry in layer._runtime.engines["cpu"]._solvers.values()
        if hasattr(entry[-1], "solve")
    ]
    layer(*batch(B, seed=1))[0].sum().backward()
    assert [
        entry[-1]
        for entry in layer._runtime.engines["cpu"]._solvers.values()
        if hasattr(entry[-1], "solve")
    ] == [cached]
