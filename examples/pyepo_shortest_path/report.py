"""Tables and figure of the PyEPO benchmark (``results.csv`` rows → Markdown, PNG).

Every number is a mean ± standard deviation over seeds. Two methods are "within noise"
of each other when their mean ± std intervals overlap; the summary line of each degree
names the best method and every method within noise of it, whoever they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples import common
from examples.pyepo_shortest_path.methods import LABELS, METHODS

__all__ = ["finish", "plot", "regret_table", "scan_table", "stats", "verdicts"]

ORDER = ("initial", *METHODS)


def stats(rows: Sequence[dict], method: str, degree: int, column: str) -> tuple[float, float, int]:
    """Mean, std (population) and count of ``column`` over the seeds of one cell."""
    values = np.array([float(r[column]) for r in rows
                       if r["method"] == method and int(r["degree"]) == degree
                       and r.get(column, "") != ""], dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, 0
    return float(values.mean()), float(values.std()), int(values.size)


def _pm(mean: float, std: float, digits: int = 4) -> str:
    return "—" if not np.isfinite(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _methods(rows: Sequence[dict]) -> list[str]:
    present = {r["method"] for r in rows}
    return [m for m in ORDER if m in present]


def _degrees(rows: Sequence[dict]) -> list[int]:
    return sorted({int(r["degree"]) for r in rows})


def _all_runs(rows: Sequence[dict], method: str, column: str) -> tuple[float, float]:
    values = np.array([float(r[column]) for r in rows if r["method"] == method
                       and r.get(column, "") != ""], dtype=float)
    values = values[np.isfinite(values)]
    return (float(values.mean()), float(values.std())) if values.size else (np.nan, np.nan)


def regret_table(rows: Sequence[dict]) -> str:
    """Methods × degrees: test normalized regret, then seconds and CPU seconds per epoch."""
    degrees = _degrees(rows)
    head = ["method", *[f"deg {d}" for d in degrees], "s / epoch", "CPU s / epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in _methods(rows):
        cells = [LABELS[method]]
        best = {d: _best(rows, d)[0] for d in degrees}
        for d in degrees:
            text = _pm(*stats(rows, method, d, "test_regret")[:2])
            cells.append(f"**{text}**" if method == best[d] else text)
        if method in ("initial", "2s"):
            cells += ["—", "—"]
        else:
            cells += [_pm(*_all_runs(rows, method, "seconds_per_epoch"), 2),
                      _pm(*_all_runs(rows, method, "cpu_seconds_per_epoch"), 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scan_table(rows: Sequence[dict]) -> str:
    """LPGD's τ scan: validation and test regret per τ and degree, and how often chosen."""
    degrees = _degrees(rows)
    taus = sorted({float(r["tau"]) for r in rows if str(r["method"]).startswith("lpgd_tau=")})
    head = ["τ", *[f"deg {d}: val / test (chosen)" for d in degrees], "s / epoch"]
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
        cells.append(_pm(*_all_runs(rows, name, "seconds_per_epoch"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _best(rows: Sequence[dict], degree: int) -> tuple[str | None, list[str]]:
    """The method with the lowest mean test regret and those within noise of it."""
    cells = {m: stats(rows, m, degree, "test_regret") for m in _methods(rows) if m != "initial"}
    cells = {m: s for m, s in cells.items() if np.isfinite(s[0])}
    if not cells:
        return None, []
    best = min(cells, key=lambda m: cells[m][0])
    upper = cells[best][0] + cells[best][1]
    close = [m for m, (mean, std, _) in cells.items() if m != best and mean - std <= upper]
    return best, close


def verdicts(rows: Sequence[dict]) -> str:
    """One line per degree: the winner, who is within noise, and where LPGD ranks."""
    lines = []
    for d in _degrees(rows):
        best, close = _best(rows, d)
        if best is None:
            continue
        mean, std, _ = stats(rows, best, d, "test_regret")
        text = f"* degree {d}: lowest test regret **{LABELS[best]}** ({_pm(mean, std)})"
        text += ("; within noise of it: " + ", ".join(LABELS[m] for m in close)) if close \
            else "; no other method within noise"
        if best != "lpgd" and "lpgd" in _methods(rows):
            ranked = sorted((m for m in _methods(rows) if m != "initial"),
                            key=lambda m: stats(rows, m, d, "test_regret")[0])
            verdict = "within noise" if "lpgd" in close else "worse, beyond noise"
            text += (f". LPGD ranks {ranked.index('lpgd') + 1} of {len(ranked)} "
                     f"({verdict})")
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


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
    fig.suptitle(f"{title} (mean ± std over {seeds} seed{'s' * (seeds != 1)})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def finish(rows: Sequence[dict], args, *, print_fn=print) -> dict:
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
    title = "PyEPO shortest path 5x5"
    png = plot(rows, out / "regret.png", title=title)
    notes = (f"{args.n_train} training / {args.n_val} validation / {args.n_test} test instances, "
             f"5 features, noise half-width {args.noise}; linear model; Adam lr {args.lr}, "
             f"batch {args.batch}, {args.epochs} epochs; seeds {' '.join(map(str, args.seeds))}; "
             f"layer solver {args.solver}. Normalized test regret by pyepo.metric.regret "
             "(mean ± std over seeds; bold: lowest mean).")
    text = (f"## {title}\n\n{notes}\n\n{regret_table(rows)}\n{verdicts(rows)}\n"
            f"### LPGD's τ scan (validation regret chooses)\n\n{scan_table(rows)}")
    summary_path = out / "summary.md"
    summary_path.write_text(text)
    print_fn(text)
    print_fn(f"wrote {csv_path}, {png}, {summary_path}")
    return {"csv": csv_path, "png": png, "summary_path": summary_path, "summary": text}
