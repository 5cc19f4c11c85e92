"""Learning the rules of Sudoku (OptNet setup): GD with exact derivatives vs LPGD.

Run ``python -m examples.sudoku.train`` (full, about 10 minutes on 2 cores) or
``python -m examples.sudoku.train --quick`` (under a minute); ``--help`` lists options.

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

from examples import common
from examples.sudoku.model import build_sudoku_problem, random_rules, rule_rank
from examples.sudoku.puzzles import decode, generate_puzzles, one_hot

EXPERIMENT = "sudoku"
TAUS = (0.1, 1.0, 10.0, 100.0)
FULL = {"train": 200, "heldout": 100, "batch": 20, "epochs": 25}
QUICK = {"train": 40, "heldout": 20, "batch": 10, "epochs": 3}
PLOT = {"loss_label": "MSE", "heldout": "heldout_board_acc",
        "heldout_label": "held-out board accuracy", "log_y": True}


def parse_args(argv=None):
    """Command-line options (shared ones from :func:`examples.common.base_parser`)."""
    parser = common.base_parser(
        "sudoku.train", "Learn Sudoku rules A, b through a QP layer: exact GD vs LPGD.",
        taus=TAUS)
    parser.add_argument("--size", type=int, default=4, choices=(4, 9), help="board side")
    parser.add_argument("--train", type=int, default=None, help="training puzzles")
    parser.add_argument("--heldout", type=int, default=None, help="held-out puzzles")
    parser.add_argument("--batch", type=int, default=None, help="puzzles per iteration")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=0.03, help="Adam learning rate")
    parser.add_argument("--eps", type=float, default=0.1, help="QP regularization ε")
    parser.add_argument("--constraints", type=int, default=None,
                        help="rows of A (default: rank of the true rules, 40 for 4x4)")
    parser.add_argument("--min-givens", type=int, default=None,
                        help="givens per puzzle (default: minimal puzzles for 4x4, 30 for 9x9)")
    parser.add_argument("--solver", default="CLARABEL", choices=("SCS", "CLARABEL"),
                        help="conic solver (Clarabel: its iteration count does not grow "
                             "with τ, unlike warm-started SCS)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the puzzle set")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
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
        puzzles, solutions = generate_puzzles(total, size=args.size, seed=args.data_seed,
                                              min_givens=args.min_givens)
        self.p = torch.tensor(one_hot(puzzles))
        self.z_true = torch.tensor(one_hot(solutions))
        self.solutions = solutions
        self.train_idx = np.arange(args.train)
        self.heldout_idx = np.arange(args.train, total)
        problem, params, z = build_sudoku_problem(args.size, args.constraints, eps=args.eps)
        from cvxlpgd import CvxpyLayer

        self.layer = CvxpyLayer(problem, [params["p"], params["A"], params["b"]], [z],
                                solver=args.solver)

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
        return {"loss": loss, "board_acc": float(correct.all(axis=(1, 2)).mean()),
                "cell_acc": float(correct.mean())}

    def run(self, method: common.Method, seed: int, log: common.RunLogger) -> None:
        """Train from the seed's random rules with ``method``; log once per epoch."""
        args = self.args
        A0, _ = random_rules(args.size, args.constraints, seed=seed)
        A = torch.tensor(A0, requires_grad=True)
        # b = A z0 with z0 = exp(log_z0) = 1/size reproduces random_rules' b exactly.
        log_z0 = torch.full((args.size**3,), -np.log(args.size), dtype=torch.float64,
                            requires_grad=True)
        optimizer = torch.optim.Adam([A, log_z0], lr=args.lr)
        # Same minibatch order for every method of a seed.
        order = np.random.default_rng(seed)
        options = method.layer_options()
        iteration = 0

        def record(epoch):
            train = self.evaluate(A, log_z0, self.train_idx)
            held = self.evaluate(A, log_z0, self.heldout_idx)
            log.log(iteration, train["loss"], held["loss"], epoch=epoch,
                    train_board_acc=train["board_acc"], heldout_board_acc=held["board_acc"],
                    heldout_cell_acc=held["cell_acc"])
            return train["loss"]

        loss = record(0)
        for epoch in range(1, args.epochs + 1):
            perm = order.permutation(self.train_idx)
            for start in range(0, len(perm), args.batch):
                idx = perm[start:start + args.batch]
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
    args = parse_args(argv)
    task = SudokuTask(args)
    methods = common.make_methods(args.taus, exact=not args.no_exact)
    iterations = args.epochs * -(-args.train // args.batch)
    rows = common.run_grid(EXPERIMENT, methods, args.seeds, task.run,
                           iterations_per_run=iterations, progress=not args.no_progress)
    target = args.target if args.target is not None else common.gd_improvement_target(rows)
    notes = (f"{args.size}x{args.size} boards, {args.train} training / {args.heldout} held-out "
             f"puzzles, batch {args.batch}, {args.epochs} epochs, Adam lr {args.lr}, "
             f"ε = {args.eps}, A of {args.constraints} rows, solver {args.solver}. "
             "Loss: per-puzzle MSE of z against the one-hot solution. Target: "
             + ("given by --target." if args.target is not None else
                "80% of GD's improvement (initial − 0.8·(initial − final), GD means)."))
    return common.finish(rows, args.out, title=f"Sudoku {args.size}x{args.size}: learning "
                         "the rules", target=target, extra=("heldout_board_acc",
                                                            "heldout_cell_acc"),
                         loss_name="MSE", notes=notes, plot_kwargs=PLOT)


if __name__ == "__main__":
    main()
