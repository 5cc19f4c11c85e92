"""The README's main job: train through a layer with LPGD and with the exact gradient.

Two small learning problems, the same initial model trained with both gradients:

* ``portfolio`` — the long-only LP ``maximize rᵀw s.t. Σw = 1, w ≥ 0`` with learnable
  returns r and loss ``−r_trueᵀw``. The exact derivative of an LP vertex is zero, so
  gradient descent cannot move; LPGD's perturbed re-solve sees the better vertex.
* ``projection`` — a strictly convex QP (projection of a learnable point onto a
  polytope); its solution map is differentiable and both gradients train.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import torch

from cvxlpgd.torch.layer import CvxpyLayer


@dataclass
class TrainingRun:
    """Loss history, wall time and solver work of one training run.

    Attributes
    ----------
    problem : str
        Task name (a key of :data:`TASKS`).
    gradient : str
        ``"lpgd"`` or ``"exact"``.
    losses : list of float
        Loss before every SGD step, and after the last one.
    seconds : float
        Wall time of the whole run.
    solver : dict
        Solver work summed over the training steps: the keys of
        :meth:`cvxlpgd.engine.batch.SolverStats.summary` (``forward_solves``,
        ``forward_iterations``, ``forward_seconds``, ``backward_solves``,
        ``backward_iterations``, ``backward_seconds``).
    """

    problem: str
    gradient: str
    losses: list[float]
    seconds: float
    solver: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> float:
        """The loss after the last step."""
        return self.losses[-1]

    def iterations_per_solve(self, direction: str) -> float | None:
        """Mean solver iterations per solver solve, ``direction`` "forward" or "backward"
        (backward solves the active set answered, without a solver, are left out).

        Parameters
        ----------
        direction : str
            Which solves: ``"forward"`` or ``"backward"``.

        Returns
        -------
        float or None
            None when there was no such solve or it reports no iterations.
        """
        solves = self.solver.get(f"{direction}_solves", 0)
        if direction == "backward":
            solves -= self.solver.get("backward_predicted", 0)
        iterations = self.solver.get(f"{direction}_iterations", 0)
        return iterations / solves if solves and iterations else None


def portfolio_task(n_assets: int = 5):
    """The long-only portfolio LP with a model that believes the worst asset is the best.

    Parameters
    ----------
    n_assets : int, default 5
        Number of assets.

    Returns
    -------
    tuple
        ``(problem, parameters, variables, initial values, loss function)``.
    """
    w = cp.Variable(n_assets, name="w")
    r = cp.Parameter(n_assets, name="r")
    problem = cp.Problem(cp.Maximize(r @ w), [cp.sum(w) == 1, w >= 0])
    r_true = torch.linspace(0.1, 1.0, n_assets, dtype=torch.float64)
    r_init = torch.flip(r_true, [0]).clone()  # believes the worst asset is the best

    def loss(outputs):
        return -(r_true * outputs[0]).sum()

    return problem, [r], [w], [r_init], loss


def projection_task(n: int = 6, m: int = 10, batch: int = 8, seed: int = 0):
    """Project learnable points z onto {x : Gx ≤ h}; fit the projections to targets.

    Parameters
    ----------
    n : int, default 6
        Dimension of the points.
    m : int, default 10
        Number of half-spaces of the polytope.
    batch : int, default 8
        Number of points (the batch dimension).
    seed : int, default 0
        Seed of the polytope, targets and initial points.

    Returns
    -------
    tuple
        ``(problem, parameters, variables, initial values, loss function)``.
    """
    rng = np.random.default_rng(seed)
    x = cp.Variable(n, name="x")
    z = cp.Parameter(n, name="z")
    G = rng.standard_normal((m, n))
    h = np.abs(rng.standard_normal(m))
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [G @ x <= h])
    targets = torch.tensor(rng.standard_normal((batch, n)) * 0.3)
    z_init = torch.tensor(rng.standard_normal((batch, n)))

    def loss(outputs):
        return ((outputs[0] - targets) ** 2).sum(dim=-1).mean()

    return problem, [z], [x], [z_init], loss


# Each task with its SGD step and LPGD τ. The LP needs τ of the order of the return gap
# (≈ 1) for the perturbed solve to reach another vertex; the smooth QP uses a small τ.
TASKS: dict[str, tuple[Callable, dict]] = {
    "portfolio": (portfolio_task, {"lr": 1.0, "tau": 2.0}),
    "projection": (projection_task, {"lr": 0.5, "tau": 0.1}),
}


def train(
    task: str, gradient: str, steps: int = 25, lr: float | None = None, tau: float | None = None
) -> TrainingRun:
    """Plain SGD through the layer on ``task`` with ``gradient``.

    Parameters
    ----------
    task : str
        The learning problem: ``"portfolio"`` or ``"projection"`` (see :data:`TASKS`).
    gradient : str
        The layer's backward pass: ``"lpgd"`` or ``"exact"``.
    steps : int, default 25
        SGD steps.
    lr : float, optional
        Learning rate (default: the task's).
    tau : float, optional
        LPGD τ (default: the task's).

    Returns
    -------
    TrainingRun
    """
    make_task, defaults = TASKS[task]
    lr = defaults["lr"] if lr is None else lr
    tau = defaults["tau"] if tau is None else tau
    problem, params, variables, initial, loss_fn = make_task()
    layer = CvxpyLayer(problem, params, variables, gradient=gradient, tau=tau)
    theta = [t.clone().requires_grad_(True) for t in initial]
    optimizer = torch.optim.SGD(theta, lr=lr)
    losses = []
    work: dict = {}

    def record():  # the layer keeps the statistics of its last call only: add them up
        for key, value in layer.solver_stats.summary().items():
            work[key] = work.get(key, 0) + value

    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(layer(*theta))
        loss.backward()
        record()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():  # the final evaluation is not training work: not recorded
        losses.append(loss_fn(layer(*theta)).item())
    return TrainingRun(task, gradient, losses, time.perf_counter() - start, work)


def run_demo(steps: int = 25, print_fn=print) -> list[TrainingRun]:
    """Train every task with both gradients and print a comparison table.

    Parameters
    ----------
    steps : int, default 25
        SGD steps per run.
    print_fn : callable, default print
        Receives each line of the table.

    Returns
    -------
    list of TrainingRun
        One run per task and gradient, in the table's order.
    """
    runs = [train(task, gradient, steps=steps) for task in TASKS for gradient in ("lpgd", "exact")]

    def per_solve(value):
        return f"{value:>8.1f}" if value is not None else f"{'-':>8}"

    print_fn(
        f"{'problem':<11} {'gradient':<8} {'initial loss':>12} {'final loss':>11} "
        f"{'seconds':>8} {'fwd solves':>10} {'it/solve':>8} {'bwd solves':>10} "
        f"{'it/solve':>8}"
    )
    for run in runs:
        print_fn(
            f"{run.problem:<11} {run.gradient:<8} {run.losses[0]:>12.4f} "
            f"{run.final_loss:>11.4f} {run.seconds:>8.2f} "
            f"{run.solver.get('forward_solves', 0):>10} "
            f"{per_solve(run.iterations_per_solve('forward'))} "
            f"{run.solver.get('backward_solves', 0):>10} "
            f"{per_solve(run.iterations_per_solve('backward'))}"
        )
    print_fn(
        "portfolio is an LP: its exact gradient is zero, so only LPGD learns; "
        "projection is a smooth QP, where both learn."
    )
    print_fn(
        "Solves count batch elements (projection: 8 per call). LPGD's backward solves "
        "are its perturbed problems, warm-started re-solves (on larger LPs and QPs most "
        "are answered from the forward solution's active set instead); the exact path "
        "differentiates the forward solution from its active set (one linear solve per "
        "element) without re-solving."
    )
    return runs


if __name__ == "__main__":
    run_demo()
