"""Stored runs of the paper experiments: provenance sidecars, the copies kept in
``docs/img``, and the generated page blocks of the 4×4 Sudoku and LP portfolio runs.

A run of :mod:`examples.lp_portfolio`, :mod:`examples.sudoku.train` or
:mod:`examples.markowitz.train` writes ``results.json`` next to its ``results.csv``
(:func:`write_sidecar`): the command, the git commit checked out when the run started
(``git rev-parse HEAD``), whether the tree had uncommitted changes then (and which
paths under ``cvxlpgd/`` and ``examples/``), start and end time, wall and CPU seconds,
versions and options. With ``--store`` the run also copies ``results.csv``,
``results.json`` and ``curves.png`` to ``docs/img/<name>.{csv,json,png}``
(:func:`store`), where ``python -m examples.analysis --page`` reads them:
:func:`blocks` turns the Sudoku 4×4 and LP rows into the page's tables and paired
verdicts (the rule of :mod:`examples.analysis`), and says which engine commit
produced each table (and, for the Markowitz and 9×9 Sudoku tables, which
:mod:`examples.experiments_page` generates, the provenance line alone).
"""

from __future__ import annotations

import datetime
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from examples import analysis
from examples.common import read_csv
from examples.result_rows import label

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"


# ------------------------------------------------------------------ provenance


