"""Analysis of the experiments' results: curves, summaries, paired verdicts, the page.

From the rows that :mod:`examples.common` records, per method and seed:

* ``curves.png`` — training loss against iterations and against wall time, plus a
  held-out panel, one curve per method (mean ± sample std band over seeds);
* ``summary.md`` / ``summary.csv`` — per method, mean ± sample std over seeds of the
  iterations and seconds needed to reach a target training loss, and of the final
  training and held-out losses; per criterion the best method and the methods whose
  paired difference from it is not significant (:func:`verdict`); and each LPGD
  method paired against GD (:func:`paired_against`).

**Paired comparisons** (:func:`paired`). Two methods are compared on the runs they
share (the same seed, and the same setting such as PyEPO's degree: same data, same
initial model). Per pair the difference ``A − B`` is taken; reported are the number of
pairs ``n``, the mean ± sample standard deviation (ddof = 1) of the differences, in how
many pairs each method is better, and two two-sided p-values: the paired t-test
(``scipy.stats.ttest_1samp`` of the differences against 0) and the sign test
(``scipy.stats.binomtest`` on the pairs that are not tied). **The verdict rule:** with
at least two pairs, if the paired t-test gives p < α (:data:`ALPHA` = 0.05), the method
whose mean is better wins ("A better" / "B better"); otherwise "no significant
difference (n pairs)". The sign test is shown as a distribution-free check; with five
pairs or fewer it cannot fall below 0.05 (its smallest p is 2/2ⁿ), so it decides
nothing on three seeds.

``python -m examples.analysis --page`` regenerates the tables and verdict lines of
``docs/experiments.md`` from the stored CSVs (``docs/img/*.csv``), between markers
``<!-- generated:NAME ... -->`` and ``<!-- /generated:NAME -->``; ``--check`` only
compares (exit status 1 when the page differs from what the CSVs give).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from examples.common import read_csv, write_csv

__all__ = [
    "ALPHA",
    "Paired",
    "final_values",
    "finish",
    "gd_improvement_target",
    "main",
    "markdown_table",
    "page_blocks",
    "paired",
    "paired_against",
    "paired_table",
    "plot_curves",
    "summarize",
    "update_page",
    "verdict",
    "write_summary",
]

#: Significance level of the paired verdicts (two-sided).
ALPHA = 0.05


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
        times[i, : len(run)] = [r["wall_time"] for r in run]
        values[i, : len(run)] = [float(r.get(column, np.nan)) for r in run]
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
    # Sample standard deviation (ddof = 1); a single run has no spread (0).
    std = np.where(counts > 0, np.sqrt(sq.sum(axis=0) / np.maximum(counts - 1, 1)), np.nan)
    return mean, std


def plot_curves(
    rows: Sequence[dict],
    path: Path,
    *,
    title: str,
    loss_label: str = "loss",
    heldout: str = "heldout_loss",
    heldout_label: str = "held-out loss",
    log_y: bool = False,
    train: str = "train_loss",
) -> Path:
    """Loss vs iteration, loss vs wall time and a held-out metric vs iteration.

    One curve per method: the mean over seeds, with a ± one sample standard deviation
    band.
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
        for ax, x, values in (
            (axes[0], iters, trained),
            (axes[1], mean_t, trained),
            (axes[2], iters, held),
        ):
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
    fig.suptitle(f"{title} (mean ± sample std over {n_seeds} seed{'s' * (n_seeds != 1)})")
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
    for method in _methods_in(rows):
        iters, times, train = _curves(rows, method, "train_loss")
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
            "final_heldout": _last(_curves(rows, method, "heldout_loss")[2]),
            "total_seconds": _last(times),
            "total_cpu_seconds": _last(_curves(rows, method, "cpu_time")[2]),
        }
        for column in extra:
            values[f"final_{column}"] = _last(_curves(rows, method, column)[2])
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
    head += [f"final {_pretty(c)}" for c in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        reached = f" ({s['reached']}/{s['seeds']} seeds)" if s["reached"] < s["seeds"] else ""
        cells = [
            _label(s["method"]),
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
        close = [_label(s["method"]) for s in _not_beaten(winner, pool, key)]
        tie = f" (not significantly different: {', '.join(close)})" if close else ""
        parts.append(f"{what}: {_label(winner['method'])}{tag}{tie}")
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
    if any(r["method"] == "exact" for r in rows) and len(_methods_in(rows)) > 1:
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


# ------------------------------------------------------------------ paired comparisons


@dataclass(frozen=True)
class Paired:
    """Two methods compared on the runs they share (see the module's docstring).

    Attributes
    ----------
    a, b : str
        The methods' names, as the verdict writes them.
    keys : tuple
        The pairs (e.g. seeds, or (degree, seed)), in sorted order.
    a_values, b_values : numpy.ndarray
        The two methods' values on those pairs.
    lower_is_better : bool
        Whether a lower value is better (losses, regrets, seconds).
    alpha : float
        Significance level of the verdict.
    """

    a: str
    b: str
    keys: tuple
    a_values: np.ndarray
    b_values: np.ndarray
    lower_is_better: bool = True
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.keys)

    @property
    def differences(self) -> np.ndarray:
        """``A − B`` per pair (negative: A lower)."""
        return self.a_values - self.b_values

    @property
    def mean(self) -> float:
        """Mean of the differences ``A − B``."""
        return float(self.differences.mean()) if self.n else np.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1) of the differences; NaN below 2 pairs."""
        return float(self.differences.std(ddof=1)) if self.n > 1 else np.nan

    def _better(self) -> np.ndarray:
        d = self.differences
        return d < 0 if self.lower_is_better else d > 0

    @property
    def wins_a(self) -> int:
        """Pairs in which A is better."""
        return int(np.sum(self._better()))

    @property
    def wins_b(self) -> int:
        """Pairs in which B is better."""
        return int(np.sum(self.differences != 0)) - self.wins_a

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the paired t-test (NaN below 2 pairs).

        Differences that are all equal (to round-off) have no spread: p is 0 when they
        are not zero (a consistent difference) and 1 when they are (identical results).
        """
        if self.n < 2:
            return np.nan
        d = self.differences
        if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
            return 1.0 if np.all(d == 0) else 0.0
        from scipy import stats

        return float(stats.ttest_1samp(d, 0.0).pvalue)

    @property
    def sign_p(self) -> float:
        """Two-sided p-value of the sign test on the pairs that are not tied."""
        untied = self.wins_a + self.wins_b
        if untied == 0:
            return 1.0
        from scipy import stats

        return float(stats.binomtest(self.wins_a, untied, 0.5).pvalue)

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the paired t-test is significant at ``alpha``, else None."""
        p = self.p_value
        if not (np.isfinite(p) and p < self.alpha):
            return None
        a_better = self.mean < 0 if self.lower_is_better else self.mean > 0
        return self.a if a_better else self.b

    @property
    def verdict(self) -> str:
        """``"<a> better"``, ``"<b> better"`` or ``"no significant difference (n pairs)"``."""
        if self.n < 2:
            return f"too few pairs ({self.n}) for a verdict"
        winner = self.winner
        return f"{winner} better" if winner else f"no significant difference ({self.n} pairs)"


def paired(
    a_values: Mapping[Hashable, float],
    b_values: Mapping[Hashable, float],
    *,
    a: str = "A",
    b: str = "B",
    lower_is_better: bool = True,
    alpha: float = ALPHA,
) -> Paired:
    """Compare two methods on the keys (runs) they share.

    Parameters
    ----------
    a_values, b_values : mapping
        One value per run, keyed by what makes two runs comparable (the seed, or
        ``(setting, seed)``). Keys missing on one side and non-finite values are left
        out.
    a, b : str
        Names used in the verdict.
    lower_is_better : bool, default True
        False for scores such as accuracies or Sharpe ratios.
    alpha : float, default :data:`ALPHA`
        Level of the two-sided paired t-test that decides the verdict.

    Returns
    -------
    Paired
        Differences are ``A − B``.

    Examples
    --------
    >>> c = paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.6, 2: 3.4}, a="LPGD", b="GD")
    >>> c.wins_a, c.verdict
    (3, 'LPGD better')
    """
    keys = tuple(
        sorted(
            k
            for k in set(a_values) & set(b_values)
            if np.isfinite(a_values[k]) and np.isfinite(b_values[k])
        )
    )
    return Paired(
        a,
        b,
        keys,
        np.array([float(a_values[k]) for k in keys]),
        np.array([float(b_values[k]) for k in keys]),
        lower_is_better,
        alpha,
    )


def final_values(
    rows: Sequence[dict], method: str, column: str, by: Sequence[str] = ("seed",)
) -> dict:
    """Per run of ``method`` (a run: one value of the ``by`` columns), the value of
    ``column`` at its last evaluation (its only row when rows have no ``iteration``).

    Parameters
    ----------
    rows : sequence of dict
        Results rows (:func:`examples.common.read_csv`).
    method : str
    column : str
    by : sequence of str, default ("seed",)
        The columns that identify a run; the key is their value (one column) or the
        tuple of their values.

    Returns
    -------
    dict
    """
    last: dict = {}
    for row in rows:
        if row["method"] != method or row.get(column, "") == "":
            continue
        key = tuple(_key_part(row[c]) for c in by)
        key = key[0] if len(by) == 1 else key
        if key not in last or row.get("iteration", 0) >= last[key].get("iteration", 0):
            last[key] = row
    return {key: float(row[column]) for key, row in last.items()}


def _key_part(value):
    """``2.0`` (a float read from CSV) → ``2``, so that keys from any source match."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def paired_against(
    rows: Sequence[dict],
    reference: str,
    columns: Sequence[tuple[str, str, bool]],
    methods: Sequence[str] | None = None,
) -> list[tuple[str, Paired]]:
    """Every other method (or ``methods``) paired with ``reference`` on final values.

    Parameters
    ----------
    rows : sequence of dict
    reference : str
        The method every other one is compared with (B in ``A − B``).
    columns : sequence of (column, description, lower_is_better)
    methods : sequence of str, optional
        The A methods (default: all others, in order of appearance).

    Returns
    -------
    list of (description, Paired)
    """
    methods = [m for m in (methods or _methods_in(rows)) if m != reference]
    out = []
    for column, what, lower in columns:
        base = final_values(rows, reference, column)
        for method in methods:
            out.append(
                (
                    what,
                    paired(
                        final_values(rows, method, column),
                        base,
                        a=_label(method),
                        b=_label(reference),
                        lower_is_better=lower,
                    ),
                )
            )
    return out


