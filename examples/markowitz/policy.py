"""Markowitz portfolio policy as a DPP quadratic program, and the back-test loss.

Policy (one rebalance, weights ``w`` in ``R^n``)::

    minimize    -mu^T w + gamma * ||L w||^2 + kappa * ||w - w_prev||_1
    subject to  1^T w = 1,  ||w||_1 <= leverage_limit   (or  w >= 0  when long_only)

``mu`` (return forecast), ``L`` (risk factor matrix, ``k x n``), ``gamma`` (risk
aversion), ``kappa`` (trading-cost weight) and ``w_prev`` (current holdings) are CVXPY
Parameters, the first four meant to be learned by back-testing.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

__all__ = [
    "backtest_loss",
    "backtest_loss_torch",
    "build_policy",
    "chain_returns_torch",
    "estimate_params",
    "mean_variance_loss",
    "realized_returns",
]


def build_policy(
    n_assets: int,
    n_factors: int | None = None,
    leverage_limit: float = 1.5,
    long_only: bool = False,
) -> tuple[cp.Problem, dict[str, cp.Parameter], cp.Variable]:
    """Build the parametrized Markowitz policy QP.

    Parameters
    ----------
    n_assets : int
        Number of assets ``n``.
    n_factors : int, optional
        Rows ``k`` of the risk factor matrix ``L``; ``None`` means ``k = n`` (a full
        square-root covariance). With ``k < n`` the model has no idiosyncratic risk,
        which the leverage limit keeps bounded.
    leverage_limit : float, default 1.5
        Constant bound on ``||w||_1`` (gross exposure); must be >= 1 so that the budget
        constraint is satisfiable. Ignored when ``long_only`` (then ``||w||_1 = 1``).
    long_only : bool, default False
        Use ``w >= 0`` instead of the leverage limit.

    Returns
    -------
    problem : cvxpy.Problem
        DPP (``problem.is_dpp()``) and a QP (``problem.is_qp()``): solvable by QP
        solvers (Clarabel, OSQP, SCS with a quadratic objective).
    params : dict of str to cvxpy.Parameter
        ``"mu"`` (n,), ``"L"`` (k, n), ``"gamma"`` (scalar, nonneg), ``"kappa"``
        (scalar, nonneg), ``"w_prev"`` (n,). Values are left unset; see
        :func:`estimate_params` for a starting point.
    w : cvxpy.Variable
        Portfolio weights, shape (n,).

    Notes
    -----
    DPP forbids multiplying a parameter by an expression that contains another
    parameter, so ``gamma * sum_squares(L @ w)`` and ``kappa * norm1(w - w_prev)`` are
    not DPP as written. Two auxiliary variables fix that without changing the problem:
    ``f == L @ w`` (factor exposures) and ``u == w - w_prev`` (trades); the objective
    then only multiplies ``gamma`` and ``kappa`` by parameter-free terms. The quadratic
    part of the objective is ``gamma * ||f||^2``, so the QP matrix is ``2 gamma I`` on
    the ``f`` block.
    """
    if n_assets < 1:
        raise ValueError(f"n_assets must be >= 1, got {n_assets}")
    k = n_assets if n_factors is None else int(n_factors)
    if k < 1:
        raise ValueError(f"n_factors must be >= 1, got {n_factors}")
    if not long_only and not leverage_limit >= 1.0:
        raise ValueError(f"leverage_limit must be >= 1 (budget sum(w) == 1), got {leverage_limit}")

    mu = cp.Parameter(n_assets, name="mu")
    L = cp.Parameter((k, n_assets), name="L")
    gamma = cp.Parameter(nonneg=True, name="gamma")
    kappa = cp.Parameter(nonneg=True, name="kappa")
    w_prev = cp.Parameter(n_assets, name="w_prev")

    w = cp.Variable(n_assets, name="w")
    f = cp.Variable(k, name="factor_exposure")
    u = cp.Variable(n_assets, name="trade")

    objective = cp.Minimize(-mu @ w + gamma * cp.sum_squares(f) + kappa * cp.norm1(u))
    constraints = [f == L @ w, u == w - w_prev, cp.sum(w) == 1]
    if long_only:
        constraints.append(w >= 0)
    else:
        constraints.append(cp.norm1(w) <= leverage_limit)
    problem = cp.Problem(objective, constraints)
    params = {"mu": mu, "L": L, "gamma": gamma, "kappa": kappa, "w_prev": w_prev}
    return problem, params, w


def estimate_params(
    history: np.ndarray,
    n_factors: int | None = None,
    gamma: float = 1.0,
    kappa: float = 1e-3,
    w_prev: np.ndarray | None = None,
) -> dict[str, np.ndarray | float]:
    """Classical plug-in values for the policy parameters from a return history.

    ``mu`` is the sample mean, ``L`` the top-``k`` square-root factor of the sample
    covariance: with ``X = (history - mean) / sqrt(T - 1) = U S V^T``, ``L = S_k V_k^T``,
    so ``L^T L`` is the best rank-``k`` approximation of the covariance (exact when
    ``k = n <= T - 1``).

    Parameters
    ----------
    history : ndarray, shape (T, n)
        Daily returns, ``T >= 2``.
    n_factors : int, optional
        ``k``; ``None`` means ``k = n``. Rows beyond ``min(T, n)`` are zero.
    gamma, kappa : float
        Risk aversion and trading-cost weight (daily-return units: a cost of 10 basis
        points per unit traded is ``kappa = 1e-3``).
    w_prev : ndarray, shape (n,), optional
        Current holdings; default equal weights ``1/n``.

    Returns
    -------
    dict
        Keys ``"mu"``, ``"L"``, ``"gamma"``, ``"kappa"``, ``"w_prev"`` matching
        :func:`build_policy`'s parameters.
    """
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 2 or history.shape[0] < 2:
        raise ValueError(f"history must have shape (T >= 2, n), got {history.shape}")
    T, n = history.shape
    k = n if n_factors is None else int(n_factors)
    mean = history.mean(axis=0)
    _, s, vt = np.linalg.svd((history - mean) / np.sqrt(T - 1), full_matrices=False)
    L = np.zeros((k, n))
    r = min(k, s.size)
    L[:r] = s[:r, None] * vt[:r]
    if w_prev is None:
        w_prev = np.full(n, 1.0 / n)
    return {
        "mu": mean,
        "L": L,
        "gamma": float(gamma),
        "kappa": float(kappa),
        "w_prev": np.asarray(w_prev, dtype=np.float64),
    }


def _check_shapes(weights_shape: tuple, returns_shape: tuple) -> None:
    if len(weights_shape) != 2:
        raise ValueError(f"weights_seq must have shape (P, N), got {weights_shape}")
    if len(returns_shape) not in (2, 3) or returns_shape[0] != weights_shape[0]:
        raise ValueError(
            f"future_returns must have shape (P, H, N) or (P, N) with P={weights_shape[0]}, "
            f"got {returns_shape}"
        )
    if returns_shape[-1] != weights_shape[1]:
        raise ValueError(f"asset counts differ: {weights_shape} vs {returns_shape}")


def realized_returns(
    weights_seq: np.ndarray,
    future_returns: np.ndarray,
    cost_rate: float = 0.0,
    w_init: np.ndarray | None = None,
) -> np.ndarray:
    """Daily portfolio returns of a back-test, net of optional linear trading costs.

    Period ``p`` holds ``weights_seq[p]`` over its ``H`` days (rebalanced daily back to
    those weights, costs of that ignored): ``r[p, h] = future_returns[p, h] @ w_p``.
    With ``cost_rate > 0``, ``cost_rate * ||w_p - w_{p-1}||_1`` is subtracted from the
    first day of period ``p``; ``w_{-1} = w_init``, or no cost for the first period when
    ``w_init`` is ``None``.

    Parameters
    ----------
    weights_seq : ndarray, shape (P, N)
    future_returns : ndarray, shape (P, H, N) or (P, N)
        ``(P, N)`` is read as ``H = 1``.
    cost_rate : float, default 0.0
    w_init : ndarray, shape (N,), optional

    Returns
    -------
    ndarray, shape (P, H)
    """
    weights_seq = np.asarray(weights_seq, dtype=np.float64)
    future_returns = np.asarray(future_returns, dtype=np.float64)
    _check_shapes(weights_seq.shape, future_returns.shape)
    if future_returns.ndim == 2:
        future_returns = future_returns[:, None, :]
    r = np.einsum("phn,pn->ph", future_returns, weights_seq)
    if cost_rate:
        prev = weights_seq[:-1] if w_init is None else np.vstack([w_init, weights_seq[:-1]])
        turnover = np.abs(weights_seq[len(weights_seq) - len(prev) :] - prev).sum(axis=1)
        r[len(weights_seq) - len(prev) :, 0] -= cost_rate * turnover
    return r


def backtest_loss(
    weights_seq: np.ndarray,
    future_returns: np.ndarray,
    variance_penalty: float = 1.0,
    cost_rate: float = 0.0,
    w_init: np.ndarray | None = None,
) -> float:
    """Back-test loss (NumPy): negative mean daily return plus a variance penalty.

    With ``r`` the ``P * H`` daily returns of :func:`realized_returns` (all periods
    pooled) and ``m = mean(r)``::

        loss = -m + variance_penalty * mean((r - m)**2)

    i.e. a mean-variance utility with risk aversion ``2 * variance_penalty`` in daily
    units (population variance, ``ddof=0``). :func:`backtest_loss_torch` computes the
    same formula with torch so it can be differentiated with respect to the weights.

    Parameters
    ----------
    weights_seq : ndarray, shape (P, N)
        Portfolio held during each period.
    future_returns : ndarray, shape (P, H, N) or (P, N)
        Realized daily returns of each period (the ``future`` parts of
        :func:`examples.markowitz.data.rolling_windows`, stacked).
    variance_penalty : float, default 1.0
    cost_rate : float, default 0.0
        Linear trading cost per unit of turnover (see :func:`realized_returns`).
    w_init : ndarray, shape (N,), optional
        Holdings before the first period (only used when ``cost_rate > 0``).

    Returns
    -------
    float
    """
    r = realized_returns(weights_seq, future_returns, cost_rate, w_init)
    m = r.mean()
    return float(-m + variance_penalty * np.mean((r - m) ** 2))


def backtest_loss_torch(
    weights_seq,
    future_returns,
    variance_penalty: float = 1.0,
    cost_rate: float = 0.0,
    w_init=None,
):
    """Back-test loss in torch: the same formula as :func:`backtest_loss`, differentiable.

    Parameters
    ----------
    weights_seq : torch.Tensor, shape (P, N)
        Typically the layer's output, one solve per period.
    future_returns : torch.Tensor or ndarray, shape (P, H, N) or (P, N)
    variance_penalty, cost_rate : float
    w_init : torch.Tensor or ndarray, shape (N,), optional

    Returns
    -------
    torch.Tensor
        0-d, same dtype and device as ``weights_seq``.
    """
    import torch  # local: the NumPy half of this module must not need torch

    weights_seq = torch.as_tensor(weights_seq)
    future_returns = torch.as_tensor(
        future_returns, dtype=weights_seq.dtype, device=weights_seq.device
    )
    _check_shapes(tuple(weights_seq.shape), tuple(future_returns.shape))
    if future_returns.ndim == 2:
        future_returns = future_returns[:, None, :]
    w0 = (
        None
        if w_init is None
        else torch.as_tensor(w_init, dtype=weights_seq.dtype, device=weights_seq.device)[None]
    )
    r = chain_returns_torch(weights_seq[None], future_returns[None], cost_rate, w0)[0]
    return mean_variance_loss(r, variance_penalty)


def chain_returns_torch(weights, future_returns, cost_rate: float = 0.0, w_init=None):
    """Daily net returns of ``K`` back-test chains whose holdings carry over.

    Chain ``k`` holds ``weights[k, p]`` during its period ``p``; trading from the
    previous period's holdings costs ``cost_rate · ‖w_p − w_{p−1}‖₁``, charged on the
    period's first day, with ``w_{−1} = w_init[k]`` (no cost for the first period when
    ``w_init`` is None). Same conventions as :func:`realized_returns`, one chain per
    leading index.

    Parameters
    ----------
    weights : torch.Tensor, shape (K, P, N)
    future_returns : torch.Tensor, shape (K, P, H, N)
    cost_rate : float, default 0.0
        Cost per unit of turnover, in the units of the returns.
    w_init : torch.Tensor, shape (K, N), optional
        Holdings before each chain's first period.

    Returns
    -------
    torch.Tensor, shape (K, P, H)
    """
    import torch

    r = torch.einsum("kphn,kpn->kph", future_returns, weights)
    if not cost_rate:
        return r
    first = weights[:, :1] if w_init is None else w_init[:, None]
    previous = torch.cat([first, weights[:, :-1]], dim=1)
    turnover = (weights - previous).abs().sum(dim=-1)  # (K, P)
    first_day = torch.zeros_like(r)
    first_day[..., 0] = 1.0
    # Built out of place so autograd sees no in-place write on r.
    return r - cost_rate * turnover[..., None] * first_day


def mean_variance_loss(returns, variance_penalty: float = 1.0):
    """``−mean(r) + variance_penalty · var(r)`` over all entries of ``returns`` (torch).

    Parameters
    ----------
    returns : torch.Tensor
        Daily returns of any shape; all entries are pooled.
    variance_penalty : float, default 1.0

    Returns
    -------
    torch.Tensor
        0-d.
    """
    m = returns.mean()
    return -m + variance_penalty * ((returns - m) ** 2).mean()
