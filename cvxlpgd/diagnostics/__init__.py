"""Diagnostics: how good is an LPGD gradient, which τ to use, and why is it zero?

Three tools, all plain NumPy on the inside (plotting is optional):

* :func:`compare_gradients` — for each parameter, the LPGD gradient at several τ next
  to the exact gradient and to central finite differences of the solution map, for
  one linear loss ``ℓ(θ) = Σ_k ⟨w_k, output_k(θ)⟩``.
* :func:`tau_scan` — gradient norm and agreement with the exact gradient as τ varies.
* :class:`ZeroGradientWarning` — raised (once per layer) by the backward pass when
  every LPGD perturbed solve returned the unperturbed solution, so that the LPGD
  gradient is zero because τ is too small for the problem's scale
  (:mod:`cvxlpgd.lpgd.zero_gradient`).
"""

from cvxlpgd.diagnostics.compare import GradientComparison, compare_gradients
from cvxlpgd.diagnostics.scan import TauScan, tau_scan
from cvxlpgd.lpgd.tau_estimate import suggest_tau
from cvxlpgd.lpgd.zero_gradient import (
    ZeroGradientReport,
    ZeroGradientWarning,
    probe_larger_tau,
    warn_if_zero_gradient,
    zero_gradient_report,
)
from cvxlpgd.solvers import solver_tolerance

__all__ = [
    "ZeroGradientWarning",
    "ZeroGradientReport",
    "GradientComparison",
    "TauScan",
    "compare_gradients",
    "tau_scan",
    "zero_gradient_report",
    "suggest_tau",
    "solver_tolerance",
    "probe_larger_tau",
    "warn_if_zero_gradient",
]
