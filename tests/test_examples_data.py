"""Data and model formulations of the paper-reproduction examples (no layer needed).

Sudoku: generator uniqueness/determinism, one-hot layout, exact rules recover solutions.
Markowitz: skfolio returns, look-ahead-free windows, DPP policy QP, back-test loss.
"""

from __future__ import annotations

import functools
import itertools

import cvxpy as cp
import numpy as np
import pytest

from examples.sudoku.model import build_sudoku_problem, random_rules, rule_rank, true_rules
from examples.sudoku.puzzles import (
    count_solutions,
    decode,
    generate_puzzles,
    one_hot,
    solve,
)

# --------------------------------------------------------------------------- Sudoku


def _is_valid_grid(grid: np.ndarray) -> bool:
    n = grid.shape[0]
    b = int(round(n**0.5))
    digits = set(range(1, n + 1))
    units = [grid[i, :] for i in range(n)] + [grid[:, j] for j in range(n)]
    units += [grid[r : r + b, c : c + b].ravel() for r in range(0, n, b) for c in range(0, n, b)]
    return all(set(u.tolist()) == digits for u in units)


@functools.cache
def _all_4x4_grids() -> np.ndarray:
    # Brute force over row permutations (pruned on columns, boxes checked at the end):
    # an independent check of the backtracking solver.
    perms = [np.array(p) for p in itertools.permutations(range(1, 5))]
    grids = [np.zeros((0, 4), dtype=int)]
    for _ in range(4):
        grids = [np.vstack([g, p]) for g in grids for p in perms if not np.any(g == p, axis=None)]
    return np.stack([g for g in grids if _is_valid_grid(g)])


@pytest.fixture(scope="module")
def puzzles4():
    return generate_puzzles(40, size=4, seed=0)


def test_4x4_grid_count_matches_brute_force():
    grids = _all_4x4_grids()
    assert len(grids) == 288  # known number of 4x4 Sudoku grids
    assert count_solutions(np.zeros((4, 4), dtype=int), limit=1000) == 288


def test_generated_4x4_puzzles_have_unique_solution(puzzles4):
    puzzles, solutions = puzzles4
    assert puzzles.shape == solutions.shape == (40, 4, 4)
    assert puzzles.dtype.kind == "i" and solutions.dtype.kind == "i"
    grids = _all_4x4_grids()
    for p, s in zip(puzzles, solutions):
        assert _is_valid_grid(s)
        assert np.all((p == 0) | (p == s))
        assert count_solutions(p) == 1
        # Brute force: exactly one of the 288 grids agrees with the givens, and it is s.
        matches = grids[np.all((grids == p) | (p == 0), axis=(1, 2))]
        assert len(matches) == 1 and np.array_equal(matches[0], s)


def test_unlimited_removal_gives_minimal_puzzles(puzzles4):
    puzzles, _ = puzzles4
    for p in puzzles[:10]:
        for r, c in zip(*np.nonzero(p)):
            q = p.copy()
            q[r, c] = 0
            assert count_solutions(q) == 2  # every remaining clue is needed


def test_min_givens_and_9x9():
    puzzles, solutions = generate_puzzles(3, size=9, seed=3, min_givens=30)
    assert puzzles.shape == (3, 9, 9)
    for p, s in zip(puzzles, solutions):
        assert _is_valid_grid(s)
        assert (p > 0).sum() >= 30
        assert np.all((p == 0) | (p == s))
        assert count_solutions(p) == 1
        assert np.array_equal(solve(p), s)
    p4, _ = generate_puzzles(10, size=4, seed=1, min_givens=8)
    assert np.all((p4 > 0).sum(axis=(1, 2)) >= 8)


