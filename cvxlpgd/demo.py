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
from dataclasses import dataclass

import cvxpy as cp
import numpy as np
import torch

from cvxlpgd.layer import CvxpyLayer


@dataclass
class TrainingRun:
    """Loss history and wall time of one training run."""

    problem: str
    gradient: str
    losses: list[float]
    seconds: float

    @property
    def final_loss(self) -> float:
        return self.losses[-1]


def portfolio_task(n_assets: int = 5):
    """Layer, initial parameter, and loss of the long-only portfolio LP."""
    w = cp.Variable(n_assets, name="w")
    r = cp.Parameter(n_assets, name="r")
    problem = cp.Problem(cp.Maximize(r @ w), [cp.sum(w) == 1, w >= 0])
    r_true = torch.linspace(0.1, 1.0, n_assets, dtype=torch.float64)
    r_init = torch.flip(r_true, [0]).clone()  # believes the worst asset is the best

    def loss(outputs):
        return -(r_true * outputs[0]).sum()

    return problem, [r], [w], [r_init], loss


def projection_task(n: int = 6, m: int = 10, batch: int = 8, seed: int = 0):
    """Project learnable points z onto {x : Gx ≤ h}; fit projections to targets."""
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
TASKS = {"portfolio": (portfolio_task, {"lr": 1.0, "tau": 2.0}),
         "projection": (projection_task, {"lr": 0.5, "tau": 0.1})}


def train(task: str, gradient: str, steps: int = 25, lr: float | None = None,
          tau: float | None = None) -> TrainingRun:
    """Plain SGD through the layer on ``task`` with ``gradient`` ("lpgd" or "exact")."""
    make_task, defaults = TASKS[task]
    lr = defaults["lr"] if lr is None else lr
    tau = defaults["tau"] if tau is None else tau
    problem, params, variables, initial, loss_fn = make_task()
    layer = CvxpyLayer(problem, params, variables, gradient=gradient, tau=tau)
    theta = [t.clone().requires_grad_(True) for t in initial]
    optimizer = torch.optim.SGD(theta, lr=lr)
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(layer(*theta))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(loss_fn(layer(*theta)).item())
    return TrainingRun(task, gradient, losses, time.perf_counter() - start)


def run_demo(steps: int = 25, print_fn=print) -> list[TrainingRun]:
    """Train every task with both gradients and print a comparison table."""
    runs = [train(task, gradient, steps=steps) for task in TASKS
            for gradient in ("lpgd", "exact")]
    print_fn(f"{'problem':<11} {'gradient':<8} {'initial loss':>12} {'final loss':>11} "
             f"{'seconds':>8}")
    for run in runs:
        print_fn(f"{run.problem:<11} {run.gradient:<8} {run.losses[0]:>12.4f} "
                 f"{run.final_loss:>11.4f} {run.seconds:>8.2f}")
    print_fn("portfolio is an LP: its exact gradient is zero, so only LPGD learns; "
             "projection is a smooth QP, where both learn.")
    return runs


if __name__ == "__main__":
    run_demo()
