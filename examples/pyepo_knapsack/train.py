"""PyEPO's 2-dimensional knapsack benchmark: cvxlpgd LPGD against PyEPO's methods.

Run ``python -m examples.pyepo_knapsack.train`` (full sizes below) or ``--quick``;
``--help`` lists options (the same as the shortest path's, whose training loop,
:class:`examples.pyepo_shortest_path.train.Benchmark`, this task reuses).

Protocol
    The shortest path's (1000 training, 200 validation and 1000 test instances per
    degree and seed, 10 epochs, Adam lr 0.01, batch 32, the same initial model and
    minibatch order for every method of a (degree, seed); a scanned method's τ chosen
    on validation regret), on PyEPO's knapsack (:mod:`examples.pyepo_knapsack.problem`):
    32 items, 2 dimensions, capacity 20, 5 features, noise half-width 0.5. Every PyEPO
    method solves the integer knapsack in every step, DPO and PFYL ten times per
    instance, with OR-Tools' knapsack branch and bound
    (:mod:`examples.pyepo_knapsack.oracle`).
Metric
    Normalized regret ``Σ_i (z*_i − c_iᵀ w(ĉ_i)) / Σ_i |z*_i|`` on the test set, by
    ``pyepo.metric.regret`` with the *integer* oracle for every method: LPGD
    trains through the LP relaxation, but its decision is the integer knapsack's.
"""

from __future__ import annotations

import functools

from examples.pyepo_knapsack.problem import knapsack_lp, make_splits, oracle, weights
from examples.pyepo_shortest_path import train as shared

EXPERIMENT = "pyepo_knapsack"
FULL = dict(shared.FULL)
QUICK = {"degrees": [4], "n_train": 100, "n_val": 50, "n_test": 100, "epochs": 2}


@functools.lru_cache(maxsize=4)
def _setup(seed: int, solver: str):
    """The seed's integer oracle and the layer on its LP relaxation (same weights)."""
    from cvxlpgd import CvxpyLayer

    item_weights = weights(seed)
    problem, cost, pick = knapsack_lp(item_weights)
    return oracle(item_weights), CvxpyLayer(problem, [cost], [pick], solver=solver)


KNAPSACK = shared.Task(
    EXPERIMENT, "PyEPO knapsack 2x32", -1, _setup, make_splits, full=FULL, quick=QUICK
)


def main(argv=None) -> dict:
    """Run the knapsack benchmark (:func:`examples.pyepo_shortest_path.train.main`)."""
    return shared.main(argv, task=KNAPSACK)


if __name__ == "__main__":
    main()
