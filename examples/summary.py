"""An experiment's summary: per method, mean ± sample std over seeds of the iterations
and seconds needed to reach a target training loss, and of the final training and
held-out losses; per criterion the best method and the methods whose paired difference
from it is not significant (:func:`verdict`); and each LPGD method paired against GD
(:func:`examples.paired.paired_against`). :func:`finish` writes ``results.csv``,
``curves.png``, ``summary.md`` and ``summary.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from examples.common import write_csv
from examples.curves_plot import plot_curves
from examples.paired import ALPHA, paired, paired_against, paired_table
from examples.result_rows import curves, label, methods_in, pretty

__all__ = [
    "finish",
    "gd_improvement_target",
    "markdown_table",
    "summarize",
    "verdict",
    "write_summary",
]


def _first_reach(iterations, times, values, target):
    """(iteration, time) of the first evaluation with ``value <= target``, else NaNs."""
    hit = np.nonzero(np.isfinite(values) & (values <= target))[0]
    if hit.size == 0:
        return np.nan, np.nan
    return iterations[hit[0]], times[hit[0]]


def summarize(
    rows: Sequence[dict], target: float | Mapping[int, float], *, extra: Sequence[str] = ()
) -> list[dict]:
    """Per method: iterations / seconds to reach ``target``, final losses (mean, std).

    Parameters
    ----------
    rows : sequence of dict
        Results rows.
    target : float or mapping of int to float
        Training-loss level, or one level per seed (e.g. a baseline computed on each
        seed's own data); a seed "reaches" it at the first evaluation with
        ``train_loss <= target``. Means and stds of iterations and seconds are over the
        seeds that reached it (``reached`` says how many).
    extra : sequence of str
        Further columns whose final value is summarized (e.g. accuracies).

    Returns
    -------
    list of dict
        One dict per method with keys ``method``, ``reached``, ``seeds``,
        ``iters_to_target``/``_std``, ``seconds_to_target``/``_std``,
        ``final_train``/``_std``, ``final_heldout``/``_std``, ``total_seconds``/``_std``,
        ``total_cpu_seconds``/``_std`` and ``final_<extra>``/``_std`` (stds: sample,
        ddof = 1), and ``per_seed``: for each of those criteria, ``{seed: value}`` (what
        :func:`verdict` pairs).
    """
    summary = []
    for method in methods_in(rows):
        iters, times, train = curves(rows, method, "train_loss")
        seeds = sorted({int(r["seed"]) for r in rows if r["method"] == method})
        levels = (
            [target[s] for s in seeds] if isinstance(target, Mapping) else [target] * len(seeds)
        )
        reach = [_first_reach(iters, t, v, level) for t, v, level in zip(times, train, levels)]
        reach_it = np.array([r[0] for r in reach])
        reach_s = np.array([r[1] for r in reach])
        entry = {
            "method": method,
            "seeds": len(train),
            "reached": int(np.sum(np.isfinite(reach_it))),
        }
        values = {
            "iters_to_target": reach_it,
            "seconds_to_target": reach_s,
            "final_train": _last(train),
            "final_heldout": _last(curves(rows, method, "heldout_loss")[2]),
            "total_seconds": _last(times),
            "total_cpu_seconds": _last(curves(rows, method, "cpu_time")[2]),
        }
        for column in extra:
            values[f"final_{column}"] = _last(curves(rows, method, column)[2])
        for name, per_run in values.items():
            entry.update(_ms(name, per_run))
        entry["per_seed"] = {
            name: {seed: float(v) for seed, v in zip(seeds, per_run)}
            for name, per_run in values.items()
        }
        summary.append(entry)
    return summary


def _last(values: np.ndarray) -> np.ndarray:
    out = []
    for run in values:
        finite = run[np.isfinite(run)]
        out.append(finite[-1] if finite.size else np.nan)
    return np.array(out)


def _ms(name: str, values: np.ndarray) -> dict:
    """Mean and sample std (ddof = 1; NaN for a single value) of the finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {name: np.nan, f"{name}_std": np.nan}
    std = float(finite.std(ddof=1)) if finite.size > 1 else np.nan
    return {name: float(finite.mean()), f"{name}_std": std}


def _pm(mean: float, std: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "—"
    if not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _pm_g(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "—"
    if not np.isfinite(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


def _target_text(target: float | Mapping[int, float]) -> str:
    return "the seed's target" if isinstance(target, Mapping) else f"{target:.4g}"


def markdown_table(
    summary: Sequence[dict],
    target: float | Mapping[int, float],
    *,
    extra: Sequence[str] = (),
    loss_name: str = "loss",
) -> str:
    """The summary as a Markdown table (mean ± sample std over seeds), with the line of
    :func:`verdict` under it."""
    head = [
        "method",
        f"iterations to {loss_name} ≤ {_target_text(target)}",
        "wall seconds to target",
        f"final train {loss_name}",
        f"final held-out {loss_name}",
        "training wall seconds",
        "training CPU seconds",
    ]
    head += [f"final {pretty(c)}" for c in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        reached = f" ({s['reached']}/{s['seeds']} seeds)" if s["reached"] < s["seeds"] else ""
        cells = [
            label(s["method"]),
            (
                _pm(s["iters_to_target"], s["iters_to_target_std"], 0) + reached
                if s["reached"]
                else f"not reached (0/{s['seeds']})"
            ),
            _pm(s["seconds_to_target"], s["seconds_to_target_std"], 1) if s["reached"] else "—",
            _pm_g(s["final_train"], s["final_train_std"]),
            _pm_g(s["final_heldout"], s["final_heldout_std"]),
            _pm(s["total_seconds"], s["total_seconds_std"], 1),
            _pm(s["total_cpu_seconds"], s["total_cpu_seconds_std"], 1),
        ]
        cells += [_pm_g(s[f"final_{c}"], s[f"final_{c}_std"]) for c in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + verdict(summary) + "\n"


def verdict(summary: Sequence[dict]) -> str:
    """One sentence: per criterion, the method with the best mean and those it does not
    beat significantly.

    The criteria are the iterations and wall seconds to the target (among the methods
    that reached it on every seed: a mean over the seeds that happened to reach it
    would favour unreliable methods), and the final training and held-out losses. For
    each, the method with the lowest mean wins; every other method is paired with it
    seed by seed (:func:`paired`), and those with "no significant difference" are
    named. Says explicitly when the exact-gradient baseline (GD) wins a criterion.
    """

    def best(key, candidates):
        finite = [s for s in candidates if np.isfinite(s[key])]
        return min(finite, key=lambda s: s[key]) if finite else None

    reliable = [s for s in summary if s["reached"] == s["seeds"]]
    parts = []
    for key, what in (
        ("iters_to_target", "fewest iterations to the target"),
        ("seconds_to_target", "least wall time to the target"),
        ("final_train", "lowest final training loss"),
        ("final_heldout", "lowest final held-out loss"),
    ):
        pool = reliable if key.endswith("target") else summary
        winner = best(key, pool)
        if winner is None:
            parts.append(f"{what}: no method on every seed")
            continue
        tag = " — GD wins" if winner["method"] == "exact" else ""
        close = [label(s["method"]) for s in _not_beaten(winner, pool, key)]
        tie = f" (not significantly different: {', '.join(close)})" if close else ""
        parts.append(f"{what}: {label(winner['method'])}{tag}{tie}")
    return (
        "Best mean per criterion, and the methods not significantly different from it "
        f"(paired t-test over seeds, α = {ALPHA:g}): " + "; ".join(parts) + "."
    )


def _not_beaten(winner: dict, pool: Sequence[dict], key: str) -> list[dict]:
    """The others in ``pool`` that the winner does not beat in a paired test."""
    out = []
    for s in pool:
        if s is winner or not np.isfinite(s[key]):
            continue
        comparison = paired(winner["per_seed"][key], s["per_seed"][key])
        if comparison.winner is None:
            out.append(s)
    return out


def write_summary(
    rows: Sequence[dict],
    out: Path,
    target: float | Mapping[int, float],
    *,
    title: str,
    extra: Sequence[str] = (),
    loss_name: str = "loss",
    notes: str = "",
) -> str:
    """Write ``summary.md`` and ``summary.csv`` into ``out``; return the Markdown."""
    summary = summarize(rows, target, extra=extra)
    text = f"## {title}\n\n"
    if notes:
        text += notes.strip() + "\n\n"
    text += markdown_table(summary, target, extra=extra, loss_name=loss_name)
    if any(r["method"] == "exact" for r in rows) and len(methods_in(rows)) > 1:
        columns = [
            ("train_loss", f"final train {loss_name}", True),
            ("heldout_loss", f"final held-out {loss_name}", True),
            ("cpu_time", "training CPU seconds", True),
        ]
        text += (
            "\nEach method against GD, seed by seed (paired t-test, "
            f"α = {ALPHA:g}):\n\n" + paired_table(paired_against(rows, "exact", columns))
        )
    out = Path(out)
    (out / "summary.md").write_text(text)
    write_csv(
        [{k: v for k, v in s.items() if k != "per_seed"} for s in summary], out / "summary.csv"
    )
    return text


def finish(
    rows: Sequence[dict],
    out: Path,
    *,
    title: str,
    target: float | Mapping[int, float],
    extra: Sequence[str] = (),
    loss_name: str = "loss",
    notes: str = "",
    plot_kwargs: dict | None = None,
    print_fn=print,
) -> dict:
    """Write ``results.csv``, ``curves.png`` and the summary; print the summary.

    Returns
    -------
    dict
        Paths (``csv``, ``png``, ``summary``) and the ``summary`` Markdown text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out / "results.csv")
    png = plot_curves(
        rows, out / "curves.png", title=title, **{"loss_label": loss_name, **(plot_kwargs or {})}
    )
    text = write_summary(
        rows, out, target, title=title, extra=extra, loss_name=loss_name, notes=notes
    )
    print_fn(text)
    print_fn(f"wrote {csv_path}, {png}, {out / 'summary.md'}")
    return {"csv": csv_path, "png": png, "summary_path": out / "summary.md", "summary": text}


def gd_improvement_target(rows: Sequence[dict], fraction: float = 0.8) -> float:
    """Default target: the loss at which GD has made ``fraction`` of its improvement.

    With ``L0`` the initial and ``Lf`` the final training loss of the exact-gradient
    runs (means over seeds), the target is ``L0 − fraction · (L0 − Lf)``. It lies on
    the descending part of GD's curve, where "how fast" is well defined (a target on a
    plateau would be crossed at noise-driven iterations). Without GD rows, or when GD
    does not improve, the same rule is applied to the mean over all runs.
    """

    def initial_final(method_filter):
        starts, ends = [], []
        runs: dict[tuple, list[dict]] = {}
        for row in rows:
            if method_filter(row["method"]):
                runs.setdefault((row["method"], row["seed"]), []).append(row)
        for run in runs.values():
            run = sorted(run, key=lambda r: r["iteration"])
            finite = [float(r["train_loss"]) for r in run if math.isfinite(r["train_loss"])]
            if finite:
                starts.append(finite[0])
                ends.append(finite[-1])
        return (np.mean(starts), np.mean(ends)) if starts else (np.nan, np.nan)

    start, end = initial_final(lambda m: m == "exact")
    if not (np.isfinite(start) and end < start):
        start, end = initial_final(lambda m: True)
    return float(start - fraction * (start - end))
