"""What a PyEPO run leaves in its output folder: ``results.csv``, ``results.json`` (the
run's provenance: command, commit at the start, versions, options), ``regret.png`` and
``summary.md`` (:func:`finish`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from examples import common, paired
from examples.pyepo_shortest_path.figure import plot
from examples.pyepo_shortest_path.methods import FAMILIES
from examples.pyepo_shortest_path.report import (
    ROOT,
    paired_lines,
    paired_regret,
    regret_table,
    scan_table,
    time_comparisons,
    with_derived,
)

__all__ = ["finish", "git_state", "provenance"]


def git_state() -> dict:
    """The checkout's commit and the paths under cvxlpgd/ and examples/ that differ from
    it; taken when a run starts (the code a run imports is the code of that moment)."""
    import subprocess

    def git(*cmd):
        try:
            return subprocess.run(
                ["git", *cmd], capture_output=True, text=True, cwd=Path(__file__).parent, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_paths": [
            line[3:]
            for line in git("status", "--porcelain").splitlines()
            if line[3:].startswith(("cvxlpgd/", "examples/"))
        ],
    }


def provenance(args, **extra) -> dict:
    """The command, git commit at the start (and the paths the tree had changed), end
    time and versions of a run, for the JSON sidecar next to its CSV."""
    import datetime
    import platform
    import sys

    import torch

    options = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "git_state"
    }
    script = Path(sys.argv[0]).resolve()
    module = (
        ".".join(script.relative_to(ROOT).with_suffix("").parts)
        if script.is_relative_to(ROOT)
        else str(script)
    )
    return {
        "command": " ".join(["python -m", module, *sys.argv[1:]]),
        **(getattr(args, "git_state", None) or git_state()),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "options": options,
        **extra,
    }


def finish(
    rows: Sequence[dict],
    args,
    *,
    title: str = "PyEPO shortest path 5x5",
    experiment: str = "pyepo_shortest_path",
    print_fn=print,
) -> dict:
    """Write ``results.csv``, ``regret.png`` and ``summary.md``; print the summary.

    Parameters
    ----------
    rows : sequence of dict
        Result rows of :meth:`examples.pyepo_shortest_path.train.Benchmark.run_config`.
    args : argparse.Namespace
        The run's options (for the notes).
    print_fn : callable, default print

    Returns
    -------
    dict
        ``csv``, ``png``, ``summary_path`` and ``summary`` (the Markdown text).
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = common.write_csv(rows, out / "results.csv")
    sidecar = out / "results.json"
    sidecar.write_text(json.dumps(provenance(args, experiment=experiment), indent=1) + "\n")
    png = plot(with_derived(rows), out / "regret.png", title=title)
    notes = (
        f"{args.n_train} training / {args.n_val} validation / {args.n_test} test instances, "
        f"methods {' '.join(args.methods)}, 5 features, noise half-width {args.noise}; "
        f"linear model; Adam lr {args.lr}, "
        f"batch {args.batch}, {args.epochs} epochs; seeds {' '.join(map(str, args.seeds))}; "
        f"layer solver {args.solver}. Normalized test regret by pyepo.metric.regret "
        "(mean ± sample std over seeds; bold: lowest mean). Comparisons: paired "
        f"t-test over the shared runs, α = {paired.ALPHA:g}."
    )
    rows = with_derived(rows)
    families = [f for f in FAMILIES if any(r["method"] == f for r in rows)]
    text = (
        f"## {title}\n\n{notes}\n\n{regret_table(rows)}\n"
        f"### LPGD against each method, seed by seed\n\n{paired_lines(rows)}\n"
        f"{paired_regret(rows)}\n### Training time, run by run\n\n"
        f"{time_comparisons(rows)}\n"
        f"### The τ scans (validation regret chooses)\n\n{scan_table(rows, families)}"
    )
    summary_path = out / "summary.md"
    summary_path.write_text(text)
    print_fn(text)
    print_fn(f"wrote {csv_path}, {png}, {summary_path}")
    return {
        "csv": csv_path,
        "png": png,
        "summary_path": summary_path,
        "summary": text,
        "provenance": sidecar,
    }
