"""Markowitz policy tuning on historical S&P 500 prices: GD with exact derivatives vs LPGD.

Run ``python -m examples.markowitz.train`` (full, about 10 minutes on 2 cores) or
``python -m examples.markowitz.train --quick`` (under a minute); ``--help`` lists options.

Data
    Daily returns of the 20 stocks shipped with ``skfolio``
    (:func:`examples.markowitz.data.load_returns`), in percent so that the policy's
    numbers are of order one for the solver. The first 70% of the days train, the rest
    is held out; each part is cut separately into back-test windows of 250 days of
    history and the following 21 days (a month) of future, one window per month.
Policy
    Per window, :func:`examples.markowitz.policy.build_policy` (leverage limit 1.5)
    with plug-in inputs from the window's history (sample mean ``m``, square-root
    covariance ``L``) and learned corrections shared by all windows::

        mu     = a · m + δ            (a: forecast scale, δ: per-asset bias)
        gamma  = softplus(g)          (risk aversion, stays ≥ 0)
        kappa  = softplus(k)          (weight of ‖w − w_prev‖₁, stays ≥ 0)
        w_prev = 1/N                  (the equal-weight book every window starts from)

    ``w_prev`` is the same for every window so that the windows are independent and a
    whole batch of them is one layer call; ``kappa`` therefore prices the trades away
    from the equal-weight portfolio. Start: ``a = 1, δ = 0``, ``gamma`` equal to the
    back-test's own risk weight and ``kappa = 0.01`` — the textbook plug-in policy.
Loss
    :func:`examples.markowitz.policy.backtest_loss_torch`: minus the mean daily return
    plus ``variance_penalty`` times its variance, all days of the batch's windows
    pooled (units: percent per day). Lower is better; negative values are gains. The
    backward pass uses ``batch × loss`` so that each window's incoming gradient, which
    LPGD scales by τ, does not shrink with the batch size (Adam is invariant to it).
"""

from __future__ import annotations

import numpy as np
import torch

from examples import common
from examples.markowitz.data import load_returns, rolling_windows, split_periods
from examples.markowitz.policy import backtest_loss_torch, build_policy, estimate_params

EXPERIMENT = "markowitz"
TAUS = (0.01, 0.1, 1.0, 10.0)
FULL = {"iterations": 300, "batch": 32, "eval_every": 20}
QUICK = {"iterations": 6, "batch": 8, "eval_every": 2}
TITLE = "Markowitz policy tuning (S&P 500, skfolio)"
PLOT = {"loss_label": "back-test loss", "heldout_label": "held-out back-test loss"}


def parse_args(argv=None):
    """Command-line options (shared ones from :func:`examples.common.base_parser`)."""
    parser = common.base_parser(
        "markowitz.train", "Tune a Markowitz policy QP by back-testing: exact GD vs LPGD.",
        taus=TAUS)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None, help="windows per iteration")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="iterations between evaluations on all windows")
    parser.add_argument("--lr", type=float, default=0.05, help="Adam learning rate")
    parser.add_argument("--variance-penalty", type=float, default=0.1,
                        help="weight of the variance in the back-test loss (percent units)")
    parser.add_argument("--lookback", type=int, default=250, help="history days per window")
    parser.add_argument("--horizon", type=int, default=21, help="future days per window")
    parser.add_argument("--train-fraction", type=float, default=0.7)
    parser.add_argument("--max-windows", type=int, default=None,
                        help="keep only the last this many windows of each period "
                             "(default: all; 40 with --quick)")
    parser.add_argument("--solver", default="CLARABEL", choices=("SCS", "CLARABEL"))
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.max_windows is None and args.quick:
        args.max_windows = 40
    args.out = args.out or common.default_out(EXPERIMENT)
    args.seeds = common.default_seeds(args)
    return args


class Windows:
    """Plug-in inputs and realized futures of a list of back-test windows, as tensors."""

    def __init__(self, windows):
        estimates = [estimate_params(history) for history, _ in windows]
        self.mean = torch.tensor(np.stack([e["mu"] for e in estimates]))
        self.L = torch.tensor(np.stack([e["L"] for e in estimates]))
        self.future = torch.tensor(np.stack([future for _, future in windows]))

    def __len__(self) -> int:
        return self.future.shape[0]


