"""The experiments' result rows, per method and seed: curves, method names, labels.

The rows are what :mod:`examples.common` records (one per method, seed and evaluation);
:mod:`examples.curves_plot`, :mod:`examples.summary` and :mod:`examples.paired` read them
through these helpers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["curves", "label", "methods_in", "pretty"]


def curves(rows: Sequence[dict], method: str, column: str):
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


def methods_in(rows: Sequence[dict]) -> list[str]:
    seen: list[str] = []
    for row in rows:
        if row["method"] not in seen:
            seen.append(row["method"])
    return seen


def pretty(column: str) -> str:
    """``heldout_board_acc`` → ``held-out board acc``."""
    return column.replace("heldout_", "held-out ").replace("_", " ")


def label(method: str) -> str:
    return "GD (exact)" if method == "exact" else method.replace("lpgd_tau=", "LPGD τ=")
