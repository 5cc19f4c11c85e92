"""ECOS backend (interior point): linear objectives over zero, nonnegative, second-order
and exponential cones; no quadratic objective, no warm start.

ECOS splits the constraints into equalities ``A_eq x = b_eq`` (our zero-cone rows) and
cone constraints ``G x + s = h`` (the rest). Its exponential cone orders the SCS
triple ``(x, y, z)`` as ``(x, z, y)``, so the 2nd and 3rd row of every exp cone are
swapped in G and h and back in the dual z. ECOS's dual satisfies
``A_eqᵀ y + Gᵀ z + c = 0``, the same sign as SCS.
"""

from __future__ import annotations

import threading
import time

import ecos
import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.solvers._common import (
    as_csc,
    as_vector,
    check_shapes,
    check_warm_start,
    exp_swap_permutation,
    merge_settings,
)
from cvxlpgd.solvers.base import (
    FAILED,
    INFEASIBLE,
    INFEASIBLE_INACCURATE,
    OPTIMAL,
    OPTIMAL_INACCURATE,
    UNBOUNDED,
    UNBOUNDED_INACCURATE,
    Solution,
)

#: Defaults merged under the user's settings. ECOS prints a log unless told not to;
#: its tolerances (feastol = abstol = reltol = 1e-8) are kept.
DEFAULT_SETTINGS = {"verbose": False}

#: The continuous-problem settings ECOS's ``solve`` accepts (mixed-integer ones are
#: deliberately excluded: the package differentiates continuous problems).
KNOWN_SETTINGS = frozenset(
    {
        "verbose",
        "feastol",
        "abstol",
        "reltol",
        "feastol_inacc",
        "abstol_inacc",
        "reltol_inacc",
        "max_iters",
        "nitref",
    }
)

#: ECOS ``exitFlag`` → normalized status; anything else (max iterations, numerical
#: problems, ...) is FAILED.
_STATUS = {
    0: OPTIMAL,
    10: OPTIMAL_INACCURATE,
    1: INFEASIBLE,
    2: UNBOUNDED,
    11: INFEASIBLE_INACCURATE,
    12: UNBOUNDED_INACCURATE,
}


def ecos_settings(settings: dict | None) -> dict:
    """ECOS keyword settings: :data:`DEFAULT_SETTINGS` and the user's.

    Parameters
    ----------
    settings : dict or None
        The user's settings.

    Returns
    -------
    dict
        A new dictionary.

    Raises
    ------
    ValueError
        Listing the names not in :data:`KNOWN_SETTINGS`.
    """
    merged = merge_settings(DEFAULT_SETTINGS, settings)
    unknown = sorted(set(merged) - KNOWN_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown ECOS setting(s): {', '.join(unknown)}; valid: "
            f"{', '.join(sorted(KNOWN_SETTINGS))}"
        )
    return merged


def check_ecos_cones(cones: ConeDims) -> None:
    """Raise ValueError naming any cone of ``cones`` that ECOS does not support.

    Parameters
    ----------
    cones : ConeDims
        The cone K.

    Raises
    ------
    ValueError
        For PSD, dual exponential and power cones (the message names them).
    """
    unsupported = []
    if cones.psd:
        unsupported.append(f"positive semidefinite {list(cones.psd)}")
    if cones.dual_exp:
        unsupported.append(f"dual exponential ({cones.dual_exp})")
    if cones.power:
        unsupported.append(f"power {list(cones.power)}")
    if unsupported:
        raise ValueError(
            f"ECOS does not support the {', '.join(unsupported)} cone(s); use SCS or Clarabel"
        )


