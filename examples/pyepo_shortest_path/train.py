"""PyEPO's benchmarks: cvxlpgd LPGD and exact against PyEPO's methods (shared loop).

Run ``python -m examples.pyepo_shortest_path.train`` (full: 4 degrees × 3 seeds; run
times are on the experiments page, docs/experiments.md) or
``python -m examples.pyepo_shortest_path.train --quick`` (a small run); ``--help`` lists
options. The training loop here (:class:`Benchmark`) is shared with the knapsack task
(:mod:`examples.pyepo_knapsack.train`), which differs only in its :class:`Task`.

Protocol
    For each polynomial degree and seed, PyEPO's generator draws 1000 training, 200
    validation and 1000 test instances of the 5×5 grid (5 features, noise half-width
    0.5; :func:`examples.pyepo_shortest_path.problem.make_splits`). One linear model
    is initialized from the seed, and every method trains a copy of it with the same
    optimizer (Adam, lr 0.01), batch size (32), number of epochs (10) and minibatch
    order. The methods are described in :mod:`examples.pyepo_shortest_path.methods`.
LPGD's τ (and PG's σ)
    A scanned method (LPGD and its variants, PG) trains once per τ of ``--taus``
    (default 0.1, 1, 10); the τ with the lowest normalized regret on the *validation*
    set is its reported row, per degree and seed. Every τ's test regret is also
    reported, so the scan is visible.
Metric
    Normalized regret on the test set, ``Σ_i (c_iᵀ w(ĉ_i) − z*_i) / Σ_i |z*_i|``, by
    PyEPO's own ``pyepo.metric.regret`` with PyEPO's OR-Tools model for every method
    (so the layer's interior-point solutions play no part in the score).
Timing
    Training wall and process CPU seconds per epoch (forward, loss, backward and
    optimizer step; evaluation excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from examples import common
from examples.pyepo_shortest_path import outputs
from examples.pyepo_shortest_path.methods import (
    FAMILIES,
    METHODS,
    TrainingMethod,
    batch_loss,
    fit_two_stage,
    scan_methods,
)
from examples.pyepo_shortest_path.problem import make_splits, oracle, shortest_path_lp

EXPERIMENT = "pyepo_shortest_path"
TAUS = (0.1, 1.0, 10.0)
FULL = {"degrees": [1, 2, 4, 6], "n_train": 1000, "n_val": 200, "n_test": 1000, "epochs": 10}
QUICK = {"degrees": [4], "n_train": 200, "n_val": 100, "n_test": 200, "epochs": 2}
#: The methods a run trains unless ``--methods`` says otherwise (the stored CSV's set;
#: the LPGD variants, PG and NID are asked for by name).
DEFAULT_METHODS = ("lpgd", "exact", "spo+", "dbb", "dpo", "pfyl", "2s")


@dataclass(frozen=True)
class Task:
    """What differs between the PyEPO tasks; the training loop is shared.

    Attributes
    ----------
    experiment, title : str
        Output folder name and figure/summary title.
    sense : {1, -1}
        +1 minimization, −1 maximization (the sign of the regret).
    setup : callable
        ``setup(seed, solver) -> (optmodel, layer)``: PyEPO's oracle and cvxlpgd's LP
        layer for a seed's instances.
    make_splits : callable
        ``make_splits(optmodel, degree=, seed=, n_train=, n_val=, n_test=, noise=)``.
    full, quick : dict
        Default sizes of the full and the ``--quick`` run.
    """

    experiment: str
    title: str
    sense: int
    setup: Callable
    make_splits: Callable
    full: dict = field(default_factory=lambda: dict(FULL))
    quick: dict = field(default_factory=lambda: dict(QUICK))


@functools.lru_cache(maxsize=4)
def _shortest_path_setup(seed: int, solver: str):
    from cvxlpgd import CvxpyLayer

    optmodel = oracle()
    problem, cost, flow = shortest_path_lp(optmodel.arcs, optmodel.grid[0] * optmodel.grid[1])
    return optmodel, CvxpyLayer(problem, [cost], [flow], solver=solver)


SHORTEST_PATH = Task(
    EXPERIMENT,
    "PyEPO shortest path 5x5",
    1,
    lambda seed, solver: _shortest_path_setup(0, solver),
    make_splits,
)


def parse_args(argv=None, task: Task = SHORTEST_PATH) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog=f"python -m examples.{task.experiment}.train",
        description=f"{task.title}: cvxlpgd LPGD (and its variants) and exact vs PyEPO's "
        "SPO+, DBB, DPO, PFYL, PG, NID, I-MLE, AI-MLE, NCE, CMAP, listwise LTR and "
        "two-stage least squares.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small run (< 1 minute) for smoke tests"
    )
    parser.add_argument(
        "--out", default=None, help=f"output folder (default outputs/{task.experiment})"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds (data draw, initial model, minibatch order); default 0 1 2, 0 1 with --quick",
    )
    parser.add_argument(
        "--degrees",
        type=int,
        nargs="+",
        default=None,
        help="polynomial degrees (default "
        f"{' '.join(map(str, task.full['degrees']))}; "
        f"{' '.join(map(str, task.quick['degrees']))} with --quick)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        choices=METHODS,
        help=f"default {' '.join(DEFAULT_METHODS)}",
    )
    parser.add_argument(
        "--taus",
        type=float,
        nargs="+",
        default=list(TAUS),
        help="the validation scan of LPGD's τ and PG's σ (default 0.1 1 10)",
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-val", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--noise", type=float, default=0.5, help="noise half-width")
    parser.add_argument("--solver", default="auto", help="the layer's solver (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    args = parser.parse_args(argv)
    for key, value in (task.quick if args.quick else task.full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or common.default_out(task.experiment)
    args.seeds = common.default_seeds(args)
    return args


class Benchmark:
    """The training loop shared by every run of a task."""

    def __init__(self, args: argparse.Namespace, task: Task = SHORTEST_PATH):
        self.args, self.task = args, task
        self.optmodel = self.layer = None

    def regret(self, model: torch.nn.Module, dataset) -> float:
        """PyEPO's normalized regret of ``model`` on ``dataset``."""
        from pyepo.metric import regret
        from torch.utils.data import DataLoader

        return float(regret(model, self.optmodel, DataLoader(dataset, batch_size=len(dataset))))

    def train(self, method: TrainingMethod, initial: torch.nn.Module, splits, seed: int) -> dict:
        """Train a copy of ``initial`` with ``method``; return its result row."""
        from torch.utils.data import DataLoader

        args, model = self.args, copy.deepcopy(initial)
        wall = cpu = 0.0
        grad_norms, losses = [], []
        if not method.trained_by_gradient:
            start, start_cpu = time.perf_counter(), time.process_time()
            fit_two_stage(model, splits.train.feats, splits.train.costs)
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            epochs = 0
        else:
            loss_fn = batch_loss(
                method, self.optmodel, self.layer, self.task.sense, dataset=splits.train
            )
            optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
            # The same minibatch order for every method of a (degree, seed).
            order = torch.Generator().manual_seed(seed)
            loader = DataLoader(splits.train, batch_size=args.batch, shuffle=True, generator=order)
            for _ in range(args.epochs):
                start, start_cpu = time.perf_counter(), time.process_time()
                for x, c, w, z in loader:
                    optimizer.zero_grad()
                    loss = loss_fn(model(x), c, w, z)
                    loss.backward()
                    grad_norms.append(
                        float(
                            torch.sqrt(
                                sum((p.grad.double() ** 2).sum() for p in model.parameters())
                            )
                        )
                    )
                    losses.append(float(loss.detach()))
                    optimizer.step()
                wall += time.perf_counter() - start
                cpu += time.process_time() - start_cpu
            epochs = args.epochs
        per = max(epochs, 1)
        return {
            "method": method.name,
            "tau": "" if method.tau is None else method.tau,
            "epochs": epochs,
            "test_regret": self.regret(model, splits.test),
            "val_regret": self.regret(model, splits.val),
            "seconds_per_epoch": wall / per,
            "cpu_seconds_per_epoch": cpu / per,
            "mean_grad_norm": float(np.mean(grad_norms)) if grad_norms else np.nan,
            "median_grad_norm": float(np.median(grad_norms)) if grad_norms else np.nan,
            "max_grad_norm": float(np.max(grad_norms)) if grad_norms else np.nan,
            "last_epoch_loss": (float(np.mean(losses[-len(loader) :])) if losses else np.nan),
        }

    def run_config(self, degree: int, seed: int, progress) -> list[dict]:
        """Every method on one (degree, seed) draw; a scanned method once per τ, then the
        chosen τ's row under the method's own name."""
        args = self.args
        self.optmodel, self.layer = self.task.setup(seed, args.solver)
        with contextlib.redirect_stderr(io.StringIO()):  # optDataset's own progress bars
            splits = self.task.make_splits(
                self.optmodel,
                degree=degree,
                seed=seed,
                n_train=args.n_train,
                n_val=args.n_val,
                n_test=args.n_test,
                noise=args.noise,
            )
        torch.manual_seed(seed)
        initial = torch.nn.Linear(splits.features, self.optmodel.num_cost)
        stamp = {"degree": degree, "seed": seed}
        rows = [
            {
                **stamp,
                "method": "initial",
                "tau": "",
                "epochs": 0,
                "test_regret": self.regret(initial, splits.test),
                "val_regret": self.regret(initial, splits.val),
            }
        ]
        for name in args.methods:
            scan = []
            for method in scan_methods(name, args.taus):
                row = {**stamp, **self.train(method, initial, splits, seed)}
                rows.append(row)
                if method.tau is not None:
                    scan.append(row)
                progress.update(1)
            if scan:
                best = min(scan, key=lambda r: r["val_regret"])
                rows.append({**best, "method": name})
        return rows


