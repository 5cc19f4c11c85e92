"""PyEPO's multi-dimensional knapsack: data, the integer oracle, and its LP relaxation.

PyEPO's second standard task (Tang & Khalil) predicts the values of 32 items from 5
features and packs a knapsack of 2 dimensions, capacity 20 in each (PyEPO's examples:
``caps = [20] * 2``)::

    maximize    ĉᵀw
    subject to  W w ≤ 20·1,   w ∈ {0, 1}³²

``pyepo.data.knapsack.genData`` draws the weights ``W`` (2 × 32, uniform in [3, 8)) from
the seed alone, so all instances of a seed — and all degrees — share them; each seed
has its own oracle and its own layer.

* :func:`oracle` is the integer knapsack as a PyEPO model, solved by OR-Tools'
  knapsack branch and bound (:mod:`examples.pyepo_knapsack.oracle`). It labels the
  data and is used by the PyEPO methods and by PyEPO's regret metric for *every*
  method. A test checks it against PyEPO's own OR-Tools model
  (``pyepo.model.ort.knapsackModel``, SCIP through ``pywraplp``);
* :func:`knapsack_lp` is its LP relaxation in CVXPY (``0 ≤ w ≤ 1``), the layer cvxlpgd
  differentiates. The capacity constraint makes the relaxation's vertices fractional
  (unlike the shortest path's, which are integral), so LPGD trains on a different
  problem than the one its decisions are scored on; PyEPO's methods train on the
  integer model itself.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from examples.pyepo_shortest_path.problem import Splits

__all__ = [
    "CAPACITY",
    "DIM",
    "ITEMS",
    "knapsack_lp",
    "make_splits",
    "oracle",
    "weights",
]

#: PyEPO's example knapsack: 32 items, 2 dimensions, capacity 20 in each.
ITEMS, DIM, CAPACITY = 32, 2, 20.0


def weights(seed: int, features: int = 5) -> np.ndarray:
    """The item weights ``W`` (DIM × ITEMS) that ``genData`` draws for ``seed``."""
    from pyepo.data.knapsack import genData

    return genData(1, features, ITEMS, dim=DIM, seed=seed)[0]


def oracle(item_weights: np.ndarray):
    """The integer knapsack as a PyEPO model (:mod:`examples.pyepo_knapsack.oracle`).

    Raises
    ------
    ImportError
        If PyEPO or OR-Tools is missing.
    """
    try:
        from examples.pyepo_knapsack.oracle import BranchAndBoundKnapsack
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the PyEPO benchmark needs pyepo and ortools: pip install pyepo ortools"
        ) from err
    return BranchAndBoundKnapsack(item_weights, [CAPACITY] * len(item_weights))


def knapsack_lp(
    item_weights: np.ndarray, capacity: float = CAPACITY
) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    """The knapsack's LP relaxation as a DPP CVXPY problem.

    Parameters
    ----------
    item_weights : array, shape (dim, items)
    capacity : float, default 20

    Returns
    -------
    problem : cvxpy.Problem
        ``maximize ĉᵀw  s.t.  W w ≤ capacity, 0 ≤ w ≤ 1``.
    cost : cvxpy.Parameter
        ``ĉ``, shape ``(items,)``.
    pick : cvxpy.Variable
        ``w``, shape ``(items,)``.
    """
    item_weights = np.asarray(item_weights, dtype=float)
    cost = cp.Parameter(item_weights.shape[1], name="value")
    pick = cp.Variable(item_weights.shape[1], name="pick")
    problem = cp.Problem(
        cp.Maximize(cost @ pick), [item_weights @ pick <= capacity, pick >= 0, pick <= 1]
    )
    return problem, cost, pick


def make_splits(
    optmodel,
    *,
    degree: int,
    seed: int,
    n_train: int,
    n_val: int,
    n_test: int,
    features: int = 5,
    noise: float = 0.5,
) -> Splits:
    """Draw PyEPO knapsack data (one ``genData`` call) and split it.

    ``optDataset`` labels every instance with the integer optimum ``w*``, ``z*``.
    """
    from pyepo.data.dataset import optDataset
    from pyepo.data.knapsack import genData

    total = n_train + n_val + n_test
    _, x, c = genData(total, features, ITEMS, dim=DIM, deg=degree, noise_width=noise, seed=seed)
    cuts = np.cumsum([0, n_train, n_val, n_test])
    parts = [optDataset(optmodel, x[a:b], c[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Splits(*parts, features=features)
