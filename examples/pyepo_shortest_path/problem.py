"""PyEPO's 5×5 grid shortest path: data, PyEPO's OR-Tools model, and the same LP in CVXPY.

The benchmark (Tang & Khalil, PyEPO) predicts the 40 edge costs of a 5×5 grid from 5
features and routes from the north-west to the south-east corner. Everything here comes
from PyEPO itself except the CVXPY formulation, which cvxlpgd needs as a layer:

* :func:`make_splits` draws features and costs with ``pyepo.data.shortestpath.genData``
  (one call, so that training, validation and test share the generator's random map
  from features to costs) and wraps each split in a ``pyepo.data.dataset.optDataset``,
  which solves every instance once for its optimal path ``w*`` and cost ``z*``;
* :func:`oracle` is PyEPO's OR-Tools model (``pyepo.model.ort.shortestPathModel``, GLOP),
  used by the PyEPO methods and by PyEPO's regret metric for *every* method;
* :func:`shortest_path_lp` is the flow LP on PyEPO's own arc list, so that cost ``k``
  means the same edge in both::

      minimize    ĉᵀw
      subject to  N w = e_sink − e_source,   0 ≤ w ≤ 1

  with ``N`` the node–arc incidence matrix (+1 into a node, −1 out of it). The grid's
  arcs point right and down, so the graph is acyclic, the feasible set is the path
  polytope and the LP is bounded for any sign of ``ĉ``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cvxpy as cp
import numpy as np

__all__ = ["GRID", "Splits", "make_splits", "oracle", "shortest_path_lp"]

#: PyEPO's benchmark grid.
GRID = (5, 5)


def oracle(grid: tuple[int, int] = GRID):
    """PyEPO's OR-Tools shortest-path model (``pyepo.model.ort.shortestPathModel``).

    Parameters
    ----------
    grid : (int, int), default (5, 5)
        Rows and columns of the node grid.

    Returns
    -------
    pyepo.model.ort.shortestPathModel
        Solves with OR-Tools' GLOP; ``.arcs`` lists the edges in cost order.

    Raises
    ------
    ImportError
        If PyEPO or OR-Tools is missing (``pip install -e ".[examples]"``).
    """
    try:
        from pyepo.model.ort import shortestPathModel
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the PyEPO benchmark needs pyepo and ortools: pip install pyepo ortools"
        ) from err
    return shortestPathModel(grid)


def shortest_path_lp(arcs, n_nodes: int) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    """The shortest-path LP over ``arcs`` as a DPP CVXPY problem.

    Parameters
    ----------
    arcs : sequence of (int, int)
        Directed edges ``(tail, head)``; edge ``k`` carries cost ``ĉ[k]``. The source is
        node 0 and the sink node ``n_nodes − 1`` (PyEPO's corners).
    n_nodes : int
        Number of nodes.

    Returns
    -------
    problem : cvxpy.Problem
        ``minimize ĉᵀw  s.t.  N w = e_sink − e_source, 0 ≤ w ≤ 1``.
    cost : cvxpy.Parameter
        ``ĉ``, shape ``(len(arcs),)``.
    flow : cvxpy.Variable
        ``w``, shape ``(len(arcs),)``: the indicator of the chosen path at a vertex.

    Raises
    ------
    ValueError
        If an arc names a node outside ``0 .. n_nodes − 1``.
    """
    arcs = [(int(i), int(j)) for i, j in arcs]
    if any(not (0 <= i < n_nodes and 0 <= j < n_nodes) for i, j in arcs):
        raise ValueError(f"arcs must join nodes 0..{n_nodes - 1}")
    incidence = np.zeros((n_nodes, len(arcs)))
    for k, (tail, head) in enumerate(arcs):
        incidence[tail, k] -= 1.0
        incidence[head, k] += 1.0
    supply = np.zeros(n_nodes)
    supply[0], supply[-1] = -1.0, 1.0  # one unit leaves the source, one reaches the sink
    cost = cp.Parameter(len(arcs), name="cost")
    flow = cp.Variable(len(arcs), name="flow")
    problem = cp.Problem(
        cp.Minimize(cost @ flow), [incidence @ flow == supply, flow >= 0, flow <= 1]
    )
    return problem, cost, flow


@dataclass
class Splits:
    """Training, validation and test sets of one (degree, seed) draw.

    Attributes
    ----------
    train, val, test : pyepo.data.dataset.optDataset
        Items ``(x, c, w*, z*)`` as float32 tensors.
    features : int
        Feature dimension.
    """

    train: object
    val: object
    test: object
    features: int


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
    """Draw PyEPO shortest-path data and split it.

    Parameters
    ----------
    optmodel : pyepo model
        The oracle that labels each instance with ``w*`` and ``z*``.
    degree : int
        Polynomial degree of the map from features to costs (PyEPO's ``deg``).
    seed : int
        ``genData``'s seed: the random map, the features and the noise.
    n_train, n_val, n_test : int
        Split sizes (in this order from one draw).
    features : int, default 5
        Feature dimension.
    noise : float, default 0.5
        Half-width of the multiplicative uniform noise (PyEPO's ``noise_width``).

    Returns
    -------
    Splits
    """
    from pyepo.data.dataset import optDataset
    from pyepo.data.shortestpath import genData

    total = n_train + n_val + n_test
    x, c = genData(total, features, GRID, deg=degree, noise_width=noise, seed=seed)
    cuts = np.cumsum([0, n_train, n_val, n_test])
    parts = [optDataset(optmodel, x[a:b], c[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    return Splits(*parts, features=features)
