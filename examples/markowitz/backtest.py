"""Back-tests that carry holdings from one period to the next, batched over chains.

A *chain* is a run of consecutive monthly windows. In period ``p`` the policy QP
(:func:`examples.markowitz.policy.build_policy`) is solved with ``w_prev`` equal to the
holdings it chose in period ``p − 1`` (the equal-weight book before the first period),
so the trade weight κ prices the turnover the back-test really pays, and trading costs
``cost_rate · ‖w_p − w_{p−1}‖₁`` are charged on each period's first day
(:func:`examples.markowitz.policy.chain_returns_torch`). Periods depend on each other,
so a chain is solved period by period; several chains (random training starts, or
the points of a parameter grid) are one batched layer call per period.

Within a period the book is held at its target weights (daily rebalancing to them is
not charged), as in :func:`examples.markowitz.policy.realized_returns`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from examples.markowitz.policy import chain_returns_torch, estimate_params, mean_variance_loss

__all__ = ["Policy", "Windows", "chain_returns", "chain_weights", "evaluate_chain", "grid_baseline"]


class Windows:
    """Plug-in inputs and realized futures of consecutive back-test windows, as tensors.

    Attributes
    ----------
    mean : torch.Tensor, shape (P, N)
        Sample mean of each window's history.
    L : torch.Tensor, shape (P, N, N)
        Square-root covariance of each window's history.
    future : torch.Tensor, shape (P, H, N)
        The realized daily returns that follow each window.
    """

    def __init__(self, windows):
        estimates = [estimate_params(history) for history, _ in windows]
        self.mean = torch.tensor(np.stack([e["mu"] for e in estimates]))
        self.L = torch.tensor(np.stack([e["L"] for e in estimates]))
        self.future = torch.tensor(np.stack([future for _, future in windows]))

    def __len__(self) -> int:
        return self.future.shape[0]


@dataclass
class Policy:
    """The learned corrections, shared by all windows.

    ``mu = a · m + δ`` (forecast), ``gamma = softplus(g)``, ``kappa = softplus(k)``;
    ``a``, ``g``, ``k`` are 0-d tensors (or shape ``(K,)`` for a batch of policies, as
    in :func:`grid_baseline`) and ``delta`` has shape ``(N,)``.
    """

    a: torch.Tensor
    delta: torch.Tensor
    g: torch.Tensor
    k: torch.Tensor

    def gamma(self) -> torch.Tensor:
        """Risk aversion γ = softplus(g) ≥ 0."""
        return torch.nn.functional.softplus(self.g)

    def kappa(self) -> torch.Tensor:
        """Trade weight κ = softplus(k) ≥ 0."""
        return torch.nn.functional.softplus(self.k)

    def tensors(self) -> list[torch.Tensor]:
        """The four tensors, for an optimizer."""
        return [self.a, self.delta, self.g, self.k]


def chain_weights(
    layer, policy: Policy, data: Windows, starts: np.ndarray, length: int, **options
) -> torch.Tensor:
    """Holdings of ``len(starts)`` chains over ``length`` consecutive windows each.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The policy layer, parameters ``(mu, L, gamma, kappa, w_prev)``.
    policy : Policy
        Scalars, or one value per chain (shape ``(K,)``).
    data : Windows
    starts : ndarray of int, shape (K,)
        First window of each chain; ``starts + length <= len(data)``.
    length : int
        Periods per chain.
    **options
        Layer call options (``gradient``, ``tau``).

    Returns
    -------
    torch.Tensor, shape (K, length, N)
        Differentiable in the policy through every period (``w_prev`` included).
    """
    starts = np.asarray(starts)
    K, N = len(starts), data.mean.shape[1]
    scale = policy.a[:, None] if policy.a.ndim else policy.a
    w_prev = torch.full((K, N), 1.0 / N, dtype=torch.float64)
    held = []
    for p in range(length):
        idx = starts + p
        mu = scale * data.mean[idx] + policy.delta
        (w_prev,) = layer(mu, data.L[idx], policy.gamma(), policy.kappa(), w_prev, **options)
        held.append(w_prev)
    return torch.stack(held, dim=1)


def chain_returns(
    layer,
    policy: Policy,
    data: Windows,
    starts: np.ndarray,
    length: int,
    cost_rate: float,
    **options,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Holdings ``(K, length, N)`` and net daily returns ``(K, length, H)`` of chains.

    The holdings are those of :func:`chain_weights`; the returns are net of trading
    costs from the equal-weight book onwards.
    """
    weights = chain_weights(layer, policy, data, starts, length, **options)
    future = torch.stack([data.future[np.asarray(starts) + p] for p in range(length)], dim=1)
    w_init = torch.full_like(weights[:, 0], 1.0 / weights.shape[-1])
    return weights, chain_returns_torch(weights, future, cost_rate, w_init)


def evaluate_chain(
    layer,
    policy: Policy,
    data: Windows,
    first: int,
    length: int,
    *,
    cost_rate: float,
    variance_penalty: float,
) -> dict:
    """One back-test over windows ``first .. first + length − 1`` (no gradient).

    Returns
    -------
    dict
        ``loss`` (mean-variance back-test loss), ``sharpe`` (annualized, net of
        costs) and ``turnover`` (mean ‖w_p − w_{p−1}‖₁ per period, from the
        equal-weight book).
    """
    with torch.no_grad():
        weights, r = chain_returns(layer, policy, data, np.array([first]), length, cost_rate)
    w = weights[0]
    previous = torch.cat([torch.full_like(w[:1], 1.0 / w.shape[-1]), w[:-1]])
    daily = r.flatten()
    return {
        "loss": float(mean_variance_loss(r, variance_penalty)),
        "sharpe": float(daily.mean() / daily.std() * np.sqrt(252)),
        "turnover": float((w - previous).abs().sum(dim=1).mean()),
    }


def grid_baseline(
    layer,
    data: Windows,
    first: int,
    length: int,
    *,
    gammas,
    kappas,
    cost_rate: float,
    variance_penalty: float,
) -> dict:
    """The best plug-in policy (``a = 1, δ = 0``) over a (γ, κ) grid, by back-test loss.

    Every grid point is one chain of the same batched back-test over windows
    ``first .. first + length − 1``.

    Returns
    -------
    dict
        ``loss``, ``gamma``, ``kappa`` of the best point, and ``losses`` (all points,
        in ``itertools.product(gammas, kappas)`` order).
    """
    pairs = np.array([(g, k) for g in gammas for k in kappas], dtype=float)
    inverse = np.log(np.expm1(pairs))  # softplus⁻¹
    N = data.mean.shape[1]
    policy = Policy(
        a=torch.ones(len(pairs), dtype=torch.float64),
        delta=torch.zeros(N, dtype=torch.float64),
        g=torch.tensor(inverse[:, 0]),
        k=torch.tensor(inverse[:, 1]),
    )
    with torch.no_grad():
        _, r = chain_returns(layer, policy, data, np.full(len(pairs), first), length, cost_rate)
    losses = np.array(
        [float(mean_variance_loss(r[i], variance_penalty)) for i in range(len(pairs))]
    )
    best = int(np.argmin(losses))
    return {
        "loss": float(losses[best]),
        "gamma": float(pairs[best, 0]),
        "kappa": float(pairs[best, 1]),
        "losses": losses,
    }
