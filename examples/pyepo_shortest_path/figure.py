"""The PyEPO benchmark's figure, ``regret.png``: test regret against the polynomial
degree, and seconds per epoch, per method (:mod:`examples.pyepo_shortest_path.report`'s
statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.pyepo_shortest_path.methods import LABELS
from examples.pyepo_shortest_path.report import (
    _all_runs,
    _degrees,
    _mean_std,
    _methods,
    all_trainings,
    stats,
)

__all__ = ["plot"]


def plot(rows: Sequence[dict], path: Path, *, title: str) -> Path:
    """Test regret vs degree (one line per method, mean ± std) and seconds per epoch
    (wall and process CPU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    degrees = _degrees(rows)
    methods = [m for m in _methods(rows) if m != "initial"]
    # one bar group per timed method: the figure grows with the roster
    height = max(4.4, 0.3 * len(methods) + 1.2)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, height), gridspec_kw={"width_ratios": [3, 2]}
    )
    for k, method in enumerate(methods):
        cells = [stats(rows, method, d, "test_regret") for d in degrees]
        offset = (k - (len(methods) - 1) / 2) * 0.06  # keep the error bars apart
        left.errorbar(
            np.array(degrees) + offset,
            [c[0] for c in cells],
            yerr=[c[1] for c in cells],
            marker="o",
            capsize=3,
            lw=1.4,
            label=LABELS[method],
            ls="--" if method in ("exact", "2s") else "-",
            color=(plt.cm.tab20.colors + plt.cm.tab20b.colors)[k % 40],
        )
    left.set(
        xlabel="polynomial degree", ylabel="normalized test regret", xticks=degrees, yscale="log"
    )
    left.grid(alpha=0.3, which="both")
    # below the axes, where it hides no curve however many methods there are
    # (about 0.7 inch below the axes, clear of the tick labels and the axis label)
    below = -0.7 / (0.8 * height)
    left.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, below))
    timed = [m for m in methods if m != "2s"]
    rows_y = np.arange(len(timed))
    # Wall time is what a user waits; CPU time is steadier on a shared machine; a
    # scanned method's row needs every training of its scan.
    for shift, column, color, name in (
        (-0.27, "seconds_per_epoch", "tab:gray", "wall"),
        (0.0, "cpu_seconds_per_epoch", "tab:blue", "CPU"),
        (0.27, "all", "tab:orange", "CPU, all trainings"),
    ):
        means = [
            _all_runs(rows, m, column)
            if column != "all"
            else _mean_std(list(all_trainings(rows, m).values()))
            for m in timed
        ]
        right.barh(
            rows_y + shift,
            [m[0] for m in means],
            height=0.27,
            xerr=[m[1] for m in means],
            color=color,
            label=name,
        )
    right.set(
        xlabel="training seconds per epoch", yticks=rows_y, yticklabels=[LABELS[m] for m in timed]
    )
    right.legend(fontsize=8)
    right.invert_yaxis()
    right.grid(alpha=0.3, axis="x")
    seeds = len({r["seed"] for r in rows})
    fig.suptitle(f"{title} (mean ± sample std over {seeds} seed{'s' * (seeds != 1)})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