def test_generator_deterministic_per_seed():
    a = generate_puzzles(12, size=4, seed=7)
    b = generate_puzzles(12, size=4, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # Puzzles are drawn sequentially, so a shorter run is a prefix of a longer one.
    c = generate_puzzles(5, size=4, seed=7)
    assert np.array_equal(c[0], a[0][:5]) and np.array_equal(c[1], a[1][:5])
    d = generate_puzzles(12, size=4, seed=8)
    assert not np.array_equal(a[0], d[0])
    assert not np.array_equal(a[1], d[1])


def test_count_solutions_edge_cases():
    conflict = np.zeros((4, 4), dtype=int)
    conflict[0, 0] = conflict[0, 3] = 1
    assert count_solutions(conflict) == 0
    assert solve(conflict) is None
    with pytest.raises(ValueError):
        generate_puzzles(1, size=5)
    with pytest.raises(ValueError):
        count_solutions(np.full((4, 4), 5))


def test_one_hot_layout_and_round_trip(puzzles4):
    puzzles, solutions = puzzles4
    z = one_hot(solutions)
    assert z.shape == (40, 64) and z.dtype == np.float64
    np.testing.assert_array_equal(z.reshape(40, 16, 4).sum(axis=-1), 1.0)
    i, r, c = 3, 1, 2
    d = solutions[i, r, c]
    assert z[i, (r * 4 + c) * 4 + d - 1] == 1.0
    np.testing.assert_array_equal(decode(z, 4), solutions)
    zp = one_hot(puzzles)
    np.testing.assert_array_equal(zp.reshape(40, 16, 4).sum(-1), (puzzles > 0).reshape(40, 16))
    np.testing.assert_array_equal(one_hot(solutions[0]), z[0])  # single board
    # decode accepts relaxed scores, e.g. a noisy one-hot.
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(decode(z + 0.3 * rng.random(z.shape), 4), solutions)


def test_true_rules_structure():
    A_full, b_full = true_rules(4, full_rank=False)
    A, b = true_rules(4)
    assert A_full.shape == (64, 64) and A.shape == (40, 64) == (rule_rank(4), 64)
    assert np.linalg.matrix_rank(A) == 40 and np.all(b == 1) and np.all(b_full == 1)
    # The kept rows are a subset of the full system and span the same row space.
    assert np.linalg.matrix_rank(np.vstack([A, A_full])) == 40
    _, solutions = generate_puzzles(5, size=4, seed=2)
    for s in solutions:
        np.testing.assert_allclose(A_full @ one_hot(s), b_full)
        np.testing.assert_allclose(A @ one_hot(s), b)
        bad = s.copy()
        bad[0, 0], bad[0, 1] = bad[0, 1], bad[0, 0]  # breaks the column rules
        assert not np.allclose(A @ one_hot(bad), b)
    A9, _ = true_rules(9)
    assert A9.shape == (249, 729)


def test_sudoku_problem_is_dpp():
    problem, params, z = build_sudoku_problem(4, 40, eps=0.1)
    assert problem.is_dpp()
    assert params["p"].shape == (64,) and params["A"].shape == (40, 64)
    assert params["b"].shape == (40,) and z.shape == (64,)


@pytest.mark.parametrize("full_rank", [True, False])
def test_true_rules_qp_recovers_solution(puzzles4, full_rank):
    puzzles, solutions = puzzles4
    A, b = true_rules(4, full_rank=full_rank)
    # eps <= 1/16 gave an exactly one-hot optimum on all of 500 minimal 4x4 puzzles;
    # eps = 0.1 (the default) still decodes correctly but z is no longer exactly one-hot.
    for eps, exact in ((0.05, True), (0.1, False)):
        problem, params, z = build_sudoku_problem(4, A.shape[0], eps=eps)
        params["A"].value, params["b"].value = A, b
        for p, s in zip(puzzles[:15], solutions[:15]):
            params["p"].value = one_hot(p)
            problem.solve(solver=cp.CLARABEL)
            assert problem.status == cp.OPTIMAL
            np.testing.assert_array_equal(decode(z.value, 4), s)
            if exact:
                np.testing.assert_allclose(z.value, one_hot(s), atol=1e-5)


def test_random_rules_strictly_feasible():
    A, b = random_rules(4, 40, seed=0)
    assert A.shape == (40, 64) and b.shape == (40,)
    np.testing.assert_allclose(A @ np.full(64, 0.25), b)
    problem, params, z = build_sudoku_problem(4, 40)
    params["A"].value, params["b"].value = A, b
    params["p"].value = one_hot(generate_puzzles(1, seed=0)[0][0])
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == cp.OPTIMAL


# ------------------------------------------------------------------------ Markowitz


@pytest.fixture(scope="module")
def sp500():
    pytest.importorskip("skfolio")
    from examples.markowitz.data import load_returns

    return load_returns()


def test_load_returns(sp500):
    from examples.markowitz.data import load_returns

    dates, tickers, returns = sp500
    T, N = returns.shape
    assert N == 20 and len(tickers) == N == len(set(tickers))
    assert T > 8000 and dates.shape == (T,)
    assert returns.dtype == np.float64 and np.all(np.isfinite(returns))
    assert np.all(returns > -1.0)  # prices stay positive
    assert np.all(np.diff(dates) > np.timedelta64(0, "D"))
    dates2, tickers2, returns2 = load_returns()
    assert tickers2 == tickers
    np.testing.assert_array_equal(dates2, dates)
    np.testing.assert_array_equal(returns2, returns)


def test_rolling_windows_no_lookahead(sp500):
    from examples.markowitz.data import rolling_windows

    # Rows carry their own index, so each window shows exactly which rows it used.
    T, lookback, horizon, step = 100, 20, 5, 7
    idx = np.repeat(np.arange(T, dtype=float)[:, None], 3, axis=1)
    windows = rolling_windows(idx, lookback, horizon, step)
    assert len(windows) == (T - lookback - horizon) // step + 1
    for j, (hist, fut) in enumerate(windows):
        t = lookback + j * step
        assert hist.shape == (lookback, 3) and fut.shape == (horizon, 3)
        np.testing.assert_array_equal(hist[:, 0], np.arange(t - lookback, t))
        np.testing.assert_array_equal(fut[:, 0], np.arange(t, t + horizon))
        assert hist[-1, 0] + 1 == fut[0, 0]  # future starts right after history ends
    assert windows[-1][1][-1, 0] <= T - 1
    assert rolling_windows(idx, 90, 20, 1) == []

    # Same on the real dates: every future date is after every history date.
    dates, _, returns = sp500
    date_windows = rolling_windows(dates[:, None], 250, 21, 21)
    ret_windows = rolling_windows(returns, 250, 21, 21)
    assert len(date_windows) == len(ret_windows) > 300
    for (hd, fd), (h, f) in zip(date_windows, ret_windows):
        assert hd.max() < fd.min()
        assert h.shape == (250, 20) and f.shape == (21, 20)


def test_split_periods(sp500):
    from examples.markowitz.data import split_periods

    dates, _, returns = sp500
    train, held = split_periods(returns, train_fraction=0.7)
    assert len(train) == round(0.7 * len(returns)) and len(train) + len(held) == len(returns)
    np.testing.assert_array_equal(np.vstack([train, held]), returns)
    d_train, d_held = split_periods(dates, 0.7)
    assert d_train.max() < d_held.min()
    with pytest.raises(ValueError):
        split_periods(returns, 1.0)


def _direct_policy_value(params, n, leverage_limit, long_only):
    # The textbook (non-DPP) formulation with constants, to check the DPP rewrite.
    w = cp.Variable(n)
    obj = (
        -params["mu"] @ w
        + params["gamma"] * cp.sum_squares(params["L"] @ w)
        + params["kappa"] * cp.norm1(w - params["w_prev"])
    )
    cons = [cp.sum(w) == 1, w >= 0] if long_only else [cp.sum(w) == 1]
    if not long_only:
        cons.append(cp.norm1(w) <= leverage_limit)
    return cp.Problem(cp.Minimize(obj), cons).solve(solver=cp.CLARABEL)


@pytest.mark.parametrize(("n_factors", "long_only"), [(None, False), (4, False), (None, True)])
def test_policy_dpp_and_feasible(sp500, n_factors, long_only):
    from examples.markowitz.data import rolling_windows
    from examples.markowitz.policy import build_policy, estimate_params

    _, _, returns = sp500
    n, lev = returns.shape[1], 1.5
    problem, params, w = build_policy(n, n_factors, leverage_limit=lev, long_only=long_only)
    assert problem.is_dpp() and problem.is_qp()
    k = n if n_factors is None else n_factors
    assert params["L"].shape == (k, n) and params["mu"].shape == (n,)
    assert params["gamma"].is_nonneg() and params["kappa"].is_nonneg()

    for hist, _ in rolling_windows(returns, 250, 21, 2000)[:3]:
        values = estimate_params(hist, n_factors, gamma=5.0, kappa=1e-3)
        for name, value in values.items():
            params[name].value = value
        problem.solve(solver=cp.CLARABEL)
        assert problem.status == cp.OPTIMAL
        x = w.value
        assert abs(x.sum() - 1) < 1e-7
        if long_only:
            assert x.min() > -1e-7
        else:
            assert np.abs(x).sum() <= lev + 1e-6
        assert problem.value == pytest.approx(
            _direct_policy_value(values, n, lev, long_only), rel=1e-5, abs=1e-8
        )


def test_estimate_params_factor():
    from examples.markowitz.policy import estimate_params

    hist = np.random.default_rng(0).normal(size=(60, 6)) * 0.01
    full = estimate_params(hist)
    np.testing.assert_allclose(full["L"].T @ full["L"], np.cov(hist.T), atol=1e-14)
    low = estimate_params(hist, n_factors=2)
    assert low["L"].shape == (2, 6)
    np.testing.assert_allclose(full["w_prev"], 1 / 6)


@pytest.mark.parametrize(("cost_rate", "with_init"), [(0.0, False), (2e-3, False), (2e-3, True)])
def test_backtest_loss_numpy_matches_torch(cost_rate, with_init):
    torch = pytest.importorskip("torch")
    from examples.markowitz.policy import backtest_loss, backtest_loss_torch, realized_returns

    rng = np.random.default_rng(1)
    P, H, N = 6, 5, 4
    weights = rng.dirichlet(np.ones(N), size=P)
    future = rng.normal(5e-4, 0.02, size=(P, H, N))
    w0 = np.full(N, 1 / N) if with_init else None
    loss_np = backtest_loss(weights, future, variance_penalty=3.0, cost_rate=cost_rate, w_init=w0)

    w_t = torch.tensor(weights, dtype=torch.float64, requires_grad=True)
    loss_t = backtest_loss_torch(
        w_t, torch.tensor(future), variance_penalty=3.0, cost_rate=cost_rate, w_init=w0
    )
    assert loss_t.item() == pytest.approx(loss_np, rel=1e-12, abs=1e-15)
    loss_t.backward()
    assert w_t.grad is not None and torch.isfinite(w_t.grad).all()

    # The documented formula, written out by hand.
    r = np.array([[future[p, h] @ weights[p] for h in range(H)] for p in range(P)])
    if cost_rate:
        start = 0 if with_init else 1
        prev = np.vstack([w0, weights[:-1]]) if with_init else weights[:-1]
        r[start:, 0] -= cost_rate * np.abs(weights[start:] - prev).sum(axis=1)
    np.testing.assert_allclose(realized_returns(weights, future, cost_rate, w0), r)
    assert loss_np == pytest.approx(-r.mean() + 3.0 * r.var(), rel=1e-12)

    # (P, N) future returns mean a one-day horizon.
    assert backtest_loss(weights, future[:, 0]) == pytest.approx(
        backtest_loss(weights, future[:, :1])
    )
