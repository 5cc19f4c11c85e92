"""Clarabel backend (interior point): quadratic objectives, no warm start.

Clarabel solves the same ``Ax + s = b, s ∈ K`` form, with two differences handled
here: its cones are a list of objects, and its PSD triangle is the *upper* triangle
column by column (SCS: lower), so the rows of each PSD block are permuted on the way
in and the block's y and s on the way out. Its exponential cone
``(x, y, z): y·exp(x/y) ≤ z`` and power cone ``x^α y^(1-α) ≥ |z|`` order the
coordinates as SCS does.
"""

from __future__ import annotations

import threading
import time

import clarabel
import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.solvers._common import (
    INTERIOR_POINT_ALIASES,
    as_csc,
    as_vector,
    check_shapes,
    check_warm_start,
    inverse_permutation,
    psd_upper_permutation,
    resolve_aliases,
)
from cvxlpgd.solvers.base import (
    FAILED,
    INTERIOR_POINT_STATUS,
    Solution,
)

#: Settings applied over ``clarabel.DefaultSettings()`` before the user's. Clarabel's
#: own tolerances (1e-8) are already tight; only the log is silenced.
DEFAULT_SETTINGS = {"verbose": False}


def clarabel_settings(settings: dict | None) -> clarabel.DefaultSettings:
    """``clarabel.DefaultSettings`` with :data:`DEFAULT_SETTINGS` and the user's applied.

    Parameters
    ----------
    settings : dict or None
        Attribute names of ``clarabel.DefaultSettings`` and their values;
        ``max_iters`` and ``tol`` stand for ``max_iter`` and the three tolerances
        ``tol_gap_abs``, ``tol_gap_rel``, ``tol_feas``.

    Returns
    -------
    clarabel.DefaultSettings

    Raises
    ------
    ValueError
        Listing the names that are not Clarabel settings, or naming a setting whose
        value has the wrong type.
    """
    merged = {**DEFAULT_SETTINGS, **resolve_aliases(settings, INTERIOR_POINT_ALIASES)}
    out = clarabel.DefaultSettings()
    # Only data attributes are settings (DefaultSettings also has methods, e.g. default).
    unknown = sorted(
        name
        for name in merged
        if name.startswith("_") or not hasattr(out, name) or callable(getattr(out, name))
    )
    if unknown:
        raise ValueError(f"unknown Clarabel setting(s): {', '.join(unknown)}")
    for name, value in merged.items():
        try:
            setattr(out, name, value)
        except (AttributeError, TypeError, ValueError, OverflowError) as err:
            raise ValueError(
                f"invalid value {value!r} for Clarabel setting '{name}': {err}"
            ) from err
    return out


def clarabel_cones(cones: ConeDims) -> list:
    """Clarabel's cone list for ``cones`` (same order as SCS).

    Parameters
    ----------
    cones : ConeDims
        The cone K in SCS order.

    Returns
    -------
    list
        Clarabel cone objects (``ZeroConeT``, ``NonnegativeConeT``, ...).

    Raises
    ------
    ValueError
        For dual exponential cones and dual power cones (negative α), which Clarabel
        does not provide.
    """
    if cones.dual_exp:
        raise ValueError(
            f"Clarabel does not support the dual exponential cone ({cones.dual_exp} given); use SCS"
        )
    dual_power = [a for a in cones.power if not 0.0 < a < 1.0]
    if dual_power:
        raise ValueError(
            f"Clarabel supports power cones with 0 < α < 1 only, got "
            f"{dual_power} (SCS's dual power cone); use SCS"
        )
    out = []
    if cones.zero:
        out.append(clarabel.ZeroConeT(cones.zero))
    if cones.nonneg:
        out.append(clarabel.NonnegativeConeT(cones.nonneg))
    out.extend(clarabel.SecondOrderConeT(q) for q in cones.soc)
    out.extend(clarabel.PSDTriangleConeT(n) for n in cones.psd)
    out.extend(clarabel.ExponentialConeT() for _ in range(cones.exp))
    out.extend(clarabel.PowerConeT(float(a)) for a in cones.power)
    return out


