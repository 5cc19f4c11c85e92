"""Exact derivative of the solution map through diffcp's adjoint, for comparison with LPGD.

diffcp differentiates the homogeneous self-dual embedding of the conic program
(no quadratic term: the layer compiles the conic-only form for this path). Given
incoming (dx, dy, ds) its adjoint returns the vector–Jacobian product

    (dA, db, dc) = (∂(x, y, s)/∂(A, b, c))ᵀ (dx, dy, ds)

with dA on A's sparsity pattern.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import diffcp
import numpy as np
import scipy.sparse as sp

from cvxlpgd.compile import SparsePattern
from cvxlpgd.cones import ConeDims
from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd import DataGradient
from cvxlpgd.solvers.base import OPTIMAL, OPTIMAL_INACCURATE, Solution
from cvxlpgd.solvers.clarabel_backend import DEFAULT_SETTINGS as CLARABEL_DEFAULTS
from cvxlpgd.solvers.ecos_backend import ecos_settings
from cvxlpgd.solvers.scs_backend import scs_settings

EXACT_MODES = ("lsqr", "dense", "lsmr")
# diffcp's own spelling of the solvers it drives.
_DIFFCP_SOLVER_NAMES = {"SCS": "SCS", "CLARABEL": "Clarabel", "ECOS": "ECOS"}

Adjoint = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple]


def validate_exact_mode(mode: str) -> None:
    """Check diffcp's mode for the exact gradient.

    Parameters
    ----------
    mode : str
        One of :data:`EXACT_MODES`.

    Raises
    ------
    ValueError
        For a diffcp mode this package does not offer (the message lists the valid
        ones).
    """
    if mode not in EXACT_MODES:
        raise ValueError(f"exact_mode must be one of {EXACT_MODES}, got {mode!r}")


def diffcp_settings(solver: str, settings: dict) -> dict:
    """The keyword settings diffcp passes to ``solver``: the backend's defaults and the user's.

    Parameters
    ----------
    solver : str
        ``"SCS"``, ``"CLARABEL"`` or ``"ECOS"``.
    settings : dict
        The user's settings.

    Returns
    -------
    dict
    """
    if solver == "SCS":
        return scs_settings(settings)
    if solver == "ECOS":
        return ecos_settings(settings)
    return {**CLARABEL_DEFAULTS, **settings}


def solve_with_adjoint(A: sp.csc_matrix, b: np.ndarray, c: np.ndarray, cones: ConeDims, *,
                       solver: str, settings: dict, mode: str = "lsqr",
                       warm_start: tuple | None = None,
                       batch_index: int | None = None) -> tuple[Solution, Adjoint]:
    """Solve with diffcp and return the solution and its adjoint derivative.

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Constraint matrix (copied: diffcp edits it in place).
    b, c : numpy.ndarray
        Right-hand side and cost.
    cones : ConeDims
        The cone K.
    solver : str
        ``"SCS"``, ``"CLARABEL"`` or ``"ECOS"``.
    settings : dict
        Solver settings, merged over the backend's defaults.
    mode : str, default "lsqr"
        diffcp's derivative mode (:data:`EXACT_MODES`).
    warm_start : tuple, optional
        ``(x, y, s)`` for SCS; ignored by the other solvers.
    batch_index : int, optional
        Position in the batch, for error messages.

    Returns
    -------
    (Solution, callable)
        The solution (``iterations`` and ``solve_time`` are not reported by diffcp
        and stay 0) and ``adjoint(dx, dy, ds) → (dA, db, dc)``.

    Raises
    ------
    SolverError
        When diffcp's solve fails (status and batch index in the message).
    """
    kwargs = diffcp_settings(solver, settings)
    if warm_start is not None and solver == "SCS":
        kwargs["warm_start"] = warm_start
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # diffcp edits A in place (explicit zeros), so it gets a copy.
            x, y, s, _, adjoint = diffcp.solve_and_derivative(
                A.copy(), b, c, cones.to_scs(), mode=mode,
                solve_method=_DIFFCP_SOLVER_NAMES[solver], **kwargs)
    except diffcp.cone_program.SolverError as err:
        where = "" if batch_index is None else f" at batch index {batch_index}"
        status = _status_from_message(str(err))
        raise SolverError(f"{solver} failed{where} with status {status!r} (exact gradient "
                          f"path, diffcp): {err}", status=status,
                          batch_index=batch_index) from err
    inaccurate = any("Inaccurate" in str(w.message) for w in caught)
    status = OPTIMAL_INACCURATE if inaccurate else OPTIMAL
    return Solution(x=np.asarray(x), y=np.asarray(y), s=np.asarray(s), status=status), adjoint


def adjoint_data_gradient(adjoint: Adjoint, dx: np.ndarray, dy: np.ndarray,
                          A_pattern: SparsePattern, ds: np.ndarray | None = None
                          ) -> DataGradient:
    """Apply diffcp's adjoint and read dA on ``A_pattern``.

    Parameters
    ----------
    adjoint : callable
        From :func:`solve_with_adjoint`.
    dx, dy : numpy.ndarray
        Incoming gradients in x and y.
    A_pattern : SparsePattern
        The stored entries of A on which dA is returned.
    ds : numpy.ndarray, optional
        Incoming gradient in s (default zero).

    Returns
    -------
    DataGradient
        ``dP_data`` is None (diffcp has no quadratic term).
    """
    ds = np.zeros_like(dy) if ds is None else ds
    dA, db, dc = adjoint(dx, dy, ds)
    dA = sp.csc_matrix(dA)
    dA_data = np.asarray(dA[A_pattern.rows, A_pattern.cols]).ravel()
    return DataGradient(dc=np.asarray(dc), db=np.asarray(db), dA_data=dA_data, dP_data=None)


def _status_from_message(message: str) -> str:
    lowered = message.lower()
    for status in ("infeasible", "unbounded"):
        if status in lowered:
            return status
    return "failed"