def main(argv=None, task: Task = SHORTEST_PATH) -> dict:
    """Run the benchmark; returns the paths written and the summary text.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``), e.g.
        ``["--quick", "--out", "/tmp/pyepo"]``.
    task : Task, default SHORTEST_PATH
        The PyEPO task (``examples.pyepo_knapsack.train.KNAPSACK`` for knapsack).

    Returns
    -------
    dict
        ``csv``, ``png``, ``summary_path``, ``provenance`` (paths) and ``summary``
        (Markdown text).
    """
    from tqdm.auto import tqdm

    args = parse_args(argv, task)
    args.git_state = outputs.git_state()  # the code this run imports is today's checkout
    bench = Benchmark(args, task)
    runs_per_config = sum(len(args.taus) if m in FAMILIES else 1 for m in args.methods)
    rows = []
    start_cpu = time.process_time()
    with tqdm(
        total=runs_per_config * len(args.degrees) * len(args.seeds),
        desc=task.experiment,
        disable=args.no_progress,
        unit="run",
    ) as progress:
        for degree in args.degrees:
            for seed in args.seeds:
                rows += bench.run_config(degree, seed, progress)
                # What is done so far survives an interrupted run.
                common.write_csv(rows, Path(args.out) / "results.partial.csv")
    args.process_cpu_seconds = time.process_time() - start_cpu
    return outputs.finish(rows, args, title=task.title, experiment=task.experiment)


if __name__ == "__main__":
    main()
