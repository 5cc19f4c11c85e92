"""Markowitz policy tuning on historical S&P 500 prices: GD with exact derivatives vs LPGD.

Run ``python -m examples.markowitz.train`` (full: 5 seeds; run times are on the
experiments page, docs/experiments.md) or ``python -m examples.markowitz.train --quick``
(a small run); ``--help`` lists options.

Data
    Daily returns of the 20 stocks shipped with ``skfolio``
    (:func:`examples.markowitz.data.load_returns`), in percent so that the policy's
    numbers are of order one for the solver. The first 70% of the days train, the rest
    is held out; each part is cut separately into monthly back-test windows of 250
    days of history and the following 21 days of future.
Policy
    Per window, :func:`examples.markowitz.policy.build_policy` (leverage limit 1.5)
    with plug-in inputs from the window's history (sample mean ``m``, square-root
    covariance ``L``) and learned corrections shared by all windows
    (:class:`examples.markowitz.backtest.Policy`)::

        mu     = a · m + δ            (a: forecast scale, δ: per-asset bias)
        gamma  = softplus(g)          (risk aversion, stays ≥ 0)
        kappa  = softplus(k)          (weight of ‖w − w_prev‖₁, stays ≥ 0)
        w_prev = last period's holdings (the equal-weight book before the first)

Back-test
    Holdings carry over: each period trades from the previous period's book and pays
    ``cost_rate · ‖w_p − w_{p−1}‖₁`` (default 0.1 in percent units: 10 basis points per
    unit traded), so κ prices real turnover (:mod:`examples.markowitz.backtest`). The
    loss is ``−mean(r) + variance_penalty · var(r)`` over the net daily returns ``r``.
Training
    Each iteration back-tests ``batch`` chains of ``chain`` consecutive months, started
    at random windows of the seed's training block, one batched layer call per month;
    the gradient flows through every month, ``w_prev`` included. The backward pass uses
    ``(batch · chain) × loss`` so that each window's incoming gradient, which LPGD
    scales by τ, does not shrink with the batch (Adam is invariant to the factor).
Seeds
    A seed draws the initial policy (``a = exp(N(0, 0.3²))``, ``δ ~ N(0, 0.02²)``,
    γ and κ within a factor e of the plug-in 0.1 and 0.01) and the chains' starts, and
    has its own training block (a contiguous 75% of the training windows); every
    method of a seed shares all three. The blocks' offsets are drawn without
    replacement (:func:`block_offset`), so different seeds train on different blocks.
    Within a month the book is held at its target weights: rebalancing back to them
    every day is assumed free, only the trade at the month's start is charged.
Target
    Independent of every method's curve: the back-test loss, on the seed's training
    block, of the best plug-in policy (``a = 1, δ = 0``) of a (γ, κ) grid
    (:func:`examples.markowitz.backtest.grid_baseline`) — "as good as tuning γ and κ by
    grid search".
"""

from __future__ import annotations

import numpy as np
import torch

from examples import analysis, common, stored
from examples.markowitz.backtest import (
    Policy,
    Windows,
    chain_returns,
    evaluate_chain,
    grid_baseline,
)
from examples.markowitz.data import load_returns, rolling_windows, split_periods
from examples.markowitz.policy import build_policy, mean_variance_loss

EXPERIMENT = "markowitz"
TAUS = (0.1, 1.0)
FULL = {"iterations": 80, "batch": 8, "chain": 6, "eval_every": 20}
QUICK = {"iterations": 6, "batch": 4, "chain": 3, "eval_every": 2}
GAMMAS = (0.03, 0.1, 0.3, 1.0, 3.0)
KAPPAS = (0.001, 0.01, 0.1, 1.0)
#: Seed of the one permutation that assigns training blocks to seeds (:func:`block_offset`).
BLOCK_DRAW = 20240
TITLE = "Markowitz policy tuning (S&P 500, skfolio, holdings carried, 10 bp costs)"
# Seeds differ in training block and start, so the curves show each seed's distance to
# its own target (the grid-searched plug-in policy): below 0 beats grid search.
PLOT = {
    "loss_label": "back-test loss − seed's target",
    "train": "train_gap",
    "heldout_label": "held-out back-test loss",
}


def block_offset(seed: int, positions: int) -> int:
    """The first training window of ``seed``'s block, drawn without replacement.

    One fixed permutation of the ``positions`` possible offsets (its own generator,
    :data:`BLOCK_DRAW`) gives seed ``k`` its entry ``k``: seeds ``0 .. positions − 1``
    get distinct blocks. (Runs before this change drew each seed's offset
    independently, and seeds 0 and 2 drew the same one.)

    Parameters
    ----------
    seed : int
    positions : int
        Number of possible offsets (training windows − block length + 1).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For a seed outside ``0 .. positions − 1`` (it would share a block).
    """
    if not 0 <= seed < positions:
        raise ValueError(
            f"seed {seed}: only seeds 0..{positions - 1} have blocks of their own "
            f"({positions} possible offsets)"
        )
    return int(np.random.default_rng(BLOCK_DRAW).permutation(positions)[seed])


