"""Tables and figure of the PyEPO benchmark (``results.csv`` rows → Markdown, PNG).

Descriptive cells are a mean ± sample standard deviation (ddof = 1) over seeds.
Methods are compared pair by pair on the runs they share — the same degree and seed,
hence the same data and initial model — with :func:`examples.analysis.paired` (paired
t-test, two-sided, α = 0.05; wins and the sign test shown beside it):
:func:`paired_regret` for the test regret, :func:`time_comparisons` for the training
time. Time is measured twice per epoch: wall-clock seconds, and the process's CPU
seconds (steadier on a shared machine). LPGD's row is the training of the τ that the
validation scan chose, but the scan trained once per τ: the column "CPU s / epoch, all
trainings" adds those trainings up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples import analysis, common
from examples.pyepo_shortest_path.methods import LABELS, METHODS

__all__ = ["finish", "paired_lines", "paired_regret", "plot", "regret_table", "scan_table",
           "scan_cost", "stats", "time_comparisons"]

ROOT = Path(__file__).resolve().parents[2]

#: Short names for the verdicts.
SHORT = {"lpgd": "LPGD", "exact": "exact", "spo+": "SPO+", "dbb": "DBB", "dpo": "DPO",
         "pfyl": "PFYL", "2s": "two-stage LS", "initial": "the initial model",
         "lpgd_scan": "LPGD's τ scan", "lpgd-upper": "LPGD upper", "lpgd-lower": "LPGD lower",
         "lpgd-rho": "LPGD ρ>0", "lpgd-sol": "LPGD on ‖w − w*‖²",
         "lpgd-deg": "LPGD (τ per degree)", "pg": "PG", "pg-at-lpgd": "PG (σ = LPGD's τ)",
         "nid": "NID"}

ORDER = ("initial", *METHODS)


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else np.nan


def stats(rows: Sequence[dict], method: str, degree: int, column: str) -> tuple[float, float, int]:
    """Mean, sample std (ddof = 1) and count of ``column`` over the seeds of one cell."""
    values = [float(r[column]) for r in rows
              if r["method"] == method and int(r["degree"]) == degree
              and r.get(column, "") != ""]
    values = [v for v in values if np.isfinite(v)]
    return (*_mean_std(values), len(values))


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _methods(rows: Sequence[dict]) -> list[str]:
    present = {r["method"] for r in rows}
    return [m for m in ORDER if m in present]


def _degrees(rows: Sequence[dict]) -> list[int]:
    return sorted({int(r["degree"]) for r in rows})


def _all_runs(rows: Sequence[dict], method: str, column: str) -> tuple[float, float]:
    """Mean and sample std of ``column`` over every run (degree and seed) of a method."""
    return _mean_std([float(r[column]) for r in rows if r["method"] == method
                      and r.get(column, "") != ""])


def _per_run(rows: Sequence[dict], method: str, column: str) -> dict:
    """``{(degree, seed): value}`` of one method (``"lpgd_scan"``: :func:`scan_cost`)."""
    if method == "lpgd_scan":
        return scan_cost(rows, column)
    return analysis.final_values(rows, method, column, by=("degree", "seed"))


def scan_cost(rows: Sequence[dict], column: str = "cpu_seconds_per_epoch") -> dict:
    """``{(degree, seed): Σ over τ}`` of ``column``: what LPGD's validation scan cost,
    per epoch, for one reported LPGD row (one training per τ; empty without a scan)."""
    total: dict = {}
    for row in rows:
        if str(row["method"]).startswith("lpgd_tau=") and row.get(column, "") != "":
            key = (int(row["degree"]), int(row["seed"]))
            total[key] = total.get(key, 0.0) + float(row[column])
    return total


def regret_table(rows: Sequence[dict]) -> str:
    """Methods × degrees: test normalized regret (mean ± sample std over seeds; bold: the
    lowest mean), then wall and CPU seconds per training epoch over all runs, and the CPU
    seconds per epoch of every training the row needs (LPGD: its τ scan)."""
    degrees = _degrees(rows)
    head = ["method", *[f"deg {d}" for d in degrees], "wall s / epoch", "CPU s / epoch",
            "CPU s / epoch, all trainings"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scan = scan_cost(rows)
    for method in _methods(rows):
        cells = [LABELS[method]]
        best = {d: _best(rows, d) for d in degrees}
        for d in degrees:
            text = _pm(*stats(rows, method, d, "test_regret")[:2])
            cells.append(f"**{text}**" if method == best[d] else text)
        if method in ("initial", "2s"):
            cells += ["—", "—", "—"]
        else:
            cpu = _pm(*_all_runs(rows, method, "cpu_seconds_per_epoch"), 2)
            cells += [_pm(*_all_runs(rows, method, "seconds_per_epoch"), 2), cpu,
                      _pm(*_mean_std(list(scan.values())), 2) if method == "lpgd" and scan
                      else cpu]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scan_table(rows: Sequence[dict]) -> str:
    """LPGD's τ scan: validation and test regret per τ and degree, and how often chosen."""
    degrees = _degrees(rows)
    taus = sorted({float(r["tau"]) for r in rows if str(r["method"]).startswith("lpgd_tau=")})
    head = ["τ", *[f"deg {d}: val / test (chosen)" for d in degrees], "CPU s / epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for tau in taus:
        name = f"lpgd_tau={tau:g}"
        cells = [f"{tau:g}"]
        for d in degrees:
            chosen = sum(1 for r in rows if r["method"] == "lpgd" and int(r["degree"]) == d
                         and float(r["tau"]) == tau)
            seeds = sum(1 for r in rows if r["method"] == name and int(r["degree"]) == d)
            cells.append(f"{_pm(*stats(rows, name, d, 'val_regret')[:2])} / "
                         f"{_pm(*stats(rows, name, d, 'test_regret')[:2])} ({chosen}/{seeds})")
        cells.append(_pm(*_all_runs(rows, name, "cpu_seconds_per_epoch"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(rows: Sequence[dict], degree: int) -> str | None:
    """The method with the lowest mean test regret at ``degree`` (None without rows)."""
    cells = {m: stats(rows, m, degree, "test_regret")[0] for m in _methods(rows)
             if m != "initial"}
    cells = {m: mean for m, mean in cells.items() if np.isfinite(mean)}
    return min(cells, key=cells.get) if cells else None


def _compare(rows: Sequence[dict], a: str, b: str, column: str,
             degree: int | None = None) -> analysis.Paired:
    """``a`` against ``b`` on ``column``, paired over seeds at one degree or over every
    (degree, seed) run."""
    def values(method):
        per_run = _per_run(rows, method, column)
        return {k: v for k, v in per_run.items() if degree is None or k[0] == degree}

    return analysis.paired(values(a), values(b), a=SHORT[a], b=SHORT[b])


def _others(rows: Sequence[dict]) -> list[str]:
    return [m for m in (*_methods(rows)[1:], "initial") if m not in ("lpgd",)
            and m in {r["method"] for r in rows}]


def paired_regret(rows: Sequence[dict]) -> str:
    """LPGD against every other method on test regret: per degree (pairs: the seeds) and
    over all (degree, seed) runs, as a Markdown table (:func:`analysis.paired_table`)."""
    comparisons = []
    for other in _others(rows):
        for degree in (*_degrees(rows), None):
            where = "all degrees" if degree is None else f"degree {degree}"
            comparisons.append((where, _compare(rows, "lpgd", other, "test_regret", degree)))
    return analysis.paired_table(comparisons, what="test regret at")


def paired_lines(rows: Sequence[dict], method: str = "lpgd",
                 others: Sequence[str] | None = None) -> str:
    """One line per method ``method`` is compared with on test regret: the verdict over
    all runs, then per degree (:func:`paired_regret` has LPGD's numbers)."""
    lines = []
    for other in (others if others is not None else _others(rows)):
        overall = _compare(rows, method, other, "test_regret")
        per_degree: dict[str, list[str]] = {}
        for d in _degrees(rows):
            c = _compare(rows, method, other, "test_regret", d)
            per_degree.setdefault(c.winner or "no significant difference", []).append(str(d))
        parts = [f"{name if name == 'no significant difference' else name + ' better'} at "
                 f"degree{'s' * (len(ds) > 1)} {', '.join(ds)}"
                 for name, ds in per_degree.items()]
        verdict = f"**{overall.verdict}**" if overall.winner else overall.verdict
        seeds = len({r["seed"] for r in rows})
        lines.append(f"* {SHORT[method]} vs {SHORT[other]}: over all {overall.n} runs, "
                     f"{verdict}; {SHORT[method]} lower in {overall.wins_a} of {overall.n}, "
                     "paired t p = "
                     f"{analysis._p(overall.p_value)}. Per degree ({seeds} seeds each): "
                     + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def time_comparisons(rows: Sequence[dict]) -> str:
    """Seconds per training epoch, LPGD (the chosen τ's training, and the whole τ scan)
    against each trained PyEPO method and the exact gradient, paired over all
    (degree, seed) runs, in CPU and in wall seconds."""
    present = {r["method"] for r in rows}
    others = [m for m in ("spo+", "dbb", "dpo", "pfyl", "exact") if m in present]
    comparisons = []
    for column, unit in (("cpu_seconds_per_epoch", "CPU s / epoch"),
                         ("seconds_per_epoch", "wall s / epoch")):
        for a in ("lpgd", "lpgd_scan"):
            if a == "lpgd_scan" and not scan_cost(rows):
                continue
            for other in others:
                comparisons.append((unit, _compare(rows, a, other, column)))
    return analysis.paired_table(comparisons, what="measure (lower is better)")


def plot(rows: Sequence[dict], path: Path, *, title: str) -> Path:
    """Test regret vs degree (one line per method, mean ± std) and seconds per epoch
    (wall and process CPU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    degrees = _degrees(rows)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4),
                                      gridspec_kw={"width_ratios": [3, 2]})
    methods = [m for m in _methods(rows) if m != "initial"]
    for k, method in enumerate(methods):
        cells = [stats(rows, method, d, "test_regret") for d in degrees]
        offset = (k - (len(methods) - 1) / 2) * 0.06  # keep the error bars apart
        left.errorbar(np.array(degrees) + offset, [c[0] for c in cells],
                      yerr=[c[1] for c in cells], marker="o", capsize=3, lw=1.4,
                      label=LABELS[method], ls="--" if method in ("exact", "2s") else "-")
    left.set(xlabel="polynomial degree", ylabel="normalized test regret", xticks=degrees,
             yscale="log")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)
    timed = [m for m in methods if m != "2s"]
    rows_y = np.arange(len(timed))
    # Wall time is what a user waits; CPU time is steadier on a shared machine.
    for shift, column, color, name in ((-0.2, "seconds_per_epoch", "tab:gray", "wall"),
                                       (0.2, "cpu_seconds_per_epoch", "tab:blue", "CPU")):
        means = [_all_runs(rows, m, column) for m in timed]
        right.barh(rows_y + shift, [m[0] for m in means], height=0.4,
                   xerr=[m[1] for m in means], color=color, label=name)
    right.set(xlabel="training seconds per epoch", yticks=rows_y,
              yticklabels=[LABELS[m] for m in timed])
    right.legend(fontsize=8)
    right.invert_yaxis()
    right.grid(alpha=0.3, axis="x")
    seeds = len({r["seed"] for r in rows})
    fig.suptitle(f"{title} (mean ± sample std over {seeds} seed{'s' * (seeds != 1)})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def provenance(args, **extra) -> dict:
    """The command, git commit (and whether the tree had changes), time and versions of
    a run, for the JSON sidecar next to its CSV."""
    import datetime
    import platform
    import subprocess
    import sys

    import torch

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], capture_output=True, text=True,
                                  cwd=Path(__file__).parent, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    script = Path(sys.argv[0]).resolve()
    module = (".".join(script.relative_to(ROOT).with_suffix("").parts)
              if script.is_relative_to(ROOT) else str(script))
    return {"command": " ".join(["python -m", module, *sys.argv[1:]]),
            "git_commit": git("rev-parse", "HEAD"),
            "git_dirty_paths": [line[3:] for line in git("status", "--porcelain").splitlines()
                                if line[3:].startswith(("cvxlpgd/", "examples/"))],
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "python": platform.python_version(), "torch": torch.__version__,
            "options": options, **extra}


def finish(rows: Sequence[dict], args, *, title: str = "PyEPO shortest path 5x5",
           experiment: str = "pyepo_shortest_path", print_fn=print) -> dict:
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
    png = plot(rows, out / "regret.png", title=title)
    notes = (f"{args.n_train} training / {args.n_val} validation / {args.n_test} test instances, "
             f"methods {' '.join(args.methods)}, 5 features, noise half-width {args.noise}; "
             f"linear model; Adam lr {args.lr}, "
             f"batch {args.batch}, {args.epochs} epochs; seeds {' '.join(map(str, args.seeds))}; "
             f"layer solver {args.solver}. Normalized test regret by pyepo.metric.regret "
             "(mean ± sample std over seeds; bold: lowest mean). Comparisons: paired "
             f"t-test over the shared runs, α = {analysis.ALPHA:g}.")
    text = (f"## {title}\n\n{notes}\n\n{regret_table(rows)}\n"
            f"### LPGD against each method, seed by seed\n\n{paired_lines(rows)}\n"
            f"{paired_regret(rows)}\n### Training time, run by run\n\n"
            f"{time_comparisons(rows)}\n"
            f"### LPGD's τ scan (validation regret chooses)\n\n{scan_table(rows)}")
    summary_path = out / "summary.md"
    summary_path.write_text(text)
    print_fn(text)
    print_fn(f"wrote {csv_path}, {png}, {summary_path}")
    return {"csv": csv_path, "png": png, "summary_path": summary_path, "summary": text,
            "provenance": sidecar}
