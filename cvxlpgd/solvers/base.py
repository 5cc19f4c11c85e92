"""The small protocol every conic solver backend implements.

A backend solves cone programs in SCS form (see DESIGN.md)

    minimize  ½ xᵀPx + cᵀx   subject to  Ax + s = b,  s ∈ K

and returns the primal-dual triple (x, y, s) in the same convention, whatever the
solver's own ordering (PSD triangles, exponential-cone coordinates) is.

A :class:`Workspace` is created once for fixed (P, A, K) — the expensive part, where
the solver factorizes — and then solves for any number of (b, c) right-hand sides,
optionally warm-started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from cvxlpgd.cones import ConeDims

#: Normalized statuses. ``OK_STATUSES`` carry a usable solution.
OPTIMAL = "optimal"
OPTIMAL_INACCURATE = "optimal_inaccurate"
INFEASIBLE = "infeasible"
UNBOUNDED = "unbounded"
INFEASIBLE_INACCURATE = "infeasible_inaccurate"
UNBOUNDED_INACCURATE = "unbounded_inaccurate"
FAILED = "failed"
OK_STATUSES = frozenset({OPTIMAL, OPTIMAL_INACCURATE})


@dataclass
class Solution:
    """Primal-dual solution of one cone program, in SCS convention.

    Attributes
    ----------
    x, y, s : numpy.ndarray
        Primal variable, dual variable (y ∈ K*) and slack (s ∈ K).
    status : str
        One of the normalized statuses of this module.
    iterations : int
        Solver iterations.
    solve_time : float
        Wall time of the solve in seconds.
    """

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    status: str
    iterations: int = 0
    solve_time: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the status carries a usable (possibly inaccurate) solution."""
        return self.status in OK_STATUSES


class Workspace(Protocol):
    """A solver set up (factorized) for fixed P, A and cones."""

    def solve(self, b: np.ndarray, c: np.ndarray,
              warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> Solution:
        """Solve for right-hand side ``b`` and cost ``c``; warm start is ``(x, y, s)``."""
        ...


class SolverBackend(Protocol):
    """Factory of workspaces for one solver."""

    name: str
    supports_quadratic: bool
    supports_warm_start: bool

    def setup(self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims,
              settings: dict) -> Workspace:
        """Create a workspace. ``P`` is full symmetric (both triangles) or None."""
        ...