def parse_args(argv=None):
    """Command-line options (shared ones from :func:`examples.common.base_parser`)."""
    parser = common.base_parser(
        "markowitz.train",
        "Tune a Markowitz policy QP by back-testing: exact GD vs LPGD.",
        taus=TAUS,
    )
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="chains per iteration")
    parser.add_argument("--chain", type=int, default=None, help="months per training chain")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="iterations between evaluations (denser over the first ones)",
    )
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument(
        "--variance-penalty",
        type=float,
        default=0.1,
        help="weight of the variance in the back-test loss (percent units)",
    )
    parser.add_argument(
        "--cost-rate",
        type=float,
        default=0.1,
        help="trading cost per unit of turnover, in percent (0.1 = 10 bp)",
    )
    parser.add_argument("--lookback", type=int, default=250, help="history days per window")
    parser.add_argument("--horizon", type=int, default=21, help="future days per window")
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument(
        "--block",
        type=float,
        default=0.75,
        help="share of the training windows in a seed's training block",
    )
    parser.add_argument(
        "--max-windows",
        type=int,
        default=None,
        help="keep only the last this many windows of each period (default: all; 40 with --quick)",
    )
    parser.add_argument("--solver", default="CLARABEL", choices=("SCS", "CLARABEL"))
    stored.add_store_option(parser, EXPERIMENT)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_windows is None and args.quick:
        args.max_windows = 40
    args.out = args.out or common.default_out(EXPERIMENT)
    if not args.seeds:
        args.seeds = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    return args


