"""Learning the rules of Sudoku (OptNet setup): GD with exact derivatives vs LPGD.

Run ``python -m examples.sudoku.train`` (the full 4×4 run),
``python -m examples.sudoku.train --size 9`` (9×9, the paper's boards; see
``FULL9`` for its sizes) or ``--quick`` (a small run); ``--help`` lists options. Run
times and costs per step are on the experiments page (docs/experiments.md).

Model
    The layer ``minimize −pᵀz + (ε/2)‖z‖²  s.t.  Az = b, z ≥ 0``
    (:func:`examples.sudoku.model.build_sudoku_problem`), p the one-hot givens of a
    puzzle. The rules are learned: ``A`` directly, and ``b = A·exp(log z₀)`` through a
    learned positive point ``z₀`` — OptNet's parametrization, which keeps every iterate
    feasible (``z₀ > 0`` satisfies ``Az₀ = b``), so no solve can fail as infeasible. The
    start is :func:`examples.sudoku.model.random_rules` (``z₀ = 1/size``), one draw
    per seed; every method starts from the same draw.
Loss
    Mean squared error between the layer's ``z`` and the one-hot solution, averaged over
    the ``size³`` entries of a puzzle (OptNet's loss), reported as the mean over
    puzzles. The backward pass uses the *sum* over the batch, so that the incoming
    gradient of each puzzle — which LPGD scales by τ — does not shrink with the batch
    size; Adam's update is invariant to that constant factor.
Metrics
    Per epoch: training loss on the whole training set, held-out loss, held-out board
    accuracy (whole board correct after :func:`examples.sudoku.puzzles.decode`) and
    cell accuracy, and training wall time (evaluations excluded).
"""

from __future__ import annotations

import numpy as np
import torch

from examples import analysis, common, stored
from examples.sudoku.model import build_sudoku_problem, random_rules, rule_rank, true_rules
from examples.sudoku.puzzles import decode, generate_puzzles, one_hot

EXPERIMENT = "sudoku"
TAUS = (0.1, 1.0, 10.0, 100.0)
FULL = {"train": 200, "heldout": 100, "batch": 20, "epochs": 25}
QUICK = {"train": 40, "heldout": 20, "batch": 10, "epochs": 3}
# 9x9 is sized for a 2-core CPU, far below the paper's scale: with the dense learned A
# (249 x 729), SCS needs 300-2000 iterations per solve once A has moved from its random
# start (the CPU time per step is measured on the experiments page).
# eps = 0.05: the true rules then decode 27.5% of 30-given boards (95% of cells); at
# 0.1 only 2.5% (eps -> 0 is tighter, but the random start's z grows like 1/eps).
FULL9 = {"train": 16, "heldout": 8, "batch": 4, "epochs": 2, "eps": 0.05, "solver": "SCS"}
QUICK9 = {"train": 4, "heldout": 2, "batch": 4, "epochs": 1, "eps": 0.05, "solver": "SCS"}
TAUS9 = [10.0]  # the best τ of the 4x4 scan; one τ to fit the budget
PLOT = {
    "loss_label": "MSE",
    "heldout": "heldout_board_acc",
    "heldout_label": "held-out board accuracy",
    "log_y": True,
}


