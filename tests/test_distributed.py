"""A batch through a real dask.distributed cluster gives the thread pool's results.

The cluster's workers are separate processes: they receive the engine's tasks as
pickled plain data (module-level functions, :class:`cvxlpgd.engine.batch.Structure`,
:class:`cvxlpgd.engine.batch.Columns`), set up their own solver workspaces, and the
backward pass re-solves warm-started from the forward solution.
"""

import numpy as np
import pytest
import torch

import cvxlpgd
from tests import problems

distributed = pytest.importorskip("distributed")

SCS_TIGHT = {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}


@pytest.fixture(scope="module")
def dask_executor():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client.get_executor()


def run(layer, arrays):
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    outputs = layer(*tensors)
    sum((o * (k + 1)).sum() for k, o in enumerate(outputs)).backward()
    return [o.detach() for o in outputs], [t.grad for t in tensors]


@pytest.mark.parametrize("batched", [("q", "h"), ("G", "q")], ids=["shared-A", "batched-A"])
@pytest.mark.parametrize("gradient", ["lpgd", "exact"])
def test_dask_cluster_gives_the_thread_pool_results(dask_executor, gradient, batched):
    problem, params, x, ineq, _, values = problems.qp()
    rng = np.random.default_rng(7)
    arrays = [
        values[p.name()]
        + (0.1 * rng.standard_normal((5, *p.shape)) if p.name() in batched else 0.0)
        for p in params
    ]
    results = {}
    for name, executor in (("threads", None), ("dask", dask_executor)):
        layer = cvxlpgd.CvxpyLayer(
            problem,
            params,
            [x, ineq],
            solver="SCS",
            solver_args=SCS_TIGHT,
            tau=1e-3,
            gradient=gradient,
            executor=executor,
        )
        results[name] = run(layer, arrays)
    (outs_t, grads_t), (outs_d, grads_d) = results["threads"], results["dask"]
    for a, b in zip(outs_t, outs_d):  # same partitions, fresh workspaces: same bits
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    # The workers keep no workspace from the upper side for the lower side: the same
    # re-solves, histories differing by one solve (solver round-off apart).
    for a, b in zip(grads_t, grads_d):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