class MarkowitzTask:
    """Data, layer, per-seed set-up and evaluation shared by all runs of one invocation."""

    def __init__(self, args):
        self.args = args
        _, self.tickers, returns = load_returns()
        returns = 100.0 * returns  # percent: the QP's data are then of order one
        train, heldout = split_periods(returns, args.train_fraction)
        parts = []
        for part in (train, heldout):
            windows = rolling_windows(part, args.lookback, args.horizon, args.horizon)
            if args.max_windows:
                windows = windows[-args.max_windows :]
            parts.append(Windows(windows))
        self.train, self.heldout = parts
        self.n = returns.shape[1]
        problem, params, w = build_policy(self.n, leverage_limit=1.5)
        from cvxlpgd import CvxpyLayer

        self.layer = CvxpyLayer(
            problem,
            [params[k] for k in ("mu", "L", "gamma", "kappa", "w_prev")],
            [w],
            solver=args.solver,
        )
        self.block = max(args.chain, int(round(args.block * len(self.train))))
        self._seeds: dict[int, dict] = {}

    def seed_setup(self, seed: int) -> dict:
        """The seed's training block, initial policy and grid-search target (cached)."""
        if seed in self._seeds:
            return self._seeds[seed]
        args = self.args
        rng = np.random.default_rng([seed, 0])
        positions = len(self.train) - self.block + 1
        # Earlier runs drew the offset here, independently per seed; the draw stays so
        # that every seed keeps the initial policy it had, and is not used.
        rng.integers(0, positions)
        first = block_offset(seed, positions)
        gamma0 = args.variance_penalty * np.exp(rng.uniform(-1, 1))
        kappa0 = 0.01 * np.exp(rng.uniform(-1, 1))
        initial = {
            "a": float(np.exp(rng.normal(0, 0.3))),
            "delta": rng.normal(0, 0.02, self.n),
            "g": float(np.log(np.expm1(gamma0))),
            "k": float(np.log(np.expm1(kappa0))),
        }
        costs = {"cost_rate": args.cost_rate, "variance_penalty": args.variance_penalty}
        grid = grid_baseline(
            self.layer, self.train, first, self.block, gammas=GAMMAS, kappas=KAPPAS, **costs
        )
        grid_policy = self.policy(
            {
                "a": 1.0,
                "delta": np.zeros(self.n),
                "g": float(np.log(np.expm1(grid["gamma"]))),
                "k": float(np.log(np.expm1(grid["kappa"]))),
            }
        )
        grid["heldout"] = evaluate_chain(
            self.layer, grid_policy, self.heldout, 0, len(self.heldout), **costs
        )
        setup = {"first": first, "initial": initial, "grid": grid}
        self._seeds[seed] = setup
        return setup

    @staticmethod
    def policy(values: dict) -> Policy:
        """A trainable :class:`Policy` (fresh leaf tensors) from plain values."""

        def leaf(v):
            return torch.tensor(v, dtype=torch.float64).requires_grad_(True)

        return Policy(
            a=leaf(values["a"]),
            delta=leaf(values["delta"]),
            g=leaf(values["g"]),
            k=leaf(values["k"]),
        )

    def evaluate(self, policy: Policy, seed: int) -> tuple[dict, dict]:
        """Back-tests of ``policy`` on the seed's training block and on the held-out period."""
        args = self.args
        costs = {"cost_rate": args.cost_rate, "variance_penalty": args.variance_penalty}
        train = evaluate_chain(
            self.layer, policy, self.train, self.seed_setup(seed)["first"], self.block, **costs
        )
        held = evaluate_chain(self.layer, policy, self.heldout, 0, len(self.heldout), **costs)
        return train, held

    def run(self, method: common.Method, seed: int, log: common.RunLogger) -> None:
        """Train from the seed's initial policy with ``method``; evaluate now and then."""
        args = self.args
        setup = self.seed_setup(seed)
        policy = self.policy(setup["initial"])
        optimizer = torch.optim.Adam(policy.tensors(), lr=args.lr)
        # Chain starts within the training block: the same sequence for every method.
        rng = np.random.default_rng([seed, 1])
        last_start = setup["first"] + self.block - args.chain
        options = method.layer_options()
        periods = args.batch * args.chain

        def record(iteration):
            train, held = self.evaluate(policy, seed)
            with torch.no_grad():
                extras = {
                    "gamma": policy.gamma().item(),
                    "kappa": policy.kappa().item(),
                    "a": policy.a.item(),
                }
            log.log(
                iteration,
                train["loss"],
                held["loss"],
                train_sharpe=train["sharpe"],
                heldout_sharpe=held["sharpe"],
                heldout_turnover=held["turnover"],
                target=setup["grid"]["loss"],
                train_gap=train["loss"] - setup["grid"]["loss"],
                grid_heldout=setup["grid"]["heldout"]["loss"],
                **extras,
            )
            return train["loss"]

        loss = record(0)
        for iteration in range(1, args.iterations + 1):
            starts = rng.integers(setup["first"], last_start + 1, size=args.batch)
            with log.timed():
                optimizer.zero_grad()
                _, r = chain_returns(
                    self.layer, policy, self.train, starts, args.chain, args.cost_rate, **options
                )
                (periods * mean_variance_loss(r, args.variance_penalty)).backward()
                optimizer.step()
            log.tick(loss=f"{loss:.4f}")
            # Denser evaluations early, where the methods differ most.
            early = iteration <= args.eval_every and iteration % max(1, args.eval_every // 4) == 0
            if early or iteration % args.eval_every == 0 or iteration == args.iterations:
                loss = record(iteration)


def _std(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def main(argv=None) -> dict:
    """Run the experiment; returns the paths written and the summary text.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``), e.g.
        ``["--quick", "--out", "/tmp/markowitz"]``.

    Returns
    -------
    dict
        ``csv``, ``png``, ``summary_path`` and ``summary`` (see :func:`examples.analysis.finish`).
    """
    state = stored.start("examples.markowitz.train", argv)
    args = parse_args(argv)
    task = MarkowitzTask(args)
    methods = common.make_methods(args.taus, exact=not args.no_exact)
    rows = common.run_grid(
        EXPERIMENT,
        methods,
        args.seeds,
        task.run,
        iterations_per_run=args.iterations,
        progress=not args.no_progress,
    )
    grids = {seed: task.seed_setup(seed)["grid"] for seed in args.seeds}
    target = (
        {seed: args.target for seed in args.seeds}
        if args.target is not None
        else {seed: grid["loss"] for seed, grid in grids.items()}
    )
    initial = [
        r["train_loss"] for r in rows if r["iteration"] == 0 and r["method"] == methods[0].name
    ]
    grid_loss = np.array([g["loss"] for g in grids.values()])
    grid_held = np.array([g["heldout"]["loss"] for g in grids.values()])
    notes = (
        f"Seeds {' '.join(map(str, args.seeds))}; training blocks of {task.block} of "
        f"{len(task.train)} training windows, {len(task.heldout)} held-out windows "
        f"({args.lookback} days of history, {args.horizon} of future); "
        f"{args.iterations} iterations of {args.batch} chains × {args.chain} months, "
        f"Adam lr {args.lr}, variance penalty {args.variance_penalty}, trading cost "
        f"{args.cost_rate} % per unit turnover, solver {args.solver}. Initial training "
        f"loss {np.mean(initial):.4g} ± {_std(initial):.2g}. Target: "
        + (
            "given by --target."
            if args.target is not None
            else f"per seed, the (γ, κ)-grid plug-in policy's training loss "
            f"({grid_loss.mean():.4g} ± {_std(grid_loss):.2g}; its held-out loss "
            f"{grid_held.mean():.4g} ± {_std(grid_held):.2g}). Stds: sample (ddof = 1)."
        )
    )
    paths = analysis.finish(
        rows,
        args.out,
        title=TITLE,
        target=target,
        extra=("heldout_sharpe", "heldout_turnover"),
        loss_name="back-test loss",
        notes=notes,
        plot_kwargs=PLOT,
    )
    return {**paths, **stored.finish(state, args, args.out, experiment=EXPERIMENT, name=EXPERIMENT)}


if __name__ == "__main__":
    main()
