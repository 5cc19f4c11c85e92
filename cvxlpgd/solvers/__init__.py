"""Conic solver backends behind one batch protocol (see :mod:`cvxlpgd.solvers.base`).

Every backend solves ``minimize ½xᵀPx + cᵀx s.t. Ax + s = b, s ∈ K`` in SCS
convention and returns ``(x, y, s)`` in that convention:

* ``"MOREAU"`` — interior point (and an active-set method for small QPs); solves a
  whole batch of one structure in one call; quadratic objectives, all cones but
  the dual exponential; warm starts; its own implicit derivative.

* ``"SCS"`` — first order; quadratic objectives, all cones, warm starts, one
  factorization reused across (b, c) updates.
* ``"CLARABEL"`` — interior point; quadratic objectives, all cones but the dual
  exponential and dual power cones, no warm start.
* ``"ECOS"`` — interior point; linear objective, zero / nonnegative / second-order /
  exponential cones, no warm start.

:mod:`cvxlpgd.solvers.pooled` runs the per-element solvers on a thread pool or an
executor (:mod:`cvxlpgd.solvers.parallel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern
from cvxlpgd.solvers._common import as_vector, check_shapes, check_warm_start
from cvxlpgd.solvers.base import (
    FAILED,
    INFEASIBLE,
    INFEASIBLE_INACCURATE,
    OK_STATUSES,
    OPTIMAL,
    OPTIMAL_INACCURATE,
    UNBOUNDED,
    UNBOUNDED_INACCURATE,
    BatchSolution,
    BatchSolver,
    DifferentiableBatchSolver,
    Solution,
    SolverBackend,
    Workspace,
)
from cvxlpgd.solvers.clarabel_backend import ClarabelBackend
from cvxlpgd.solvers.ecos_backend import EcosBackend
from cvxlpgd.solvers.moreau_backend import MoreauSolver, moreau_available
from cvxlpgd.solvers.pooled import PooledSolver
from cvxlpgd.solvers.scs_backend import ScsBackend

#: Valid solver names, upper case.
SOLVERS = ("MOREAU", "SCS", "CLARABEL", "ECOS")

#: Solvers that solve one program at a time (batched through :class:`PooledSolver`).
_BACKENDS: dict[str, Any] = {"SCS": ScsBackend, "CLARABEL": ClarabelBackend, "ECOS": EcosBackend}

#: What each solver accepts — a quadratic objective, warm starts — as its class declares.
CAPABILITIES = {
    name: {"quadratic": cls.supports_quadratic, "warm_start": cls.supports_warm_start}
    for name, cls in {"MOREAU": MoreauSolver, **_BACKENDS}.items()
}

__all__ = [
    "SOLVERS",
    "CAPABILITIES",
    "get_backend",
    "batch_solver",
    "solve_cone_program",
    "supports_quadratic",
    "moreau_available",
    "solver_tolerance",
    "Solution",
    "Workspace",
    "SolverBackend",
    "BatchSolution",
    "BatchSolver",
    "DifferentiableBatchSolver",
    "ScsBackend",
    "ClarabelBackend",
    "EcosBackend",
    "MoreauSolver",
    "PooledSolver",
    "OPTIMAL",
    "OPTIMAL_INACCURATE",
    "INFEASIBLE",
    "UNBOUNDED",
    "INFEASIBLE_INACCURATE",
    "UNBOUNDED_INACCURATE",
    "FAILED",
    "OK_STATUSES",
]


def _key(name) -> str:
    key = name.upper() if isinstance(name, str) else None
    if key not in CAPABILITIES:
        raise ValueError(f"unknown solver {name!r}; valid solvers: {', '.join(SOLVERS)}")
    return key


def supports_quadratic(name: str) -> bool:
    """Whether solver ``name`` accepts a quadratic objective ½xᵀPx.

    Parameters
    ----------
    name : str
        One of :data:`SOLVERS` (case-insensitive).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        For an unknown solver.
    """
    return CAPABILITIES[_key(name)]["quadratic"]


def get_backend(name: str) -> SolverBackend:
    """The per-element backend called ``name`` (case-insensitive).

    Parameters
    ----------
    name : str
        ``"SCS"``, ``"CLARABEL"`` or ``"ECOS"``, in any case.

    Returns
    -------
    SolverBackend

    Raises
    ------
    ValueError
        If ``name`` is not a known solver (the message lists the valid names), or
        names Moreau, which has no per-element backend (use :func:`batch_solver`).
    """
    key = _key(name)
    if key not in _BACKENDS:
        raise ValueError(f"{key} solves whole batches: use cvxlpgd.solvers.batch_solver")
    return _BACKENDS[key]()


def batch_solver(
    name: str,
    structure,
    settings: dict | None = None,
    *,
    executor=None,
    workers: int | None = None,
    partitions: int | None = None,
    share_factorizations: bool = True,
    device: str = "cpu",
    enable_grad: bool = False,
) -> BatchSolver:
    """A solver for batches of one structure.

    Parameters
    ----------
    name : str
        One of :data:`SOLVERS` (case-insensitive).
    structure : cvxlpgd.problem.program.ProgramStructure
        Cones and patterns of A and P.
    settings : dict, optional
        Solver settings.
    executor, workers, partitions, share_factorizations :
        For the per-element solvers: see :class:`PooledSolver`.
    device : str, default "cpu"
        Moreau only: where it solves.
    enable_grad : bool, default False
        Moreau only: keep its implicit derivative available.

    Returns
    -------
    BatchSolver

    Raises
    ------
    ValueError
        For an unknown solver, Moreau when it is not installed, unsupported cones or
        invalid settings.
    """
    key = _key(name)
    if key == "MOREAU":
        if not moreau_available():
            raise ValueError(
                "solver 'MOREAU' needs the moreau package (pip install moreau; "
                "wheels exist for Linux x86_64/aarch64 and macOS arm64)"
            )
        return MoreauSolver(structure, settings, device=device, enable_grad=enable_grad)
    backend = _BACKENDS[key]()
    return PooledSolver(
        backend,
        structure,
        dict(settings or {}),
        executor=executor,
        workers=workers,
        partitions=partitions,
        share_factorizations=share_factorizations,
    )


def solve_cone_program(
    A: sp.spmatrix,
    b: np.ndarray,
    c: np.ndarray,
    cones: ConeDims,
    P: sp.spmatrix | None = None,
    solver: str = "SCS",
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
        One of :data:`SOLVERS` (case-insensitive); Moreau solves a batch of one.
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
    if _key(solver) != "MOREAU":
        workspace = get_backend(solver).setup(A, P, cones, settings or {})
        return workspace.solve(b, c, warm_start)
    A = sp.csc_matrix(A, dtype=float)
    A.sort_indices()
    P = None if P is None else sp.csc_matrix(P, dtype=float)
    if P is not None:
        P.sort_indices()
    check_shapes(A, P, cones)
    structure = ProgramStructure(
        cones, SparsePattern.of(A), None if P is None else SparsePattern.of(P)
    )
    m, n = A.shape
    batch = ProgramBatch(
        c=as_vector(c, n, "c")[None],
        b=as_vector(b, m, "b")[None],
        A_data=A.data[None],
        P_data=None if P is None else P.data[None],
    )
    start = None
    if warm_start is not None:
        start = tuple(v[None] for v in check_warm_start(warm_start, n, m))
    return batch_solver("MOREAU", structure, settings).solve(batch, start).element(0)


def solver_tolerance(solver: str, settings: dict | None = None, structure=None) -> float:
    """The relative accuracy a solver is asked for: its largest stopping tolerance.

    Parameters
    ----------
    solver : str
        Solver name: ``"MOREAU"``, ``"SCS"``, ``"CLARABEL"`` or ``"ECOS"``
        (case-insensitive).
    settings : dict, optional
        The user's solver settings (merged over the backend's defaults, as the
        backends do).
    structure : cvxlpgd.problem.program.ProgramStructure, optional
        The problem's structure: Moreau's active-set method, which it picks for small
        QPs, has an accuracy of its own
        (:data:`cvxlpgd.solvers.moreau_settings.ACTIVE_SET_ACCURACY`).

    Returns
    -------
    float
        SCS: ``max(eps_abs, eps_rel)``; Clarabel and Moreau: ``max(tol_gap_abs,
        tol_gap_rel, tol_feas)`` (Moreau's active-set method: its accuracy); ECOS:
        ``max(feastol, abstol, reltol)``.

    Raises
    ------
    ValueError
        For an unknown solver name or invalid settings.
    """
    cls: Any = MoreauSolver if _key(solver) == "MOREAU" else _BACKENDS[_key(solver)]
    return cls.tolerance(settings, structure)
