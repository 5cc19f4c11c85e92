"""An order of magnitude for τ: when does a perturbation move the solution?

The perturbed problem has cost ``c + στ dx`` and right-hand side ``b − στ dy``; its
solution moves once the perturbation is comparable to the data it competes with (on
an LP: once τ·dx reaches the gaps between the costs of vertices). The estimate per
element is

    τ̂ = min( max(‖c‖∞, ‖Aᵀy*‖∞) / ‖dx‖∞ ,  max(‖b‖∞, ‖s*‖∞) / ‖dy‖∞ )

(a term is left out when its incoming gradient is zero; ``‖Aᵀy*‖∞ = ‖c + Px*‖∞`` is
the magnitude of the objective's slope at the solution, which stands in for ‖c‖ when
the linear cost is small), and the median over the batch is reported. It is an order
of magnitude, not a threshold: try τ between τ̂ and 10 τ̂, or scan with
:func:`cvxlpgd.tau_scan`.
"""

from __future__ import annotations

import numpy as np


def suggest_tau(
    c: np.ndarray,
    b: np.ndarray,
    dx: np.ndarray,
    dy: np.ndarray,
    Aty: np.ndarray | None = None,
    s: np.ndarray | None = None,
) -> float:
    r"""Estimated τ scale at which the LPGD perturbation moves the solution.

    Per batch element, ``min(max(‖c‖∞, ‖Aᵀy*‖∞) / ‖dx‖∞, max(‖b‖∞, ‖s*‖∞) / ‖dy‖∞)``
    over the terms whose incoming gradient is nonzero; the median over elements (see
    the module docstring for the reasoning).

    Parameters
    ----------
    c, b : numpy.ndarray
        Cost (B, n) and right-hand side (B, m) of the forward problems.
    dx, dy : numpy.ndarray
        Incoming gradients (B, n) and (B, m).
    Aty : numpy.ndarray, optional
        ``Aᵀy*`` (B, n) at the forward solutions.
    s : numpy.ndarray, optional
        Slacks ``s*`` (B, m) at the forward solutions.

    Returns
    -------
    float
        The estimate, or ``nan`` when every incoming gradient is zero or the data are.
    """

    def inf_norm(a):
        return np.abs(a).max(axis=1) if a.size else np.zeros(a.shape[0])

    cost = inf_norm(c) if Aty is None else np.maximum(inf_norm(c), inf_norm(Aty))
    rhs = inf_norm(b) if s is None else np.maximum(inf_norm(b), inf_norm(s))
    gx, gy = inf_norm(dx), inf_norm(dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where((gx > 0) & (cost > 0), cost / gx, np.inf)
        ty = np.where((gy > 0) & (rhs > 0), rhs / gy, np.inf)
    per_element = np.minimum(tx, ty)
    per_element = per_element[np.isfinite(per_element)]
    return float(np.median(per_element)) if per_element.size else float("nan")


def suggest_for_elements(state, dx, dy, elements) -> float:
    """:func:`suggest_tau` on the batch elements ``elements`` of a forward state."""
    batch, template = state.batch, state.template
    Aty = np.stack([template.A_pattern.matrix(batch.A_data[i]).T @ state.y[i] for i in elements])
    return suggest_tau(
        batch.c[elements],
        batch.b[elements],
        dx[elements],
        dy[elements],
        Aty=Aty,
        s=state.s[elements],
    )
