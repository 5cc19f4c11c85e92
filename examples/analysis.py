"""Analysis of the experiments' results: curves, summaries against a target, verdicts.

From the rows that :mod:`examples.common` records, per method and seed:

* ``curves.png`` — training loss against iterations and against wall time, plus a
  held-out panel, one curve per method (mean ± std band over seeds);
* ``summary.md`` / ``summary.csv`` — per method, mean ± std over seeds of the
  iterations and seconds needed to reach a target training loss, and of the final
  training and held-out losses; the verdict names the winner and every method within
  noise of it (mean ± std intervals that overlap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from examples.common import write_csv

__all__ = ["finish", "gd_improvement_target", "markdown_table", "plot_curves", "summarize",
           "verdict", "write_summary"]


def _curves(rows: Sequence[dict], method: str, column: str):
    """Per seed, aligned on the evaluation points: iterations, times and values.

    Runs of one method share their evaluation schedule; a run that stopped early is
    padded with NaN so that the mean and std ignore it from there on.
    """
    by_seed: dict[int, list[dict]] = {}
    for row in rows:
        if row["method"] == method:
            by_seed.setdefault(int(row["seed"]), []).append(row)
    runs = [sorted(r, key=lambda x: x["iteration"]) for _, r in sorted(by_seed.items())]
    length = max(len(r) for r in runs)
    longest = max(runs, key=len)
    iterations = np.array([r["iteration"] for r in longest], dtype=float)
    times = np.full((len(runs), length), np.nan)
    values = np.full((len(runs), length), np.nan)
    for i, run in enumerate(runs):
        times[i, :len(run)] = [r["wall_time"] for r in run]
        values[i, :len(run)] = [float(r.get(column, np.nan)) for r in run]
    return iterations, times, values


def _methods_in(rows: Sequence[dict]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        if row["method"] not in seen:
            seen.append(row["method"])
    return seen


def _pretty(column: str) -> str:
    """``heldout_board_acc`` → ``held-out board acc``."""
    return column.replace("heldout_", "held-out ").replace("_", " ")


def _label(method: str) -> str:
    return "GD (exact)" if method == "exact" else method.replace("lpgd_tau=", "LPGD τ=")


def _nanmean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.sum(np.isfinite(values), axis=0)
    safe = np.where(np.isfinite(values), values, 0.0)
    mean = np.where(counts > 0, safe.sum(axis=0) / np.maximum(counts, 1), np.nan)
    sq = np.where(np.isfinite(values), (values - mean) ** 2, 0.0)
    std = np.where(counts > 0, np.sqrt(sq.sum(axis=0) / np.maximum(counts, 1)), np.nan)
    return mean, std


def plot_curves(rows: Sequence[dict], path: Path, *, title: str, loss_label: str = "loss",
                heldout: str = "heldout_loss", heldout_label: str = "held-out loss",
                log_y: bool = False, train: str = "train_loss") -> Path:
    """Loss vs iteration, loss vs wall time and a held-out metric vs iteration.

    One curve per method: the mean over seeds, with a ± one standard deviation band.
    On the time axis each evaluation point sits at the seeds' mean training time.

    Parameters
    ----------
    rows : sequence of dict
        Results rows (:meth:`RunLogger.log`).
    path : Path
        PNG to write.
    title : str
        Figure title.
    loss_label, heldout_label : str
        Axis labels.
    heldout : str, default "heldout_loss"
        Column of the third panel.
    log_y : bool, default False
        Logarithmic loss axes.
    train : str, default "train_loss"
        Column of the first two panels (e.g. the loss minus each seed's own target).

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines; harmless when already set
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n_seeds = len({r["seed"] for r in rows})
    for k, method in enumerate(_methods_in(rows)):
        color = colors[k % len(colors)]
        iters, times, trained = _curves(rows, method, train)
        _, _, held = _curves(rows, method, heldout)
        mean_t, _ = _nanmean_std(times)
        for ax, x, values in ((axes[0], iters, trained), (axes[1], mean_t, trained),
                              (axes[2], iters, held)):
            mean, std = _nanmean_std(values)
            ax.plot(x, mean, color=color, label=_label(method), lw=1.6)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
    axes[0].set(xlabel="iteration", ylabel=f"training {loss_label}")
    axes[1].set(xlabel="training wall time [s]", ylabel=f"training {loss_label}")
    axes[2].set(xlabel="iteration", ylabel=heldout_label)
    for ax in axes:
        ax.grid(alpha=0.3)
        if log_y and ax is not axes[2]:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} (mean ± std over {n_seeds} seed{'s' * (n_seeds != 1)})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _first_reach(iterations, times, values, target):
    """(iteration, time) of the first evaluation with ``value <= target``, else NaNs."""
    hit = np.nonzero(np.isfinite(values) & (values <= target))[0]
    if hit.size == 0:
        return np.nan, np.nan
    return iterations[hit[0]], times[hit[0]]


