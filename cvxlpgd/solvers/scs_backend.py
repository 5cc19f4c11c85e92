"""SCS backend: one factorization per (P, A, K), many (b, c) solves, warm starts.

SCS already uses the package's convention (lower-triangle svec, exp cone order,
``Ax + s = b``), so no translation is needed.

Two SCS behaviours worth knowing when reading iteration counts:

* SCS tests convergence every 25 iterations, so any solve that is not already
  converged at its starting point takes at least 25 iterations (a warm start from
  the exact solution takes 0).
* A workspace keeps SCS's adaptively tuned ``scale`` (and the factorization for it)
  from one solve to the next. Cold solves restart the iterates from zero but not the
  scale, so the second cold solve on a workspace is often much cheaper than the first,
  and results from a reused workspace agree with a fresh one to solver tolerance,
  not bit for bit.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import scipy.sparse as sp
import scs

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.solvers._common import (
    as_csc,
    as_vector,
    check_shapes,
    check_warm_start,
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

#: Defaults merged under the user's settings. SCS's own default (1e-4) is too loose
#: for LPGD's finite differences, which divide solution differences by τ: measured on
#: random LP / QP / SOCP / SDP / exp-cone problems (n ≈ 100), 1e-4 leaves the dual
#: up to 1.5e-3 (relative) away from a tight Clarabel solution, 1e-7 at most 1.3e-6,
#: for 5-50 % more iterations; 1e-8 and 1e-9 gain little more.
DEFAULT_SETTINGS = {
    "verbose": False,
    "eps_abs": 1e-7,
    "eps_rel": 1e-7,
    "max_iters": 100_000,
    # SCS picks MKL Pardiso by itself where MKL is installed; its own QDLDL was faster on
    # every benchmark problem (docs/benchmarks.md) and gives the same results everywhere.
    "linear_solver": "qdldl",
}

#: SCS ``status_val`` → normalized status; anything else is FAILED.
_STATUS = {
    1: OPTIMAL,
    2: OPTIMAL_INACCURATE,
    -1: UNBOUNDED,
    -2: INFEASIBLE,
    -6: UNBOUNDED_INACCURATE,
    -7: INFEASIBLE_INACCURATE,
}


def scs_settings(settings: dict | None) -> dict:
    """SCS keyword settings: defaults, the user's settings, and the ``eps`` alias.

    Parameters
    ----------
    settings : dict or None
        User settings (SCS keyword names). ``eps`` sets both ``eps_abs`` and
        ``eps_rel`` unless those are given explicitly too.

    Returns
    -------
    dict
        A new dictionary; the caller's is not modified.

    Raises
    ------
    ValueError
        When ``warm_start`` is given as a setting (the workspace takes warm starts).
    """
    user = dict(settings or {})
    eps = user.pop("eps", None)
    if eps is not None:
        user.setdefault("eps_abs", eps)
        user.setdefault("eps_rel", eps)
    if "warm_start" in user:
        raise ValueError(
            "'warm_start' is not an SCS setting here: pass the warm start "
            "(x, y, s) to Workspace.solve instead"
        )
    return merge_settings(DEFAULT_SETTINGS, user)


class ScsWorkspace:
    """An ``scs.SCS`` object factorized for fixed (P, A, K).

    Each workspace must be used by one thread at a time (a lock enforces it);
    separate workspaces run in parallel since SCS releases the GIL.

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Constraint matrix, m × n.
    P : scipy.sparse.csc_matrix or None
        Upper triangle of the quadratic cost, or None.
    cones : ConeDims
        The cone K.
    settings : dict
        Complete SCS keyword settings (see :func:`scs_settings`).

    Raises
    ------
    ValueError
        When SCS rejects a setting.
    """

    def __init__(self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims, settings: dict):
        self.shape = A.shape
        m, n = A.shape
        # SCS needs at least one constraint row: a problem without any (an unconstrained
        # QP) gets the row 0ᵀx + s = 0, s ∈ {0}, which changes nothing and is cut from
        # y and s again.
        self._padding = 1 if m == 0 else 0
        if self._padding:
            A, cones = sp.csc_matrix((1, n)), ConeDims(zero=1)
        # SCS requires b and c at setup; zeros are replaced by the first update.
        self._b = np.zeros(m + self._padding)
        self._c = np.zeros(n)
        data = {"A": A, "b": self._b.copy(), "c": self._c.copy()}
        if P is not None:
            data["P"] = P
        try:
            self._solver = scs.SCS(data, cones.to_scs(), **dict(settings))
        except TypeError as err:
            # SCS parses its keywords in C and raises TypeError for unknown names and
            # wrong types (the latter without the name); re-raise with the settings.
            raise ValueError(f"invalid SCS settings {settings}: {err}") from err
        self._lock = threading.Lock()

    def solve(
        self,
        b: np.ndarray,
        c: np.ndarray,
        warm_start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> Solution:
        """Solve for ``(b, c)``, warm-started from ``(x, y, s)`` or cold.

        Parameters
        ----------
        b : numpy.ndarray
            Right-hand side, length m.
        c : numpy.ndarray
            Linear cost, length n.
        warm_start : tuple of numpy.ndarray, optional
            ``(x, y, s)`` to start from. None starts cold (never from the previous
            solve), so results do not depend on the workspace's history.

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
        start = None if warm_start is None else check_warm_start(warm_start, n, m)
        if self._padding:
            b = np.zeros(1)
            if start is not None:
                start = (start[0], np.zeros(1), np.zeros(1))
        with self._lock:
            tic = time.perf_counter()
            new_b = not np.array_equal(b, self._b)
            new_c = not np.array_equal(c, self._c)
            if new_b or new_c:
                # update() rescales only the vectors; the factorization is kept.
                self._solver.update(b=b if new_b else None, c=c if new_c else None)
                self._b, self._c = b, c
            if start is None:
                result = self._solver.solve(warm_start=False)
            else:
                x0, y0, s0 = start
                result = self._solver.solve(warm_start=True, x=x0, y=y0, s=s0)
            elapsed = time.perf_counter() - tic
        info = result["info"]
        return Solution(
            x=np.asarray(result["x"], dtype=float),
            y=np.asarray(result["y"], dtype=float)[:m],
            s=np.asarray(result["s"], dtype=float)[:m],
            status=_STATUS.get(int(info["status_val"]), FAILED),
            iterations=int(info["iter"]),
            solve_time=elapsed,
        )