class MarkowitzTask:
    """Data, layer and evaluation shared by all runs of one invocation."""

    def __init__(self, args):
        self.args = args
        _, self.tickers, returns = load_returns()
        returns = 100.0 * returns  # percent: the QP's data are then of order one
        train, heldout = split_periods(returns, args.train_fraction)
        parts = []
        for part in (train, heldout):
            windows = rolling_windows(part, args.lookback, args.horizon, args.horizon)
            if args.max_windows:
                windows = windows[-args.max_windows:]
            parts.append(Windows(windows))
        self.train, self.heldout = parts
        self.n = returns.shape[1]
        problem, params, w = build_policy(self.n, leverage_limit=1.5)
        from cvxlpgd import CvxpyLayer

        self.layer = CvxpyLayer(
            problem, [params[k] for k in ("mu", "L", "gamma", "kappa", "w_prev")], [w],
            solver=args.solver)
        self.w_prev = torch.full((self.n,), 1.0 / self.n, dtype=torch.float64)

    def initial_parameters(self) -> dict[str, torch.Tensor]:
        """The plug-in policy: a = 1, δ = 0, gamma = variance penalty, kappa = 0.01."""
        def raw(value):  # inverse softplus
            return float(np.log(np.expm1(value)))

        return {"a": torch.tensor(1.0, dtype=torch.float64),
                "delta": torch.zeros(self.n, dtype=torch.float64),
                "g": torch.tensor(raw(self.args.variance_penalty), dtype=torch.float64),
                "k": torch.tensor(raw(0.01), dtype=torch.float64)}

    def weights(self, theta: dict, data: Windows, idx, **options) -> torch.Tensor:
        """Policy weights of the windows ``idx`` (one batched layer call)."""
        mu = theta["a"] * data.mean[idx] + theta["delta"]
        gamma = torch.nn.functional.softplus(theta["g"])
        kappa = torch.nn.functional.softplus(theta["k"])
        (w,) = self.layer(mu, data.L[idx], gamma, kappa, self.w_prev, **options)
        return w

    def loss(self, w: torch.Tensor, data: Windows, idx) -> torch.Tensor:
        return backtest_loss_torch(w, data.future[idx],
                                   variance_penalty=self.args.variance_penalty)

    def evaluate(self, theta: dict, data: Windows) -> tuple[float, float]:
        """Back-test loss and annualized Sharpe ratio over all windows of ``data``."""
        idx = np.arange(len(data))
        with torch.no_grad():
            w = self.weights(theta, data, idx)
            loss = self.loss(w, data, idx).item()
            daily = torch.einsum("phn,pn->ph", data.future, w).flatten()
        sharpe = float(daily.mean() / daily.std() * np.sqrt(252))
        return loss, sharpe

    def run(self, method: common.Method, seed: int, log: common.RunLogger) -> None:
        """Train from the plug-in policy with ``method``; evaluate every few iterations."""
        args = self.args
        theta = {k: v.clone().requires_grad_(True) for k, v in self.initial_parameters().items()}
        optimizer = torch.optim.Adam(theta.values(), lr=args.lr)
        # The seed only changes the minibatch order (the same for every method).
        rng = np.random.default_rng(seed)
        options = method.layer_options()
        batches = _minibatches(len(self.train), args.batch, rng)

        def record(iteration):
            train_loss, train_sharpe = self.evaluate(theta, self.train)
            held_loss, held_sharpe = self.evaluate(theta, self.heldout)
            with torch.no_grad():
                extras = {"gamma": torch.nn.functional.softplus(theta["g"]).item(),
                          "kappa": torch.nn.functional.softplus(theta["k"]).item(),
                          "a": theta["a"].item()}
            log.log(iteration, train_loss, held_loss, train_sharpe=train_sharpe,
                    heldout_sharpe=held_sharpe, **extras)
            return train_loss

        loss = record(0)
        for iteration in range(1, args.iterations + 1):
            idx = next(batches)
            with log.timed():
                optimizer.zero_grad()
                w = self.weights(theta, self.train, idx, **options)
                (len(idx) * self.loss(w, self.train, idx)).backward()
                optimizer.step()
            log.tick(loss=f"{loss:.4f}")
            # Denser evaluations early, where the methods differ most.
            early = iteration <= 4 * args.eval_every and iteration % max(
                1, args.eval_every // 4) == 0
            if early or iteration % args.eval_every == 0 or iteration == args.iterations:
                loss = record(iteration)


def _minibatches(count: int, batch: int, rng: np.random.Generator):
    """Endless minibatches of indices: reshuffled epochs, the last short batch dropped."""
    batch = min(batch, count)
    while True:
        perm = rng.permutation(count)
        for start in range(0, count - batch + 1, batch):
            yield np.sort(perm[start:start + batch])


def main(argv=None) -> dict:
    """Run the experiment; returns the paths written and the summary text.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``), e.g.
        ``["--quick", "--out", "/tmp/markowitz"]``.
    """
    args = parse_args(argv)
    task = MarkowitzTask(args)
    methods = common.make_methods(args.taus, exact=not args.no_exact)
    rows = common.run_grid(EXPERIMENT, methods, args.seeds, task.run,
                           iterations_per_run=args.iterations, progress=not args.no_progress)
    target = args.target if args.target is not None else common.gd_improvement_target(rows)
    notes = (f"{len(task.train)} training / {len(task.heldout)} held-out windows "
             f"({args.lookback} days of history, {args.horizon} days of future), "
             f"{args.iterations} iterations of {args.batch} windows, Adam lr {args.lr}, "
             f"variance penalty {args.variance_penalty}, solver {args.solver}. "
             "Loss: −mean + penalty·variance of the daily back-test returns, in percent. "
             "Target: " + ("given by --target." if args.target is not None else
                           "80% of GD's improvement (initial − 0.8·(initial − final), GD means)."))
    return common.finish(rows, args.out, title=TITLE, target=target,
                         extra=("heldout_sharpe",), loss_name="back-test loss", notes=notes,
                         plot_kwargs=PLOT)


if __name__ == "__main__":
    main()