def summarize(rows: Sequence[dict], target: float | Mapping[int, float], *,
              extra: Sequence[str] = ()) -> list[dict]:
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
        ``total_cpu_seconds``/``_std`` and ``final_<extra>``/``_std``.
    """
    summary = []
    for method in _methods_in(rows):
        iters, times, train = _curves(rows, method, "train_loss")
        seeds = sorted({int(r["seed"]) for r in rows if r["method"] == method})
        levels = ([target[s] for s in seeds] if isinstance(target, Mapping)
                  else [target] * len(seeds))
        reach = [_first_reach(iters, t, v, level)
                 for t, v, level in zip(times, train, levels)]
        reach_it = np.array([r[0] for r in reach])
        reach_s = np.array([r[1] for r in reach])
        entry = {"method": method, "seeds": len(train),
                 "reached": int(np.sum(np.isfinite(reach_it)))}
        entry.update(_ms("iters_to_target", reach_it))
        entry.update(_ms("seconds_to_target", reach_s))
        entry.update(_ms("final_train", _last(train)))
        entry.update(_ms("final_heldout", _last(_curves(rows, method, "heldout_loss")[2])))
        entry.update(_ms("total_seconds", _last(times)))
        entry.update(_ms("total_cpu_seconds", _last(_curves(rows, method, "cpu_time")[2])))
        for column in extra:
            entry.update(_ms(f"final_{column}", _last(_curves(rows, method, column)[2])))
        summary.append(entry)
    return summary


def _last(values: np.ndarray) -> np.ndarray:
    out = []
    for run in values:
        finite = run[np.isfinite(run)]
        out.append(finite[-1] if finite.size else np.nan)
    return np.array(out)


def _ms(name: str, values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {name: np.nan, f"{name}_std": np.nan}
    return {name: float(finite.mean()), f"{name}_std": float(finite.std())}


def _pm(mean: float, std: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _pm_g(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.4g} ± {std:.2g}"


def _target_text(target: float | Mapping[int, float]) -> str:
    return "the seed's target" if isinstance(target, Mapping) else f"{target:.4g}"


def markdown_table(summary: Sequence[dict], target: float | Mapping[int, float], *,
                   extra: Sequence[str] = (), loss_name: str = "loss") -> str:
    """The summary as a Markdown table, with a line naming the best method per column."""
    head = ["method", f"iterations to {loss_name} ≤ {_target_text(target)}", "seconds to target",
            f"final train {loss_name}", f"final held-out {loss_name}", "training seconds",
            "training CPU seconds"]
    head += [f"final {_pretty(c)}" for c in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        reached = f" ({s['reached']}/{s['seeds']} seeds)" if s["reached"] < s["seeds"] else ""
        cells = [_label(s["method"]),
                 (_pm(s["iters_to_target"], s["iters_to_target_std"], 0) + reached
                  if s["reached"] else f"not reached (0/{s['seeds']})"),
                 _pm(s["seconds_to_target"], s["seconds_to_target_std"], 1) if s["reached"]
                 else "—",
                 _pm_g(s["final_train"], s["final_train_std"]),
                 _pm_g(s["final_heldout"], s["final_heldout_std"]),
                 _pm(s["total_seconds"], s["total_seconds_std"], 1),
                 _pm(s["total_cpu_seconds"], s["total_cpu_seconds_std"], 1)]
        cells += [_pm_g(s[f"final_{c}"], s[f"final_{c}_std"]) for c in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + verdict(summary) + "\n"


def verdict(summary: Sequence[dict]) -> str:
    """One sentence: which method reached the target first and which ended lowest.

    Says explicitly when the exact-gradient baseline (GD) wins a criterion, and names
    the methods within noise of each winner (mean ± std intervals that overlap).
    """
    def best(key, candidates):
        finite = [s for s in candidates if np.isfinite(s[key])]
        return min(finite, key=lambda s: s[key]) if finite else None

    # Only methods that reached the target on every seed compete on speed: a mean over
    # the seeds that happened to reach it would favour unreliable methods.
    reliable = [s for s in summary if s["reached"] == s["seeds"]]
    parts = []
    for key, what in (("iters_to_target", "fewest iterations to the target"),
                      ("seconds_to_target", "least time to the target"),
                      ("final_train", "lowest final training loss"),
                      ("final_heldout", "lowest final held-out loss")):
        pool = reliable if key.endswith("target") else summary
        winner = best(key, pool)
        if winner is None:
            parts.append(f"{what}: no method on every seed")
            continue
        tag = " — GD wins" if winner["method"] == "exact" else ""
        close = [_label(s["method"]) for s in _within_noise(winner, pool, key)]
        noise = f" (within noise: {', '.join(close)})" if close else ""
        parts.append(f"{what}: {_label(winner['method'])}{tag}{noise}")
    return "Best per criterion (mean over seeds): " + "; ".join(parts) + "."


def _within_noise(winner: dict, pool: Sequence[dict], key: str) -> list[dict]:
    """The others in ``pool`` whose mean ± std interval overlaps the winner's."""
    top = winner[key] + (winner[f"{key}_std"] if np.isfinite(winner[f"{key}_std"]) else 0.0)
    return [s for s in pool if s is not winner and np.isfinite(s[key])
            and s[key] - (s[f"{key}_std"] if np.isfinite(s[f"{key}_std"]) else 0.0) <= top]


