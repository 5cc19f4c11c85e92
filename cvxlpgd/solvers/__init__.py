"""Conic solver backends behind one small protocol (see :mod:`cvxlpgd.solvers.base`).

Every backend solves ``minimize ½xᵀPx + cᵀx s.t. Ax + s = b, s ∈ K`` in SCS
convention and returns ``(x, y, s)`` in that convention:

* ``"SCS"`` — first order; quadratic objectives, all cones, warm starts, one
  factorization reused across (b, c) updates.
* ``"CLARABEL"`` — interior point; quadratic objectives, all cones but the dual
  exponential and dual power cones, no warm start.
* ``"ECOS"`` — interior point; linear objective, zero / nonnegative / second-order /
  exponential cones, no warm start.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cvxlpgd.cones import ConeDims
from cvxlpgd.solvers.base import (
    FAILED,
    INFEASIBLE,
    INFEASIBLE_INACCURATE,
    OK_STATUSES,
    OPTIMAL,
    OPTIMAL_INACCURATE,
    UNBOUNDED,
    UNBOUNDED_INACCURATE,
    Solution,
    SolverBackend,
    Workspace,
)
from cvxlpgd.solvers.clarabel_backend import ClarabelBackend
from cvxlpgd.solvers.ecos_backend import EcosBackend
from cvxlpgd.solvers.scs_backend import ScsBackend

#: Valid solver names, upper case.
SOLVERS = ("SCS", "CLARABEL", "ECOS")

_BACKENDS = {"SCS": ScsBackend, "CLARABEL": ClarabelBackend, "ECOS": EcosBackend}

__all__ = [
    "SOLVERS", "get_backend", "solve_cone_program",
    "Solution", "Workspace", "SolverBackend",
    "ScsBackend", "ClarabelBackend", "EcosBackend",
    "OPTIMAL", "OPTIMAL_INACCURATE", "INFEASIBLE", "UNBOUNDED",
    "INFEASIBLE_INACCURATE", "UNBOUNDED_INACCURATE", "FAILED", "OK_STATUSES",
]


def get_backend(name: str) -> SolverBackend:
    """The backend called ``name`` (case-insensitive).

    Parameters
    ----------
    name : str
        One of :data:`SOLVERS`, in any case.

    Returns
    -------
    SolverBackend

    Raises
    ------
    ValueError
        If ``name`` is not a known solver; the message lists the valid names.
    """
    key = name.upper() if isinstance(name, str) else None
    if key not in _BACKENDS:
        raise ValueError(f"unknown solver {name!r}; valid solvers: {', '.join(SOLVERS)}")
    return _BACKENDS[key]()


def solve_cone_program(A: sp.spmatrix, b: np.ndarray, c: np.ndarray, cones: ConeDims,
                       P: sp.spmatrix | None = None, solver: str = "SCS",
                       settings: dict | None = None,
                       warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                       ) -> Solution:
    """Set up ``solver`` for (P, A, K) and solve once for (b, c).

    Parameters
    ----------
    A : scipy.sparse matrix
        Constraint matrix, m × n.
    b : numpy.ndarray
        Right-hand side, length m.
    c : numpy.ndarray
        Linear cost, length n.
    cones : ConeDims
        The cone K, of size m, in SCS order.
    P : scipy.sparse matrix, optional
        Full symmetric n × n quadratic cost.
    solver : str, default "SCS"
        One of :data:`SOLVERS` (case-insensitive).
    settings : dict, optional
        Solver settings, merged over the backend's defaults.
    warm_start : tuple of numpy.ndarray, optional
        ``(x, y, s)``; used by solvers that support it, ignored by the others.

    Returns
    -------
    Solution

    Raises
    ------
    ValueError
        Unknown solver or setting, unsupported cone or quadratic objective, or
        inconsistent shapes.
    """
    workspace = get_backend(solver).setup(A, P, cones, settings or {})
    return workspace.solve(b, c, warm_start)
