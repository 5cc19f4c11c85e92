"""Shared machinery of the paper-reproduction experiments.

Every experiment (:mod:`examples.sudoku.train`, :mod:`examples.markowitz.train`,
:mod:`examples.lp_portfolio`) trains the same initial model once per *method* (gradient
descent with the exact derivative, LPGD at several τ) and per *seed*, and produces the
same three artefacts, written by this module:

* ``results.csv`` — one row per (method, seed, evaluation point): iteration, training
  wall time, training loss, held-out loss, training CPU time (all threads of the
  process; less sensitive than wall time to other load on the machine) and
  experiment-specific metrics;
* ``curves.png`` and ``summary.md`` / ``summary.csv`` — written by
  :mod:`examples.analysis` from those rows.

Wall time counts only training work (forward, backward and optimizer steps): the
periodic evaluations on the full training and held-out sets are excluded, so that the
time axis compares the gradients and not the evaluation schedule.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvxlpgd import SolverError

__all__ = [
    "Method",
    "RunLogger",
    "base_parser",
    "default_out",
    "default_seeds",
    "make_methods",
    "read_csv",
    "run_grid",
    "write_csv",
]

#: Columns every results row has, in this order; experiment metrics follow.
BASE_COLUMNS = (
    "experiment",
    "method",
    "gradient",
    "tau",
    "seed",
    "iteration",
    "wall_time",
    "train_loss",
    "heldout_loss",
)


@dataclass(frozen=True)
class Method:
    """One way of computing gradients through the layer.

    Attributes
    ----------
    gradient : {"exact", "lpgd"}
        The layer's ``gradient`` argument.
    tau : float or None
        LPGD's τ (None for the exact gradient).
    """

    gradient: str
    tau: float | None = None

    @property
    def name(self) -> str:
        """Identifier used in the CSV, e.g. ``"exact"`` or ``"lpgd_tau=10"``."""
        return "exact" if self.gradient == "exact" else f"lpgd_tau={self.tau:g}"

    @property
    def label(self) -> str:
        """Legend label, e.g. ``"GD (exact)"`` or ``"LPGD τ=10"``."""
        return "GD (exact)" if self.gradient == "exact" else f"LPGD τ={self.tau:g}"

    def layer_options(self) -> dict:
        """Keyword arguments for a layer call (``gradient`` and, for LPGD, ``tau``)."""
        if self.gradient == "exact":
            return {"gradient": "exact"}
        return {"gradient": "lpgd", "tau": self.tau}


def make_methods(taus: Iterable[float], exact: bool = True) -> list[Method]:
    """The exact-gradient baseline (first, if ``exact``) and LPGD at each τ."""
    methods = [Method("exact")] if exact else []
    return methods + [Method("lpgd", float(t)) for t in taus]


def base_parser(
    experiment: str, description: str, *, taus: Sequence[float]
) -> argparse.ArgumentParser:
    """Command-line options every experiment shares.

    Parameters
    ----------
    experiment : str
        Name used for the default output folder ``outputs/<experiment>/``.
    description : str
        ``--help`` text.
    taus : sequence of float
        Default LPGD τ values.

    Returns
    -------
    argparse.ArgumentParser
        With ``--quick``, ``--out``, ``--seeds``, ``--taus``, ``--no-exact``,
        ``--target``, ``--no-progress``; experiments add their own options.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m examples.{experiment}", description=description
    )
    parser.add_argument(
        "--quick", action="store_true", help="small run (< 1 minute) for smoke tests"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default outputs/{experiment.split('.')[0]}/)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="seed values, e.g. --seeds 0 1 2 (default: 3 seeds, 2 in --quick)",
    )
    parser.add_argument(
        "--taus",
        type=float,
        nargs="+",
        default=list(taus),
        help=f"LPGD temperatures τ (default {' '.join(map(str, taus))})",
    )
    parser.add_argument(
        "--no-exact", action="store_true", help="skip the exact-gradient (GD) baseline"
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="target training loss of the summary table (default: the "
        "experiment's rule, see its docs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    return parser


def default_out(experiment: str) -> Path:
    """``outputs/<experiment>/`` relative to the working directory."""
    return Path("outputs") / experiment


def default_seeds(args) -> list[int]:
    """``args.seeds`` or 3 seeds (2 with ``--quick``)."""
    if args.seeds:
        return list(args.seeds)
    return [0, 1] if args.quick else [0, 1, 2]


# ------------------------------------------------------------------------ running


@dataclass
class RunLogger:
    """Collects the evaluation rows of one (method, seed) run and times its training.

    Use :meth:`timed` around training work only; :meth:`log` stamps a row with the
    accumulated training time.
    """

    experiment: str
    method: Method
    seed: int
    progress: object = None
    rows: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0

    @contextmanager
    def timed(self):
        """Count the enclosed block's wall time (and process CPU time) as training time."""
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.elapsed += time.perf_counter() - start
            self.cpu += time.process_time() - start_cpu

    def tick(self, n: int = 1, **postfix) -> None:
        """Advance the progress bar by ``n`` iterations."""
        if self.progress is not None:
            self.progress.update(n)
            if postfix:
                self.progress.set_postfix(
                    method=self.method.name, seed=self.seed, **postfix, refresh=False
                )

    def log(self, iteration: int, train_loss: float, heldout_loss: float, **metrics) -> dict:
        """Append one evaluation row (see :data:`BASE_COLUMNS`) and return it."""
        row = {
            "experiment": self.experiment,
            "method": self.method.name,
            "gradient": self.method.gradient,
            "tau": "" if self.method.tau is None else self.method.tau,
            "seed": self.seed,
            "iteration": int(iteration),
            "wall_time": round(self.elapsed, 4),
            "train_loss": float(train_loss),
            "heldout_loss": float(heldout_loss),
            "cpu_time": round(self.cpu, 4),
        }
        row.update(
            {
                k: (float(v) if isinstance(v, (float, np.floating)) else v)
                for k, v in metrics.items()
            }
        )
        self.rows.append(row)
        return row


def run_grid(
    experiment: str,
    methods: Sequence[Method],
    seeds: Sequence[int],
    run_one: Callable[[Method, int, RunLogger], None],
    *,
    iterations_per_run: int,
    progress: bool = True,
) -> list[dict]:
    """Run ``run_one(method, seed, logger)`` for every seed and method.

    Seeds are the outer loop so that each seed's data and initial model can be built
    once and shared by all methods (``run_one`` may cache them by seed).

    Parameters
    ----------
    experiment : str
        Written into every row.
    methods, seeds : sequences
        The grid.
    run_one : callable
        Trains one model and logs rows through the logger it receives.
    iterations_per_run : int
        For the progress bar's total.
    progress : bool, default True
        Show a ``tqdm`` bar.

    Returns
    -------
    list of dict
        All rows, in run order.
    """
    from tqdm.auto import tqdm

    bar = tqdm(
        total=iterations_per_run * len(methods) * len(seeds),
        desc=experiment,
        disable=not progress,
        unit="it",
        mininterval=1.0,
    )
    rows: list[dict] = []
    try:
        for seed in seeds:
            for method in methods:
                logger = RunLogger(experiment, method, seed, progress=bar)
                try:
                    run_one(method, seed, logger)
                except SolverError as err:
                    # A failed solve ends this run only: its curve stops (NaN-padded in
                    # plots and tables) and the other runs still complete.
                    bar.write(
                        f"{experiment}: {method.name} seed {seed} stopped after "
                        f"{len(logger.rows)} evaluations: {err}"
                    )
                rows.extend(logger.rows)
    finally:
        bar.close()
    return rows


# ------------------------------------------------------------------------ CSV


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Write rows (dicts) as CSV: :data:`BASE_COLUMNS` first, other keys after."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = []
    for row in rows:
        extra += [k for k in row if k not in BASE_COLUMNS and k not in extra]
    columns = [c for c in BASE_COLUMNS if any(c in r for r in rows)] + extra
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
    return path


def _fmt(value):
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return value


def read_csv(path: Path) -> list[dict]:
    """Read a results CSV back; numeric fields become floats (``iteration``/``seed`` ints)."""
    rows = []
    with Path(path).open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, value in raw.items():
                if key in ("iteration", "seed"):
                    row[key] = int(value)
                else:
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):
                        row[key] = value
            rows.append(row)
    return rows