def _num(value: float, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}".replace("-", "−")


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def paired_table(comparisons: Sequence[tuple[str, Paired]], *, what: str = "criterion") -> str:
    """Paired comparisons as a Markdown table.

    Columns: the criterion, A and B, the number of pairs, the mean ± sample std of
    ``A − B``, in how many pairs A is better, the two p-values and the verdict.
    """
    head = [
        what,
        "A",
        "B",
        "pairs",
        "A − B (mean ± std)",
        "A better in",
        "p (paired t)",
        "p (sign)",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, c in comparisons:
        verdict = c.verdict
        cells = [
            label,
            c.a,
            c.b,
            str(c.n),
            f"{_num(c.mean)} ± {_num(c.std, 2)}",
            f"{c.wins_a}/{c.n}",
            _p(c.p_value),
            _p(c.sign_p),
            f"**{verdict}**" if c.winner else verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- the page

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "experiments.md"
#: The training MSE of the rule-free guess on the 9×9 run's 16 training boards (the
#: givens, 1/9 on every blank; :meth:`examples.sudoku.train.SudokuTask.givens_baseline_loss`),
#: the target of that run; the CSV does not store it.
SUDOKU9_TARGET = 0.0622
_MARKER = re.compile(
    r"(<!-- generated:(?P<name>[\w-]+) [^\n]*-->\n)(?P<body>.*?)"
    r"(<!-- /generated:(?P=name) -->)",
    re.S,
)


def _brief(criterion: str, c: Paired) -> str:
    """``criterion — verdict (k/n)``, k the pairs in which A is better."""
    verdict = f"**{c.winner} better**" if c.winner else "no significant difference"
    return f"{criterion} — {verdict} ({c.wins_a}/{c.n})"


def _shared_blocks(rows: Sequence[dict]) -> list[list[int]]:
    """Markowitz seeds that trained on the same block: equal per-seed targets."""
    by_target: dict[float, list[int]] = {}
    for seed, target in sorted({(int(r["seed"]), float(r["target"])) for r in rows}):
        by_target.setdefault(target, []).append(seed)
    return [seeds for seeds in by_target.values() if len(seeds) > 1]


def _markowitz(rows: Sequence[dict]) -> dict[str, str]:
    target = {int(r["seed"]): float(r["target"]) for r in rows}
    extra = ("heldout_sharpe", "heldout_turnover")
    table = markdown_table(
        summarize(rows, target, extra=extra), target, extra=extra, loss_name="loss"
    )
    columns = [
        ("train_loss", "final training loss", True),
        ("heldout_loss", "final held-out loss", True),
        ("heldout_sharpe", "final held-out Sharpe", False),
        ("heldout_turnover", "held-out turnover / month (lower counts as better)", True),
        ("cpu_time", "training CPU seconds", True),
        ("wall_time", "training wall seconds", True),
    ]
    methods = [m for m in _methods_in(rows) if m != "exact"]
    comparisons = paired_against(rows, "exact", columns, methods)
    # Every method against the grid-searched plug-in policy of its seed: on the training
    # block (the target), and held out where the run stored that policy's held-out loss.
    grid_heldout = {
        int(r["seed"]): float(r["grid_heldout"]) for r in rows if r.get("grid_heldout", "") != ""
    }
    for method in _methods_in(rows):
        comparisons.append(
            (
                "final training loss vs the seed's grid policy",
                paired(
                    final_values(rows, method, "train_loss"),
                    target,
                    a=_label(method),
                    b="grid-searched plug-in",
                ),
            )
        )
        if grid_heldout:
            comparisons.append(
                (
                    "final held-out loss vs the seed's grid policy",
                    paired(
                        final_values(rows, method, "heldout_loss"),
                        grid_heldout,
                        a=_label(method),
                        b="grid-searched plug-in",
                    ),
                )
            )
    shared = _shared_blocks(rows)
    drop = {seed for seeds in shared for seed in seeds[1:]}
    if shared:
        groups = "; ".join(" and ".join(map(str, seeds)) for seeds in shared)
        changed = []
        for what, c in comparisons:
            keep = [i for i, k in enumerate(c.keys) if k not in drop]
            reduced = Paired(
                c.a,
                c.b,
                tuple(c.keys[i] for i in keep),
                c.a_values[keep],
                c.b_values[keep],
                c.lower_is_better,
                c.alpha,
            )
            if reduced.winner != c.winner:
                changed.append(
                    f"{c.a} vs {c.b}, {what}: {reduced.verdict}, "
                    f"{reduced.a} better in {reduced.wins_a}/{reduced.n}, "
                    f"p = {_p(reduced.p_value)}"
                )
        kept = sorted(set(final_values(rows, "exact", "train_loss")) - drop)
        note = (
            f"Seeds {groups} trained on the same block of windows (equal targets), so "
            f"their pairs are not independent. With seed{'s' * (len(drop) > 1)} "
            f"{', '.join(map(str, sorted(drop)))} left out ({len(kept)} pairs, one per "
            "distinct block) "
        )
        note += (
            "every verdict stays the same."
            if not changed
            else "these verdicts change: " + "; ".join(changed) + "."
        )
    else:
        note = "Every seed trained on its own block of windows."
    glance = []
    for method in methods:
        parts = [
            _brief(what, c)
            for what, c in comparisons
            if c.a == _label(method)
            and c.b == _label("exact")
            and not what.startswith(("training wall", "final held-out Sharpe"))
        ]
        glance.append(
            f"* **Markowitz**, {_label(method)} against GD over "
            f"{len(target)} seeds: " + "; ".join(parts) + "."
        )
    return {
        "markowitz-table": table,
        "markowitz-paired": paired_table(comparisons) + "\n" + note + "\n",
        "glance-markowitz": "\n".join(glance),
    }


def _sudoku9(rows: Sequence[dict]) -> dict[str, str]:
    extra = ("heldout_board_acc", "heldout_cell_acc")
    table = markdown_table(
        summarize(rows, SUDOKU9_TARGET, extra=extra), SUDOKU9_TARGET, extra=extra, loss_name="MSE"
    )
    columns = [
        ("train_loss", "final training MSE", True),
        ("heldout_loss", "final held-out MSE", True),
        ("heldout_cell_acc", "final held-out cell accuracy", False),
        ("cpu_time", "training CPU seconds", True),
        ("wall_time", "training wall seconds", True),
    ]
    comparisons = paired_against(rows, "exact", columns)
    glance = "; ".join(
        _brief(what, c) for what, c in comparisons if not what.startswith("training wall")
    )
    seeds = comparisons[0][1].n
    return {
        "sudoku9-table": table,
        "sudoku9-paired": paired_table(comparisons),
        "glance-sudoku9": f"* **Sudoku 9×9** (reduced), {comparisons[0][1].a} against "
        f"GD over {seeds} seeds: {glance}.",
    }


def page_blocks(img: Path | None = None) -> dict[str, str]:
    """Every generated block of ``docs/experiments.md``, by name, from the stored CSVs.

    Parameters
    ----------
    img : Path, optional
        Where the CSVs are (default ``docs/img``): ``pyepo_shortest_path.csv`` (and,
        when present, ``pyepo_shortest_path_variants.csv`` and ``pyepo_knapsack.csv``;
        :mod:`examples.pyepo_shortest_path.page`), ``markowitz.csv``, ``sudoku9.csv``.

    Returns
    -------
    dict of str to str
        Markdown per block name.
    """
    img = Path(img) if img is not None else ROOT / "docs" / "img"
    blocks = {}
    from examples.pyepo_shortest_path import page

    blocks.update(page.blocks(img))
    blocks.update(_markowitz(read_csv(img / "markowitz.csv")))
    blocks.update(_sudoku9(read_csv(img / "sudoku9.csv")))
    return blocks


def update_page(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with the body of every ``generated:NAME`` marker pair replaced by
    ``blocks[NAME]``.

    Raises
    ------
    KeyError
        For a marker whose name has no block, or a block that no marker names.
    """
    seen = set()

    def body(match: re.Match) -> str:
        name = match["name"]
        seen.add(name)
        # Blank lines around the content: Markdown ends an HTML block (the marker) at
        # a blank line, and a table must start a block of its own.
        content = blocks[name].strip("\n")
        return f"{match.group(1)}\n{content}\n\n{match.group(4)}"

    out = _MARKER.sub(body, text)
    missing = set(blocks) - seen
    if missing:
        raise KeyError(f"no marker for the generated blocks {sorted(missing)}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m examples.analysis --page [--check]``: regenerate (or check) the
    generated blocks of ``docs/experiments.md`` from ``docs/img/*.csv``.

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        0, or 1 when ``--check`` finds the page out of date.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.analysis", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--page", action="store_true", help="rewrite the generated blocks of docs/experiments.md"
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare the page with what the CSVs give"
    )
    parser.add_argument("--path", type=Path, default=PAGE, help="the page")
    args = parser.parse_args(argv)
    if not (args.page or args.check):
        parser.error("give --page or --check")
    text = args.path.read_text(encoding="utf-8")
    fresh = update_page(text, page_blocks())
    if args.check:
        if fresh != text:
            print(
                f"{args.path}: generated blocks are out of date; run "
                "python -m examples.analysis --page",
                file=sys.stderr,
            )
            return 1
        return 0
    args.path.write_text(fresh, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
