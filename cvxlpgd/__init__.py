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

from cvxlpgd.autograd import FirstOrderOnlyError
from cvxlpgd.diagnostics import (
    GradientComparison,
    TauScan,
    ZeroGradientWarning,
    compare_gradients,
    tau_scan,
)
from cvxlpgd.errors import SolverError
from cvxlpgd.fallback import SolverFallbackWarning
from cvxlpgd.layer import CvxpyLayer
from cvxlpgd.lpgd_batch import LPGDFallbackWarning
from cvxlpgd.solvers import SOLVERS
from cvxlpgd.state import SolveRecord, SolverStats
from cvxlpgd.status import InaccurateSolutionWarning

__all__ = [
    "CvxpyLayer", "SolverError", "FirstOrderOnlyError", "InaccurateSolutionWarning",
    "LPGDFallbackWarning", "SolverFallbackWarning", "SOLVERS",
    "compare_gradients", "tau_scan", "GradientComparison", "TauScan", "ZeroGradientWarning",
    "SolverStats", "SolveRecord",
]
__version__ = "0.1.0"
