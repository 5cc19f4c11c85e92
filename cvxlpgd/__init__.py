"""cvxlpgd: CVXPY problems as PyTorch layers, differentiated with LPGD or exactly.

Public API::

    CvxpyLayer     the torch.nn.Module
    SolverError    raised for infeasible / unbounded / failed solves
    SOLVERS        the solver names a layer accepts
"""

from cvxlpgd.errors import SolverError
from cvxlpgd.layer import CvxpyLayer
from cvxlpgd.solvers import SOLVERS

__all__ = ["CvxpyLayer", "SolverError", "SOLVERS"]
__version__ = "0.1.0"