def _git(*cmd: str) -> str:
    try:
        return subprocess.run(
            ["git", *cmd], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def start(module: str, argv: Sequence[str] | None) -> dict:
    """The state of a run at its start: command, commit, dirty tree, clocks.

    Parameters
    ----------
    module : str
        The experiment's module, e.g. ``"examples.lp_portfolio"``.
    argv : sequence of str or None
        The arguments the run was given (None: ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    status = _git("status", "--porcelain")
    return {
        "command": " ".join(["python -m", module, *args]),
        "git_commit": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(status),
        "git_dirty_paths": [
            line[3:]
            for line in status.splitlines()
            if line[3:].startswith(("cvxlpgd/", "examples/"))
        ],
        "started_utc": _now(),
        "_wall": time.perf_counter(),
        "_cpu": time.process_time(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_sidecar(state: dict, args, out: Path, *, experiment: str) -> Path:
    """Write ``out/results.json``: :func:`start`'s record, the end time, the run's wall
    and process CPU seconds, versions and options."""
    import torch

    record = {k: v for k, v in state.items() if not k.startswith("_")}
    record.update(
        {
            "experiment": experiment,
            "finished_utc": _now(),
            "wall_seconds": round(time.perf_counter() - state["_wall"], 1),
            "cpu_seconds": round(time.process_time() - state["_cpu"], 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
    )
    path = Path(out) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


def store(out: Path, name: str, img: Path | None = None) -> dict:
    """Copy a run's ``results.csv``, ``results.json`` and ``curves.png`` from ``out``
    to ``img/<name>.csv``, ``.json`` and ``.png`` (default ``docs/img``)."""
    img = Path(img) if img is not None else IMG
    img.mkdir(parents=True, exist_ok=True)
    out = Path(out)
    paths = {}
    for source, suffix in (("results.csv", "csv"), ("results.json", "json"), ("curves.png", "png")):
        paths[suffix] = Path(shutil.copyfile(out / source, img / f"{name}.{suffix}"))
    return paths


def add_store_option(parser, name: str, note: str = "") -> None:
    """``--store``: keep the run in ``docs/img/<name>.*`` (see :func:`store`)."""
    parser.add_argument(
        "--store",
        action="store_true",
        help=f"also copy results.csv, results.json and curves.png to docs/img/{name}.*{note}",
    )


def finish(state: dict, args, out: Path, *, experiment: str, name: str) -> dict:
    """Write the sidecar and, with ``args.store``, copy the run to ``docs/img``."""
    paths = {"sidecar": write_sidecar(state, args, out, experiment=experiment)}
    if getattr(args, "store", False):
        paths["stored"] = store(out, name)
    return paths


# ------------------------------------------------------------------ the page


def provenance_line(img: Path, name: str, missing: str = "") -> str:
    """Which command and engine commit produced ``img/<name>.csv`` (from its sidecar);
    ``missing`` is added when there is no sidecar."""
    sidecar = Path(img) / f"{name}.json"
    if not sidecar.exists():
        return f"Raw rows: [`img/{name}.csv`](img/{name}.csv), without a sidecar. {missing}".strip()
    record = json.loads(sidecar.read_text())
    dirty = record.get("git_dirty_paths") or []
    state = (
        f"with uncommitted changes in {', '.join(f'`{p}`' for p in dirty)}"
        if dirty
        else (
            "with uncommitted changes outside `cvxlpgd/` and `examples/`"
            if record.get("git_dirty")
            else "clean tree"
        )
    )
    return (
        f"Raw rows: [`img/{name}.csv`](img/{name}.csv), produced by `{record['command']}` "
        f"on the engine at commit `{record['git_commit'][:10]}` ({state}), finished "
        f"{record['finished_utc'].replace('T', ' ').replace('+00:00', ' UTC')}, "
        f"{record['wall_seconds'] / 60:.1f} min wall, {record['cpu_seconds'] / 60:.1f} min "
        f"CPU (sidecar [`img/{name}.json`](img/{name}.json))."
    )


def lp_target(rows: Sequence[dict]) -> float:
    """The LP run's target: 10% of the mean initial training regret (all runs)."""
    initial = [float(r["train_loss"]) for r in rows if int(r["iteration"]) == 0]
    return 0.1 * sum(initial) / len(initial)


def _brief(criterion: str, c) -> str:
    """``criterion — verdict (k/n)``, k the pairs in which A is better."""
    verdict = f"**{c.winner} better**" if c.winner else "no significant difference"
    return f"{criterion} — {verdict} ({c.wins_a}/{c.n})"


def _glance(name: str, comparisons, *, skip: Sequence[str] = ()) -> str:
    lines = []
    for method in dict.fromkeys(c.a for _, c in comparisons):
        parts = [
            _brief(what, c)
            for what, c in comparisons
            if c.a == method and not what.startswith(tuple(skip))
        ]
        seeds = max(c.n for _, c in comparisons if c.a == method)
        lines.append(f"* **{name}**, {method} against GD over {seeds} seeds: " + "; ".join(parts))
    return ".\n".join(lines) + "."


def _experiment_blocks(
    rows, *, key: str, name: str, target: float, loss: str, columns, extra=(), img: Path
) -> dict[str, str]:
    table = analysis.markdown_table(
        analysis.summarize(rows, target, extra=extra), target, extra=extra, loss_name=loss
    )
    summary = {s["method"]: s for s in analysis.summarize(rows, target)}
    comparisons = []
    if summary["exact"]["reached"] >= 2:  # iterations to the target, where GD gets there
        for method in list(summary)[1:]:
            comparisons.append(
                (
                    "iterations to the target (seeds where both reach it)",
                    analysis.paired(
                        summary[method]["per_seed"]["iters_to_target"],
                        summary["exact"]["per_seed"]["iters_to_target"],
                        a=label(method),
                        b="GD (exact)",
                    ),
                )
            )
    comparisons += analysis.paired_against(rows, "exact", columns)
    return {
        f"{key}-table": table,
        f"{key}-paired": analysis.paired_table(comparisons),
        f"{key}-provenance": provenance_line(img, name),
        f"glance-{key}": _glance(
            {"lp": "Portfolio LP", "sudoku": "Sudoku 4×4"}[key],
            comparisons,
            skip=("training wall",),
        ),
    }


SUDOKU_COLUMNS = (
    ("train_loss", "final training MSE", True),
    ("heldout_loss", "final held-out MSE", True),
    ("heldout_board_acc", "final held-out board accuracy", False),
    ("cpu_time", "training CPU seconds", True),
    ("wall_time", "training wall seconds", True),
)
LP_COLUMNS = (
    ("train_loss", "final training regret", True),
    ("heldout_loss", "final held-out regret", True),
    ("cpu_time", "training CPU seconds", True),
    ("wall_time", "training wall seconds", True),
)


def sudoku_blocks(img: Path) -> dict[str, str]:
    """Blocks ``sudoku-table``, ``sudoku-paired``, ``sudoku-provenance`` and
    ``glance-sudoku`` from ``img/sudoku.csv`` (target: 80% of GD's improvement,
    :func:`examples.analysis.gd_improvement_target`, from the stored rows)."""
    rows = read_csv(Path(img) / "sudoku.csv")
    return _experiment_blocks(
        rows,
        key="sudoku",
        name="sudoku",
        target=analysis.gd_improvement_target(rows),
        loss="MSE",
        columns=SUDOKU_COLUMNS,
        extra=("heldout_board_acc", "heldout_cell_acc"),
        img=img,
    )


def lp_blocks(img: Path) -> dict[str, str]:
    """Blocks ``lp-table``, ``lp-paired``, ``lp-provenance`` and ``glance-lp`` from
    ``img/lp_portfolio.csv`` (target: :func:`lp_target`)."""
    rows = read_csv(Path(img) / "lp_portfolio.csv")
    return _experiment_blocks(
        rows,
        key="lp",
        name="lp_portfolio",
        target=lp_target(rows),
        loss="regret",
        columns=LP_COLUMNS,
        img=img,
    )


def blocks(img: Path | None = None) -> dict[str, str]:
    """The page blocks of the runs stored in ``img`` (default ``docs/img``): Sudoku 4×4
    and the LP portfolio when their CSVs exist, and the Markowitz and Sudoku 9×9
    provenance lines."""
    img = Path(img) if img is not None else IMG
    out = {}
    if (img / "sudoku.csv").exists():
        out.update(sudoku_blocks(img))
    if (img / "lp_portfolio.csv").exists():
        out.update(lp_blocks(img))
    if (img / "markowitz.csv").exists():
        out["markowitz-provenance"] = provenance_line(
            img,
            "markowitz",
            "The run predates the sidecars; it ran on the engine at commit 82ff9e6, before "
            "the τ-scaled tolerances, the τ fallbacks and the Moreau re-solve changes, and "
            "before the seeds drew distinct training blocks.",
        )
    if (img / "sudoku9.csv").exists():
        out["sudoku9-provenance"] = provenance_line(
            img,
            "sudoku9",
            "The run predates the sidecars; it ran on the engine at commit 82ff9e6, before "
            "the τ-scaled tolerances, the τ fallbacks and the Moreau re-solve changes.",
        )
    return out