class ScsBackend:
    """SCS: quadratic objectives, warm starts, one factorization per workspace."""

    name = "SCS"
    supports_quadratic = True
    supports_warm_start = True
    #: SCS carries its acceleration memory from one solve on a workspace to the next,
    #: so a result depends on the solves before it.
    solves_independently = False

    @staticmethod
    def tolerance(settings: dict | None, structure=None) -> float:
        """The relative accuracy these settings ask for: ``max(eps_abs, eps_rel)``
        (:meth:`cvxlpgd.solvers.base.SolverBackend.tolerance`)."""
        merged = scs_settings(settings)
        return float(max(merged["eps_abs"], merged["eps_rel"]))

    def setup(
        self, A: sp.csc_matrix, P: sp.csc_matrix | None, cones: ConeDims, settings: dict | None
    ) -> ScsWorkspace:
        """Factorize for fixed (P, A, K).

        Parameters
        ----------
        A : scipy.sparse matrix
            Constraint matrix, m × n.
        P : scipy.sparse matrix or None
            Full symmetric n × n cost matrix (SCS receives its upper triangle).
        cones : ConeDims
            The cone K, of size m.
        settings : dict or None
            SCS settings merged over :data:`DEFAULT_SETTINGS`; ``eps`` is an alias
            for ``eps_abs`` and ``eps_rel``.

        Returns
        -------
        ScsWorkspace

        Raises
        ------
        ValueError
            On inconsistent shapes or unknown / ill-typed settings.
        """
        A = as_csc(A, "A")
        P = None if P is None else as_csc(P, "P")
        check_shapes(A, P, cones)
        if P is not None:
            # SCS reads only the upper triangle of P.
            P = sp.triu(P, format="csc")
            P = None if P.nnz == 0 else P
        return ScsWorkspace(A, P, cones, scs_settings(settings))
