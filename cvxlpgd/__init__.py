"""cvxlpgd: CVXPY problems as PyTorch layers, differentiated with LPGD or exactly.

Public API::

    CvxpyLayer           the torch.nn.Module
    SolverError          raised for infeasible / unbounded / failed solves
    InaccurateSolutionWarning  some solutions are not accurate to the solver's tolerance
    LPGDFallbackWarning  some LPGD gradients came from a fallback (other side, smaller τ)
    SolverFallbackWarning  some elements were solved by another solver than the chosen one
    FirstOrderOnlyError  raised when the layer's gradient is differentiated
    SOLVERS              the solver names a layer accepts
    compare_gradients    LPGD at several τ vs exact vs finite differences
    tau_scan             LPGD gradient norm and agreement with exact vs τ
    ZeroGradientWarning  the LPGD gradient is zero because τ is too small
    SolverStats          per-element solver statistics (``layer.solver_stats``)
"""

import importlib
from typing import TYPE_CHECKING

from cvxlpgd.engine.fallback import SolverFallbackWarning
from cvxlpgd.engine.state import SolveRecord, SolverStats
from cvxlpgd.engine.status import InaccurateSolutionWarning
from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd.backward import LPGDFallbackWarning
from cvxlpgd.lpgd.zero_gradient import ZeroGradientWarning
from cvxlpgd.solvers import SOLVERS

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and the API docs
    from cvxlpgd.diagnostics import GradientComparison, TauScan, compare_gradients, tau_scan
    from cvxlpgd.torch.layer import CvxpyLayer
    from cvxlpgd.torch.operators import FirstOrderOnlyError

#: Names that need PyTorch, loaded on first use: ``import cvxlpgd`` (and the core,
#: ``cvxlpgd.engine`` and below) imports no deep-learning framework.
_TORCH_NAMES = {
    "CvxpyLayer": "cvxlpgd.torch.layer",
    "FirstOrderOnlyError": "cvxlpgd.torch.operators",
    "compare_gradients": "cvxlpgd.diagnostics",
    "tau_scan": "cvxlpgd.diagnostics",
    "GradientComparison": "cvxlpgd.diagnostics",
    "TauScan": "cvxlpgd.diagnostics",
}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        value = getattr(importlib.import_module(_TORCH_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cvxlpgd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_NAMES))


__all__ = [
    "CvxpyLayer",
    "SolverError",
    "FirstOrderOnlyError",
    "InaccurateSolutionWarning",
    "LPGDFallbackWarning",
    "SolverFallbackWarning",
    "SOLVERS",
    "compare_gradients",
    "tau_scan",
    "GradientComparison",
    "TauScan",
    "ZeroGradientWarning",
    "SolverStats",
    "SolveRecord",
]
__version__ = "0.1.0"