def write_summary(rows: Sequence[dict], out: Path, target: float | Mapping[int, float], *,
                  title: str, extra: Sequence[str] = (), loss_name: str = "loss",
                  notes: str = "") -> str:
    """Write ``summary.md`` and ``summary.csv`` into ``out``; return the Markdown."""
    summary = summarize(rows, target, extra=extra)
    text = f"## {title}\n\n"
    if notes:
        text += notes.strip() + "\n\n"
    text += markdown_table(summary, target, extra=extra, loss_name=loss_name)
    out = Path(out)
    (out / "summary.md").write_text(text)
    write_csv([{**s} for s in summary], out / "summary.csv")
    return text


def finish(rows: Sequence[dict], out: Path, *, title: str,
           target: float | Mapping[int, float], extra: Sequence[str] = (),
           loss_name: str = "loss", notes: str = "",
           plot_kwargs: dict | None = None, print_fn=print) -> dict:
    """Write ``results.csv``, ``curves.png`` and the summary; print the summary.

    Returns
    -------
    dict
        Paths (``csv``, ``png``, ``summary``) and the ``summary`` Markdown text.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(rows, out / "results.csv")
    png = plot_curves(rows, out / "curves.png", title=title,
                      **{"loss_label": loss_name, **(plot_kwargs or {})})
    text = write_summary(rows, out, target, title=title, extra=extra, loss_name=loss_name,
                         notes=notes)
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
