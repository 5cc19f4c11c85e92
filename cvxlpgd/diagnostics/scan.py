"""τ scan: the LPGD gradient's norm and agreement with the exact gradient as τ varies."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cvxlpgd.diagnostics.compare import _cosine, _layer_gradient, _prepare, _relative_error
from cvxlpgd.lpgd.zero_gradient import last_report


class TauScan(dict):
    """Result of :func:`tau_scan`: a plain dict that prints as a table.

    Notes
    -----
    Keys: ``"taus"``, ``"lpgd_norm"``, ``"cosine"`` (with the exact gradient),
    ``"rel_error"`` (to the exact gradient), ``"too_small"`` (True where every perturbed
    solve returned the unperturbed solution while a larger τ would move it: the
    zero-gradient warning's condition) — lists, one entry per τ —, and
    ``"exact_norm"`` (float), ``"suggested_tau"`` (the estimate of
    :func:`cvxlpgd.diagnostics.suggest_tau` at the first zero-gradient τ, or None).

    Attributes
    ----------
    ax : matplotlib.axes.Axes or None
        The plot, when :func:`tau_scan` was called with ``plot=True``.
    """

    ax = None

    def __str__(self) -> str:
        lines = [
            f"tau scan: exact gradient norm {self['exact_norm']:.4g}",
            f"{'tau':>9} {'lpgd norm':>10} {'cos(exact)':>10} {'relerr(exact)':>13}  tau too small",
            "-" * 59,
        ]
        for tau, norm, cos, err, zero in zip(
            self["taus"], self["lpgd_norm"], self["cosine"], self["rel_error"], self["too_small"]
        ):
            lines.append(
                f"{tau:>9.3g} {norm:>10.4g} {cos:>10.4f} {err:>13.2e}  {'yes' if zero else ''}"
            )
        if self["exact_norm"] <= 1e-8 * max([*self["lpgd_norm"], 1e-300]):
            lines.append(
                "the exact gradient is numerically zero (an LP's vertex does not "
                "move): the agreement columns compare with solver noise"
            )
        if self["suggested_tau"] is not None:
            lines.append(
                f"zero LPGD gradients where tau is too small; estimated tau scale "
                f"that moves the solution: {self['suggested_tau']:.3g}"
            )
        return "\n".join(lines)


def tau_scan(
    layer,
    *tensors: torch.Tensor,
    taus: Sequence[float] = tuple(np.logspace(-4, 1, 11)),
    loss_weights: Sequence | None = None,
    seed: int = 0,
    plot: bool = False,
    ax=None,
) -> TauScan:
    """LPGD gradient norm and agreement with the exact gradient as τ varies.

    Same loss as :func:`compare_gradients` (a seeded random linear loss on the outputs
    unless ``loss_weights`` are given), all parameters concatenated.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The layer to examine (its ρ and LPGD mode are used).
    *tensors : torch.Tensor
        Parameter values, as for a call of the layer.
    taus : sequence of float, default ``numpy.logspace(-4, 1, 11)``
        The τ values, scanned in the given order.
    loss_weights : sequence of array_like, optional
        One array per output, of the output's shape.
    seed : int, default 0
        Seed of the random loss weights.
    plot : bool, default False
        Draw the gradient norm (log-log, with the exact norm as a horizontal line) and
        the cosine with the exact gradient (right axis) against τ.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure). Implies nothing unless ``plot``.

    Returns
    -------
    TauScan
        A dict (see :class:`TauScan`); ``print`` it for a table.

    Raises
    ------
    ImportError
        When ``plot=True`` and matplotlib is not installed.
    TypeError, ValueError
        For inputs the layer rejects, bad loss weights or an empty ``taus``.
    cvxlpgd.SolverError
        When a solve fails.
    """
    taus = [float(t) for t in taus]
    if not taus:
        raise ValueError("taus is empty: give at least one tau")
    if plot:
        plt = _pyplot()
    base, _, weights, _ = _prepare(layer, tensors, loss_weights, seed)
    exact = np.concatenate(
        [g.ravel() for g in _layer_gradient(layer, base, weights, gradient="exact")]
    )
    norms, cosines, errors, too_small = [], [], [], []
    suggested = None
    for tau in taus:
        grad = np.concatenate(
            [g.ravel() for g in _layer_gradient(layer, base, weights, gradient="lpgd", tau=tau)]
        )
        report = last_report(layer)
        norms.append(float(np.linalg.norm(grad)))
        cosines.append(_cosine(grad, exact))
        errors.append(_relative_error(grad, exact))
        too_small.append(report is not None)
        if report is not None and suggested is None and math.isfinite(report.suggested_tau):
            suggested = report.suggested_tau
    scan = TauScan(
        taus=taus,
        lpgd_norm=norms,
        cosine=cosines,
        rel_error=errors,
        too_small=too_small,
        exact_norm=float(np.linalg.norm(exact)),
        suggested_tau=suggested,
    )
    if plot:
        scan.ax = _plot_scan(plt, scan, ax)
    return scan


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # optional dependency
        raise ImportError(
            "tau_scan(plot=True) needs matplotlib, which is not installed: "
            "pip install matplotlib (or cvxlpgd[examples])"
        ) from err
    return plt


def _plot_scan(plt, scan: TauScan, ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    taus = np.asarray(scan["taus"])
    # A zero norm cannot be drawn on a log axis: show it at the bottom as a marker.
    norms = np.asarray(scan["lpgd_norm"])
    floor = norms[norms > 0].min() / 10 if np.any(norms > 0) else 1e-12
    ax.loglog(taus, np.where(norms > 0, norms, floor), "o-", label="LPGD ‖∇‖")
    if scan["exact_norm"] > 0:
        ax.axhline(scan["exact_norm"], color="k", ls="--", label="exact ‖∇‖")
    ax.set_xlabel("τ")
    ax.set_ylabel("gradient norm")
    right = ax.twinx()
    right.semilogx(taus, scan["cosine"], "s:", color="tab:orange", label="cos(LPGD, exact)")
    right.set_ylim(-1.05, 1.05)
    right.set_ylabel("cosine with exact")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="best", fontsize="small")
    return ax