class EcosWorkspace:
    """ECOS data for fixed (A, K); every solve is a fresh ECOS call (no reuse exists).

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Constraint matrix in SCS order (split into equality and cone blocks here).
    cones : ConeDims
        The cone K: zero, nonnegative, second-order and exponential cones.
    settings : dict
        Complete ECOS keyword settings (see :func:`ecos_settings`).
    """

    def __init__(self, A: sp.csc_matrix, cones: ConeDims, settings: dict):
        self.shape = A.shape
        self._A = A
        self._zero = cones.zero
        self._perm = exp_swap_permutation(cones)  # an involution: its own inverse
        rows = np.arange(cones.zero, A.shape[0])
        if self._perm is not None:
            rows = self._perm[cones.zero :]
        # ECOS wants csc_matrix; None (not an empty matrix) when a block is empty.
        self._G = sp.csc_matrix(A[rows, :]) if rows.size else None
        self._A_eq = sp.csc_matrix(A[: cones.zero, :]) if cones.zero else None
        self._dims = {"l": cones.nonneg, "q": [int(q) for q in cones.soc], "e": cones.exp}
        self._settings = settings
        self._cone_rows = rows
        self._lock = threading.Lock()

    def solve(
        self,
        b: np.ndarray,
        c: np.ndarray,
        warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> Solution:
        """Solve for ``(b, c)``.

        Parameters
        ----------
        b : numpy.ndarray
            Right-hand side, length m.
        c : numpy.ndarray
            Linear cost, length n.
        warm_start : tuple of numpy.ndarray, optional
            Checked for shape and otherwise ignored (ECOS cannot warm-start).

        Returns
        -------
        Solution
            ``s`` is computed as ``b - A x`` in SCS order.

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
        h = b[self._cone_rows] if self._G is not None else None
        b_eq = b[: self._zero] if self._A_eq is not None else None
        with self._lock:
            tic = time.perf_counter()
            result = ecos.solve(c, self._G, h, self._dims, self._A_eq, b_eq, **self._settings)
            elapsed = time.perf_counter() - tic
        info = result["info"]
        x = np.asarray(result["x"], dtype=float)
        y = np.empty(m)
        y[: self._zero] = result["y"]
        # z[k] is the dual of cone row self._cone_rows[k].
        y[self._cone_rows] = result["z"]
        return Solution(
            x=x,
            y=y,
            s=b - self._A @ x,
            status=_STATUS.get(int(info["exitFlag"]), FAILED),
            iterations=int(info["iter"]),
            solve_time=elapsed,
        )


class EcosBackend:
    """ECOS: LPs and SOCPs with exponential cones, linear objective only."""

    name = "ECOS"
    supports_quadratic = False
    supports_warm_start = False
    #: A solve depends on its inputs and the setup only, not on earlier solves.
    solves_independently = True

    @staticmethod
    def tolerance(settings: dict | None, structure=None) -> float:
        """The relative accuracy these settings ask for: ``max(feastol, abstol, reltol)``,
        ECOS's own 1e-8 for those not given
        (:meth:`cvxlpgd.solvers.base.SolverBackend.tolerance`)."""
        merged = ecos_settings(settings)
        return float(max(merged.get(k, 1e-8) for k in ("feastol", "abstol", "reltol")))

    def setup(
        self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims, settings: dict | None
    ) -> EcosWorkspace:
        """Split A into ECOS's equality and cone blocks and validate the settings.

        Parameters
        ----------
        A : scipy.sparse matrix
            Constraint matrix, m × n, rows in SCS order.
        P : None
            Must be None: ECOS has no quadratic objective.
        cones : ConeDims
            The cone K, of size m: zero, nonnegative, second-order and exp cones only.
        settings : dict or None
            ECOS keyword settings (see :data:`KNOWN_SETTINGS`).

        Returns
        -------
        EcosWorkspace

        Raises
        ------
        ValueError
            If P is given, a cone is unsupported, shapes disagree or a setting is
            unknown.
        """
        if P is not None:
            raise ValueError(
                "ECOS does not accept a quadratic objective (P); compile the "
                "conic form (quadratics as second-order cones) or use SCS or "
                "Clarabel"
            )
        check_ecos_cones(cones)
        A = as_csc(A, "A")
        check_shapes(A, None, cones)
        if cones.zero and A[: cones.zero, :].nnz == 0:
            # ECOS crashes on an all-zero equality block instead of reporting it.
            raise ValueError(
                "ECOS cannot handle an equality block (zero-cone rows of A) "
                "without nonzeros; remove the redundant equalities"
            )
        return EcosWorkspace(A, cones, ecos_settings(settings))