class ClarabelWorkspace:
    """Clarabel data for fixed (P, A, K); see :meth:`solve` for reuse across solves.

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Constraint matrix with PSD rows in Clarabel's order.
    P : scipy.sparse.csc_matrix
        Upper triangle of the quadratic cost (all zeros without one).
    cones : list
        Clarabel cone objects (:func:`clarabel_cones`).
    perm : numpy.ndarray or None
        Row permutation from SCS's to Clarabel's PSD order, or None.
    settings : dict or None
        The user's settings (merged at every solver build).
    """

    def __init__(
        self,
        A: sp.csc_matrix,
        P: sp.csc_matrix,
        cones: list,
        perm: np.ndarray | None,
        settings: dict | None,
    ):
        self.shape = A.shape
        self._A, self._P, self._cones = A, P, cones
        self._perm = perm
        self._inverse = None if perm is None else inverse_permutation(perm)
        self._user_settings = dict(settings or {})
        self._solver = None
        self._lock = threading.Lock()

    def solve(
        self,
        b: np.ndarray,
        c: np.ndarray,
        warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> Solution:
        """Solve for ``(b, c)``.

        The first call builds the Clarabel solver (KKT symbolic factorization,
        equilibration) from the actual (b, c); later calls reuse it through
        ``solver.update(q=, b=)`` when Clarabel allows data updates (it does not
        when presolve or chordal decomposition changed the problem), and rebuild it
        otherwise. Updated and rebuilt solvers agree to ~1e-11 in tests; the update
        saves only the construction, a few percent of a solve, since an interior-point
        method refactorizes numerically at every iteration anyway.

        Parameters
        ----------
        b : numpy.ndarray
            Right-hand side, length m.
        c : numpy.ndarray
            Linear cost, length n.
        warm_start : tuple of numpy.ndarray, optional
            Checked for shape and otherwise ignored (Clarabel cannot warm-start).

        Returns
        -------
        Solution

        Raises
        ------
        ValueError
            On wrong lengths or non-finite values.
        """
        m, n = self.shape
        b = as_vector(b, m, "b")
        c = as_vector(c, n, "c")
        if warm_start is not None:
            check_warm_start(warm_start, n, m)
        if self._perm is not None:
            b = b[self._perm]
        with self._lock:
            tic = time.perf_counter()
            solver = self._solver
            if solver is not None and solver.is_data_update_allowed():
                solver.update(q=c, b=b)
            else:
                solver = self._solver = clarabel.DefaultSolver(
                    self._P, c, self._A, b, self._cones, clarabel_settings(self._user_settings)
                )
            result = solver.solve()
            elapsed = time.perf_counter() - tic
        x = np.array(result.x, dtype=float)
        y = np.array(result.z, dtype=float)
        s = np.array(result.s, dtype=float)
        if self._perm is not None:
            y, s = y[self._inverse], s[self._inverse]
        status = str(result.status)
        return Solution(
            x=x,
            y=y,
            s=s,
            status=INTERIOR_POINT_STATUS.get(status, FAILED),
            iterations=int(result.iterations),
            solve_time=elapsed,
        )


class ClarabelBackend:
    """Clarabel: quadratic objectives, all SCS cones but the dual exp / dual power."""

    name = "CLARABEL"
    supports_quadratic = True
    supports_warm_start = False
    #: A solve depends on its inputs and the setup only, not on earlier solves.
    solves_independently = True

    @staticmethod
    def tolerance(settings: dict | None, structure=None) -> float:
        """The relative accuracy these settings ask for:
        ``max(tol_gap_abs, tol_gap_rel, tol_feas)``
        (:meth:`cvxlpgd.solvers.base.SolverBackend.tolerance`)."""
        merged = clarabel_settings(settings)
        return float(max(merged.tol_gap_abs, merged.tol_gap_rel, merged.tol_feas))

    def setup(
        self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims, settings: dict | None
    ) -> ClarabelWorkspace:
        """Translate (P, A, K) to Clarabel's form and validate the settings.

        Parameters
        ----------
        A : scipy.sparse matrix
            Constraint matrix, m × n, rows in SCS order.
        P : scipy.sparse matrix or None
            Full symmetric n × n cost matrix (Clarabel receives its upper triangle).
        cones : ConeDims
            The cone K, of size m.
        settings : dict or None
            Attributes of ``clarabel.DefaultSettings`` (``verbose`` defaults to False).

        Returns
        -------
        ClarabelWorkspace

        Raises
        ------
        ValueError
            On inconsistent shapes, unsupported cones or unknown / ill-typed settings.
        """
        A = as_csc(A, "A")
        P = None if P is None else as_csc(P, "P")
        check_shapes(A, P, cones)
        solver_cones = clarabel_cones(cones)
        clarabel_settings(settings)  # fail now, not at the first solve
        n = A.shape[1]
        P = sp.csc_matrix((n, n)) if P is None else sp.triu(P, format="csc")
        perm = psd_upper_permutation(cones)
        if perm is not None:
            A = A[perm, :].tocsc()
            A.sort_indices()
        return ClarabelWorkspace(A, P, solver_cones, perm, settings)
