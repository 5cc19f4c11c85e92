"""cvxlpgd's LPGD on the objective loss is PyEPO's perturbation gradient (PG).

PyEPO (2.2.7, ``pyepo/func/surrogate.py``) implements PG (Gupta & Huang, NeurIPS 2024)
as ``pyepo.func.perturbationGradient``. With ``two_sides=True`` (central differences)
its loss for one instance, predicted cost ĉ and true cost c, is

    ℓ_PG(ĉ) = [ (ĉ + σc)ᵀ w₊ − (ĉ − σc)ᵀ w₋ ] / (2σ + 10⁻⁸),   w± = argmin_w (ĉ ± σc)ᵀ w

(a minimization model; the sign flips for maximization). The solutions w± come from
PyEPO's model and carry no gradient, so autograd gives

    ∂ℓ_PG/∂ĉ = (w₊ − w₋) / (2σ + 10⁻⁸).

cvxlpgd's layer ``w(ĉ)`` on the same LP, trained on the objective loss ⟨c, w(ĉ)⟩, has
the incoming gradient dx = c. LPGD in ``central`` mode re-solves
``minimize (ĉ ± τ dx)ᵀ w`` over the same polytope and returns (w₊ − w₋)/(2τ) for ĉ
(∂L/∂c = x in the data gradient, and ĉ is the cost vector itself). With τ = σ the two
are the same vector, up to the solvers' accuracy and the 10⁻⁸ in PyEPO's denominator.

**Ties.** Both formulas need w± to be unique. The instances are PyEPO's 5×5 grid with
continuous random costs (``genData``; the prediction is the true cost times lognormal
noise), so ties have probability zero; the test does not break ties, it checks there
are none: on the grid's 70 monotone paths (every vertex of the LP's feasible set), the
best path of every perturbed cost beats the runner-up by a clear margin, and PyEPO's
OR-Tools solution is that path. The layer's solutions then agree with
it to solver accuracy (measured: 1e-8 with Moreau, 1e-7 with Clarabel and SCS; the
test allows 1e-6).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pyepo")
pytest.importorskip("ortools")

from cvxlpgd import CvxpyLayer  # noqa: E402
from examples.pyepo_shortest_path.problem import GRID, oracle, shortest_path_lp  # noqa: E402

SIGMA = 0.5
BATCH = 16


def _paths(arcs) -> np.ndarray:
    """Arc indicators of every path from node 0 to the last node of the grid (rows)."""
    rows, cols = GRID
    index = {tuple(arc): k for k, arc in enumerate(arcs)}
    paths = []
    for downs in itertools.combinations(range(rows + cols - 2), rows - 1):
        node, w = 0, np.zeros(len(arcs))
        for step in range(rows + cols - 2):
            nxt = node + cols if step in downs else node + 1
            w[index[(node, nxt)]] = 1.0
            node = nxt
        paths.append(w)
    return np.array(paths)


@pytest.fixture(scope="module")
def instances():
    from pyepo.data.shortestpath import genData

    optmodel = oracle()
    _, true_cost = genData(BATCH, 5, GRID, deg=2, noise_width=0.5, seed=11)
    rng = np.random.default_rng(5)
    predicted = true_cost * np.exp(0.4 * rng.normal(size=true_cost.shape))
    return optmodel, true_cost.astype(np.float64), predicted.astype(np.float64)


def test_the_perturbed_problems_have_no_ties(instances):
    optmodel, c, c_hat = instances
    paths = _paths(optmodel.arcs)
    assert paths.shape == (70, 40)
    changed = 0
    for i in range(BATCH):
        best = []
        for sign in (1.0, -1.0):
            cost = c_hat[i] + sign * SIGMA * c[i]
            values = np.sort(paths @ cost)
            assert values[1] - values[0] > 1e-3 * np.abs(values[0])  # a unique vertex
            optmodel.setObj(cost)
            w, _ = optmodel.solve()
            np.testing.assert_allclose(w, paths[np.argmin(paths @ cost)], atol=1e-9)
            best.append(int(np.argmin(paths @ cost)))
        changed += best[0] != best[1]
    # The comparison is not vacuous: on many instances the two sides pick different paths.
    assert changed >= BATCH // 4


@pytest.mark.parametrize("solver", ["auto", "CLARABEL", "SCS"])
def test_lpgd_on_the_objective_loss_equals_pyepo_pg(instances, solver):
    from pyepo.func import perturbationGradient

    optmodel, c, c_hat = instances
    true_cost = torch.tensor(c, dtype=torch.float64)

    # PyEPO's PG, central differences, σ; summed over the batch.
    pred_pg = torch.tensor(c_hat, dtype=torch.float64, requires_grad=True)
    pg = perturbationGradient(optmodel, sigma=SIGMA, two_sides=True, reduction="sum")
    pg(pred_pg, true_cost).backward()

    # cvxlpgd: the flow LP as a layer, LPGD central with τ = σ, loss Σ ⟨c, w(ĉ)⟩.
    problem, cost, flow = shortest_path_lp(optmodel.arcs, GRID[0] * GRID[1])
    layer = CvxpyLayer(
        problem, [cost], [flow], gradient="lpgd", tau=SIGMA, lpgd_mode="central", solver=solver
    )
    pred_lpgd = torch.tensor(c_hat, dtype=torch.float64, requires_grad=True)
    (w,) = layer(pred_lpgd)
    (true_cost * w).sum().backward()

    # The reference, from the enumerated paths: (w₊ − w₋) / (2σ).
    paths = _paths(optmodel.arcs)
    reference = np.array(
        [
            (
                paths[np.argmin(paths @ (c_hat[i] + SIGMA * c[i]))]
                - paths[np.argmin(paths @ (c_hat[i] - SIGMA * c[i]))]
            )
            / (2 * SIGMA)
            for i in range(BATCH)
        ]
    )
    assert np.abs(reference).max() == pytest.approx(1 / (2 * SIGMA))  # some are nonzero
    np.testing.assert_allclose(pred_pg.grad.numpy(), reference, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(pred_lpgd.grad.numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(pred_lpgd.grad.numpy(), pred_pg.grad.numpy(), atol=1e-6)
