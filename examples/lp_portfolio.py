"""The degenerate LP: learning returns through a long-only portfolio LP.

Run ``python -m examples.lp_portfolio`` (full; run times are on the experiments page,
docs/experiments.md) or ``python -m examples.lp_portfolio --quick``; ``--help`` lists
options.

Each scenario ``k`` has features ``φ_k`` and true asset returns ``r_k = W* φ_k``
(optionally plus noise). A linear model predicts ``r̂_k = Θ φ_k``, and the layer picks
the portfolio

    w_k = argmax r̂_kᵀ w   s.t.  Σ w = 1,  w ≥ 0,

a vertex: all weight on the asset the model ranks first. The loss is the regret
``max_i r_k,i − r_kᵀ w_k`` averaged over scenarios (0 = always the best asset). The
solution map is piecewise constant in ``r̂``, so its exact derivative is zero almost
everywhere: gradient descent with the exact derivative never moves. LPGD re-solves the
LP with the returns tilted by ``τ · r_k`` and sees the better vertex, so it learns.

Plain SGD (no momentum, no Adam): Adam would blow up the round-off-sized values the
exact path returns into full-size steps, which hides what the derivative really is.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import torch

from examples import analysis, common, stored

EXPERIMENT = "lp_portfolio"
TAUS = (0.3, 1.0, 3.0, 10.0)
FULL = {"iterations": 100, "scenarios": 200, "eval_every": 5}
QUICK = {"iterations": 15, "scenarios": 40, "eval_every": 5}
TITLE = "Long-only portfolio LP (degenerate)"
PLOT = {"loss_label": "regret", "heldout_label": "held-out regret"}


def parse_args(argv=None):
    """Command-line options (shared ones from :func:`examples.common.base_parser`)."""
    parser = common.base_parser(
        "lp_portfolio",
        "Learn returns through a long-only portfolio LP: exact GD vs LPGD.",
        taus=TAUS,
    )
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument(
        "--scenarios",
        type=int,
        default=None,
        help="training scenarios (as many again are held out)",
    )
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--lr", type=float, default=10.0, help="SGD learning rate")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="std of noise on the true returns (0: the model is realizable)",
    )
    parser.add_argument("--solver", default="CLARABEL", choices=("SCS", "CLARABEL", "ECOS"))
    stored.add_store_option(parser, EXPERIMENT)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or common.default_out(EXPERIMENT)
    args.seeds = common.default_seeds(args)
    return args


def build_lp(n_assets: int) -> tuple[cp.Problem, cp.Parameter, cp.Variable]:
    """``maximize rᵀw s.t. Σw = 1, w ≥ 0`` with parameter ``r`` and variable ``w``."""
    w = cp.Variable(n_assets, name="w")
    r = cp.Parameter(n_assets, name="r")
    return cp.Problem(cp.Maximize(r @ w), [cp.sum(w) == 1, w >= 0]), r, w


def regret(w: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Per-scenario regret ``max_i r_i − rᵀw`` (≥ 0 for feasible ``w``)."""
    return returns.max(dim=-1).values - (returns * w).sum(dim=-1)


class LPTask:
    """Layer shared by all runs; data drawn per seed."""

    def __init__(self, args):
        self.args = args
        problem, r, w = build_lp(args.assets)
        from cvxlpgd import CvxpyLayer

        self.layer = CvxpyLayer(problem, [r], [w], solver=args.solver)
        self._data: dict[int, tuple] = {}

    def data(self, seed: int):
        """Features, true returns (train, held-out) and the initial model of ``seed``."""
        if seed not in self._data:
            a = self.args
            rng = np.random.default_rng(seed)
            W_true = rng.standard_normal((a.assets, a.features))
            phi = rng.standard_normal((2 * a.scenarios, a.features))
            returns = phi @ W_true.T + a.noise * rng.standard_normal((2 * a.scenarios, a.assets))
            theta0 = rng.standard_normal((a.assets, a.features))
            split = a.scenarios
            t = torch.tensor
            self._data[seed] = (
                (t(phi[:split]), t(returns[:split])),
                (t(phi[split:]), t(returns[split:])),
                t(theta0),
            )
        return self._data[seed]

    def evaluate(self, theta: torch.Tensor, phi: torch.Tensor, returns: torch.Tensor) -> float:
        with torch.no_grad():
            (w,) = self.layer(phi @ theta.T)
            return regret(w, returns).mean().item()

    def run(self, method: common.Method, seed: int, log: common.RunLogger) -> None:
        """Full-batch SGD on the mean regret from the seed's random model."""
        args = self.args
        (phi, returns), (phi_h, returns_h), theta0 = self.data(seed)
        theta = theta0.clone().requires_grad_(True)
        optimizer = torch.optim.SGD([theta], lr=args.lr)
        options = method.layer_options()

        def record(iteration):
            train = self.evaluate(theta, phi, returns)
            held = self.evaluate(theta, phi_h, returns_h)
            log.log(iteration, train, held, grad_norm=grad_norm)
            return train

        grad_norm = float("nan")
        loss = record(0)
        for iteration in range(1, args.iterations + 1):
            with log.timed():
                optimizer.zero_grad()
                (w,) = self.layer(phi @ theta.T, **options)
                # Mean over scenarios for the reported loss; the sum backpropagates, so
                # each scenario's incoming gradient (scaled by τ in LPGD) is its own.
                regret(w, returns).sum().backward()
                theta.grad /= len(phi)
                optimizer.step()
            grad_norm = theta.grad.norm().item()
            log.tick(loss=f"{loss:.4f}")
            if iteration % args.eval_every == 0 or iteration == args.iterations:
                loss = record(iteration)


def main(argv=None) -> dict:
    """Run the experiment; returns the paths written and the summary text.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``), e.g.
        ``["--quick", "--out", "/tmp/lp"]``.
    """
    state = stored.start("examples.lp_portfolio", argv)
    args = parse_args(argv)
    task = LPTask(args)
    methods = common.make_methods(args.taus, exact=not args.no_exact)
    rows = common.run_grid(
        EXPERIMENT,
        methods,
        args.seeds,
        task.run,
        iterations_per_run=args.iterations,
        progress=not args.no_progress,
    )
    # Fixed target: a tenth of the typical initial regret of a random model.
    initial = [r["train_loss"] for r in rows if r["iteration"] == 0]
    target = args.target if args.target is not None else 0.1 * float(np.mean(initial))
    notes = (
        f"{args.assets} assets, {args.features} features, {args.scenarios} training / "
        f"{args.scenarios} held-out scenarios, noise {args.noise}, {args.iterations} "
        f"full-batch SGD steps, lr {args.lr}, solver {args.solver}. Loss: mean regret "
        "(0 = best asset every time). Target: "
        + ("given by --target." if args.target is not None else "10% of the mean initial regret.")
    )
    paths = analysis.finish(
        rows,
        args.out,
        title=TITLE,
        target=target,
        loss_name="regret",
        notes=notes,
        plot_kwargs=PLOT,
    )
    return {**paths, **stored.finish(state, args, args.out, experiment=EXPERIMENT, name=EXPERIMENT)}


if __name__ == "__main__":
    main()
