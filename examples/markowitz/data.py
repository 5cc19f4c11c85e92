"""Historical daily returns (S&P 500 subset shipped with ``skfolio``) and back-test windows.

``skfolio.datasets.load_sp500_dataset()`` reads a CSV bundled inside the package, so no
network is needed at run time. It holds daily closes of 20 large US stocks from
1990-01-02 to 2022-12-28 (8313 days, no missing values); prices are adjusted and rounded
to 3 decimals, so early, low-priced days have coarse returns.

Conventions: ``returns`` is a ``(T, N)`` float64 array, row ``t`` the simple return from
close ``t`` to close ``t + 1``, stamped with the date of close ``t + 1`` (the day it is
known). A window at split point ``t`` uses rows ``< t`` as history and rows ``>= t`` as
its future, so a policy fitted on the history never sees the returns it is scored on.
"""

from __future__ import annotations

import numpy as np

__all__ = ["load_prices", "load_returns", "rolling_windows", "split_periods"]


def load_prices() -> tuple[np.ndarray, list[str], np.ndarray]:
    """Load the daily closes shipped with ``skfolio``.

    Returns
    -------
    dates : ndarray of datetime64[D], shape (T + 1,)
    tickers : list of str, length N
    prices : ndarray of float64, shape (T + 1, N)

    Raises
    ------
    ImportError
        If ``skfolio`` is not installed (``pip install skfolio``; an optional
        ``examples`` dependency of ``cvxlpgd``).
    """
    try:
        from skfolio.datasets import load_sp500_dataset
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Markowitz example needs skfolio for its price data: pip install skfolio"
        ) from err
    frame = load_sp500_dataset().sort_index()
    dates = np.asarray(frame.index.values, dtype="datetime64[D]")
    prices = frame.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(prices)) or np.any(prices <= 0):
        raise ValueError("skfolio price data contains non-finite or non-positive closes")
    return dates, [str(t) for t in frame.columns], prices


def load_returns() -> tuple[np.ndarray, list[str], np.ndarray]:
    """Daily simple returns of the ``skfolio`` S&P 500 subset.

    Simple (not log) returns, because a portfolio's one-day return is then exactly
    ``returns[t] @ w``, which is what the back-test loss uses.

    Returns
    -------
    dates : ndarray of datetime64[D], shape (T,)
        Date at which each return is realized (the later of the two closes).
    tickers : list of str, length N
        Column order of ``returns`` (N = 20).
    returns : ndarray of float64, shape (T, N)
        ``prices[t + 1] / prices[t] - 1``; all finite.
    """
    dates, tickers, prices = load_prices()
    returns = prices[1:] / prices[:-1] - 1.0
    return dates[1:], tickers, returns


def rolling_windows(
    returns: np.ndarray, lookback: int, horizon: int, step: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut a return series into consecutive (history, future) back-test windows.

    Window ``j`` has split point ``t_j = lookback + j * step`` and consists of
    ``history = returns[t_j - lookback : t_j]`` and
    ``future = returns[t_j : t_j + horizon]``; windows run while the future fits.
    With ``step == horizon`` the futures tile the series without overlap, which is the
    usual back-test (rebalance every ``horizon`` days).

    Parameters
    ----------
    returns : ndarray, shape (T, N)
        Chronological returns.
    lookback : int
        Rows of history per window (>= 1).
    horizon : int
        Rows of future per window (>= 1).
    step : int
        Rows between consecutive split points (>= 1).

    Returns
    -------
    list of (history, future)
        ``history`` of shape ``(lookback, N)`` and ``future`` of shape ``(horizon, N)``;
        both are views into ``returns`` (copy before modifying). Empty if
        ``T < lookback + horizon``.
    """
    returns = np.asarray(returns)
    if returns.ndim != 2:
        raise ValueError(f"returns must have shape (T, N), got {returns.shape}")
    for name, value in (("lookback", lookback), ("horizon", horizon), ("step", step)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    T = returns.shape[0]
    return [
        (returns[t - lookback : t], returns[t : t + horizon])
        for t in range(lookback, T - horizon + 1, step)
    ]


def split_periods(
    returns: np.ndarray, train_fraction: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Split returns chronologically into a training period and a held-out period.

    The first ``round(train_fraction * T)`` rows train; the rest is held out. Build
    windows separately on each part (:func:`rolling_windows`) so no held-out return
    leaks into training, not even as history. To split ``dates`` the same way use
    ``dates[:len(train)]`` and ``dates[len(train):]``.

    Parameters
    ----------
    returns : ndarray, shape (T, ...)
        Chronological rows (returns or dates).
    train_fraction : float, default 0.7
        In ``(0, 1)``.

    Returns
    -------
    train : ndarray, shape (T_train, ...)
    held_out : ndarray, shape (T - T_train, ...)
        Both non-empty views into ``returns``.
    """
    returns = np.asarray(returns)
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    T = returns.shape[0]
    cut = int(round(train_fraction * T))
    if cut < 1 or cut >= T:
        raise ValueError(f"train_fraction={train_fraction} leaves an empty part of {T} rows")
    return returns[:cut], returns[cut:]
