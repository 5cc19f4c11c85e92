"""``curves.png`` of an experiment: training loss against iterations and against wall
time, plus a held-out panel, one curve per method (mean ± sample std band over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.result_rows import curves, label, methods_in

__all__ = ["plot_curves"]


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
    for k, method in enumerate(methods_in(rows)):
        color = colors[k % len(colors)]
        iters, times, trained = curves(rows, method, train)
        _, _, held = curves(rows, method, heldout)
        mean_t, _ = _nanmean_std(times)
        for ax, x, values in (
            (axes[0], iters, trained),
            (axes[1], mean_t, trained),
            (axes[2], iters, held),
        ):
            mean, std = _nanmean_std(values)
            ax.plot(x, mean, color=color, label=label(method), lw=1.6)
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