def parse_args(argv=None):
    """Command-line options (shared ones from :func:`examples.common.base_parser`)."""
    parser = common.base_parser(
        "sudoku.train", "Learn Sudoku rules A, b through a QP layer: exact GD vs LPGD.", taus=TAUS
    )
    parser.add_argument("--size", type=int, default=4, choices=(4, 9), help="board side")
    parser.add_argument("--train", type=int, default=None, help="training puzzles")
    parser.add_argument("--heldout", type=int, default=None, help="held-out puzzles")
    parser.add_argument("--batch", type=int, default=None, help="puzzles per iteration")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.03, help="Adam learning rate")
    parser.add_argument(
        "--eps",
        type=float,
        default=None,
        help="QP regularization ε (default 0.1 for 4x4, 0.05 for 9x9: with "
        "0.1 even the true rules decode few 9x9 boards)",
    )
    parser.add_argument(
        "--constraints",
        type=int,
        default=None,
        help="rows of A (default: rank of the true rules, 40 for 4x4)",
    )
    parser.add_argument(
        "--min-givens",
        type=int,
        default=None,
        help="givens per puzzle (default: minimal puzzles for 4x4, 30 for 9x9)",
    )
    parser.add_argument(
        "--solver",
        default=None,
        choices=("SCS", "CLARABEL", "MOREAU", "auto"),
        help="conic solver (default Clarabel for 4x4: its iteration count does "
        "not grow with τ, unlike warm-started SCS; SCS for 9x9, see FULL9)",
    )
    parser.add_argument(
        "--target-rule",
        choices=("gd80", "givens"),
        default=None,
        help="how the summary's target is set: 'gd80', 80%% of GD's "
        "improvement (4x4 default); 'givens', the training MSE of the "
        "rule-free guess (givens, 1/size on blanks), independent of every "
        "method's curve (9x9 default)",
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the puzzle set")
    stored.add_store_option(parser, "sudoku", " (sudoku9.* with --size 9)")
    args = parser.parse_args(argv)
    if args.size == 9:
        sizes = QUICK9 if args.quick else FULL9
        args.target_rule = args.target_rule or "givens"
        if args.taus == list(TAUS):  # not given on the command line
            args.taus = list(TAUS9)
    else:
        sizes = {**(QUICK if args.quick else FULL), "eps": 0.1, "solver": "CLARABEL"}
        args.target_rule = args.target_rule or "gd80"
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.constraints is None:
        args.constraints = rule_rank(args.size)
    if args.min_givens is None and args.size == 9:
        # Minimal 9x9 puzzles are beyond the LP relaxation even with the true rules.
        args.min_givens = 30
    args.out = args.out or common.default_out(EXPERIMENT)
    args.seeds = common.default_seeds(args)
    return args


class SudokuTask:
    """Data, layer and evaluation shared by all runs of one invocation."""

    def __init__(self, args):
        self.args = args
        total = args.train + args.heldout
        puzzles, solutions = generate_puzzles(
            total, size=args.size, seed=args.data_seed, min_givens=args.min_givens
        )
        self.p = torch.tensor(one_hot(puzzles))
        self.z_true = torch.tensor(one_hot(solutions))
        self.solutions = solutions
        self.train_idx = np.arange(args.train)
        self.heldout_idx = np.arange(args.train, total)
        self.layer = self.make_layer(getattr(args, "exact_backend", "auto"))

    def make_layer(self, exact_backend: str = "auto"):
        """The Sudoku QP layer of these options, with the given ``exact_backend``."""
        from cvxlpgd import CvxpyLayer

        args = self.args
        problem, params, z = build_sudoku_problem(args.size, args.constraints, eps=args.eps)
        return CvxpyLayer(
            problem,
            [params["p"], params["A"], params["b"]],
            [z],
            solver=args.solver,
            exact_backend=exact_backend,
        )

    def warm_up(self, methods) -> None:
        """One untimed step per gradient kind: the exact path compiles its conic form
        on first use (tens of seconds for 9x9), a one-off cost that is not training."""
        A0, _ = random_rules(self.args.size, self.args.constraints, seed=0)
        A = torch.tensor(A0, requires_grad=True)
        log_z0 = torch.full((self.args.size**3,), -np.log(self.args.size), dtype=torch.float64)
        for options in {m.gradient: m.layer_options() for m in methods}.values():
            (z,) = self.layer(self.p[:1], A, A @ log_z0.exp(), **options)
            z.sum().backward()

    def givens_baseline_loss(self) -> float:
        """Training MSE of the rule-free guess: the givens, and 1/size on every blank.

        A learned rule set that does not beat it has learned nothing beyond copying
        the givens; it depends on the data only, not on any method's curve.
        """
        size = self.args.size
        guess = self.p[self.train_idx].clone().reshape(len(self.train_idx), size * size, size)
        blank = guess.sum(dim=-1) == 0
        guess[blank] = 1.0 / size
        return float(
            self.per_puzzle_loss(
                guess.reshape(len(self.train_idx), -1), self.z_true[self.train_idx]
            ).mean()
        )

    def true_rules_reference(self) -> dict:
        """Loss and accuracies of the exact rules: the ceiling of what can be learned."""
        A, _ = true_rules(self.args.size)
        # b = A z0 with z0 = 1/size gives b = 1, the rules' right-hand side.
        log_z0 = torch.full((self.args.size**3,), -np.log(self.args.size), dtype=torch.float64)
        return self.evaluate(torch.tensor(A), log_z0, self.heldout_idx)

    @staticmethod
    def per_puzzle_loss(z: torch.Tensor, z_true: torch.Tensor) -> torch.Tensor:
        """MSE over the ``size³`` one-hot entries, one value per puzzle."""
        return ((z - z_true) ** 2).mean(dim=-1)

    def evaluate(self, A: torch.Tensor, log_z0: torch.Tensor, idx: np.ndarray) -> dict:
        """Loss, board accuracy and cell accuracy on the puzzles ``idx`` (no gradient)."""
        with torch.no_grad():
            b = A @ log_z0.exp()
            (z,) = self.layer(self.p[idx], A, b)
            loss = self.per_puzzle_loss(z, self.z_true[idx]).mean().item()
        boards = decode(z.numpy(), self.args.size)
        correct = boards == self.solutions[idx]
        return {
            "loss": loss,
            "board_acc": float(correct.all(axis=(1, 2)).mean()),
            "cell_acc": float(correct.mean()),
        }

    def run(self, method: common.Method, seed: int, log: common.RunLogger, on_step=None) -> None:
        """Train from the seed's random rules with ``method``; log once per epoch.

        ``on_step(step, idx, A, log_z0)``, when given, is called before each training
        step (``idx`` the step's minibatch), outside the timed work: the side checks of
        :mod:`examples.sudoku.checks` look at the trajectory through it.
        """
        args = self.args
        A0, _ = random_rules(args.size, args.constraints, seed=seed)
        A = torch.tensor(A0, requires_grad=True)
        # b = A z0 with z0 = exp(log_z0) = 1/size reproduces random_rules' b exactly.
        log_z0 = torch.full(
            (args.size**3,), -np.log(args.size), dtype=torch.float64, requires_grad=True
        )
        optimizer = torch.optim.Adam([A, log_z0], lr=args.lr)
        # Same minibatch order for every method of a seed.
        order = np.random.default_rng(seed)
        options = method.layer_options()
        iteration = 0

        def record(epoch):
            train = self.evaluate(A, log_z0, self.train_idx)
            held = self.evaluate(A, log_z0, self.heldout_idx)
            log.log(
                iteration,
                train["loss"],
                held["loss"],
                epoch=epoch,
                train_board_acc=train["board_acc"],
                heldout_board_acc=held["board_acc"],
                heldout_cell_acc=held["cell_acc"],
            )
            return train["loss"]

        loss = record(0)
        for epoch in range(1, args.epochs + 1):
            perm = order.permutation(self.train_idx)
            for start in range(0, len(perm), args.batch):
                idx = perm[start : start + args.batch]
                if on_step is not None:
                    on_step(iteration, idx, A, log_z0)
                with log.timed():
                    optimizer.zero_grad()
                    b = A @ log_z0.exp()
                    (z,) = self.layer(self.p[idx], A, b, **options)
                    self.per_puzzle_loss(z, self.z_true[idx]).sum().backward()
                    optimizer.step()
                iteration += 1
                log.tick(loss=f"{loss:.4f}")
            loss = record(epoch)


def main(argv=None) -> dict:
    """Run the experiment; returns the paths written and the summary text.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``), e.g.
        ``["--quick", "--out", "/tmp/sudoku"]``.
    """
    state = stored.start("examples.sudoku.train", argv)
    args = parse_args(argv)
    task = SudokuTask(args)
    methods = common.make_methods(args.taus, exact=not args.no_exact)
    task.warm_up(methods)
    iterations = args.epochs * -(-args.train // args.batch)
    rows = common.run_grid(
        EXPERIMENT,
        methods,
        args.seeds,
        task.run,
        iterations_per_run=iterations,
        progress=not args.no_progress,
    )
    initial = float(np.mean([r["train_loss"] for r in rows if r["iteration"] == 0]))
    if args.target is not None:
        target, rule = args.target, "given by --target."
    elif args.target_rule == "givens":
        target = task.givens_baseline_loss()
        rule = (
            f"the training MSE of the rule-free guess (the givens, 1/{args.size} on every "
            f"blank), {target:.4g}; the initial rules score {initial:.4g}."
        )
    else:
        target = analysis.gd_improvement_target(rows)
        rule = "80% of GD's improvement (initial − 0.8·(initial − final), GD means)."
    reference = task.true_rules_reference()
    notes = (
        f"{args.size}x{args.size} boards, {args.train} training / {args.heldout} held-out "
        f"puzzles, batch {args.batch}, {args.epochs} epochs, Adam lr {args.lr}, "
        f"ε = {args.eps}, A of {args.constraints} rows, solver {args.solver}. "
        "Loss: per-puzzle MSE of z against the one-hot solution. The true rules score "
        f"held-out MSE {reference['loss']:.4g}, board accuracy "
        f"{reference['board_acc']:.3g} and cell accuracy {reference['cell_acc']:.3g} "
        f"(the ceiling). Target: {rule}"
    )
    paths = analysis.finish(
        rows,
        args.out,
        title=f"Sudoku {args.size}x{args.size}: learning the rules",
        target=target,
        extra=("heldout_board_acc", "heldout_cell_acc"),
        loss_name="MSE",
        notes=notes,
        plot_kwargs=PLOT,
    )
    name = "sudoku" if args.size == 4 else "sudoku9"
    return {**paths, **stored.finish(state, args, args.out, experiment=EXPERIMENT, name=name)}


if __name__ == "__main__":
    main()
