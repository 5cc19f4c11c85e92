"""Moreau backend: a whole batch of one structure in one call (``moreau.CompiledSolver``).

Moreau solves ``minimize ½xᵀPx + qᵀx s.t. Ax + s = b, s ∈ K`` — our form — for a
batch that shares the cones and the sparsity patterns of A and P: the structure is
compiled once, ``setup(P_values, A_values)`` sets the matrices (one set for the
batch, or one per element), and ``solve(qs, bs, warm_start=...)`` solves all
elements, reporting a status per element. Three translations, checked against
CVXPY solves in the tests:

* **Patterns.** Moreau takes CSR patterns (ours are CSC) and P full symmetric (ours
  is): a fixed permutation maps our stored entries to its order.
* **PSD blocks.** Moreau stores a PSD block as the *upper* triangle column by column
  (as Clarabel), scaled by √2 off the diagonal: the rows of each block are permuted
  on the way in and y, s on the way out.
* **Cones** come in SCS's order (zero, nonnegative, SOC, PSD, exponential, power) and
  the exponential cone's coordinates as SCS's ``(x, y, z): y·exp(x/y) ≤ z``.

A compiled solver is cached per batch size and device; the first solve of a fresh
one may pick its linear solver, so benchmarks time later calls.
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import Any

import numpy as np

from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers._common import (
    inverse_permutation,
    psd_upper_permutation,
)
from cvxlpgd.solvers.base import (
    FAILED,
    INTERIOR_POINT_STATUS,
    OPTIMAL_INACCURATE,
    BatchPoint,
    BatchSolution,
)
from cvxlpgd.solvers.moreau_settings import (
    ACTIVE_SET_ACCURACY,
    moreau_cones,
    moreau_settings,
    uses_active_set,
)


@functools.cache
def _status_by_code() -> dict[int, str]:
    """Moreau's status codes → normalized statuses (Moreau reports Clarabel's names)."""
    import moreau

    return {
        int(code): INTERIOR_POINT_STATUS.get(name, FAILED)
        for name, code in moreau.SolverStatus.__members__.items()
    }


def moreau_available() -> bool:
    """Whether the ``moreau`` package imports on this machine."""
    try:
        import moreau  # noqa: F401
    except ImportError:
        return False
    return True


def moreau_devices() -> list[str]:
    """The devices Moreau can solve on here (``[]`` without Moreau)."""
    if not moreau_available():
        return []
    import moreau

    return list(moreau.available_devices())


class MoreauSolver:
    """Moreau behind the batch protocol, for one structure.

    Parameters
    ----------
    structure : ProgramStructure
        Cones and patterns of A and P.
    settings : dict
        User settings (see :func:`moreau_settings`).
    device : str, default "cpu"
        Where Moreau solves.
    enable_grad : bool, default False
        Keep Moreau's implicit derivative available (:meth:`backward`).

    Raises
    ------
    ValueError
        For unsupported cones or invalid settings.
    """

    name = "MOREAU"
    supports_quadratic = True
    supports_warm_start = True
    #: A solve depends on its inputs only (no state carried from earlier solves).
    solves_independently = True

    @staticmethod
    def tolerance(settings: dict | None, structure=None) -> float:
        """The relative accuracy these settings ask for: ``max(tol_gap_abs, tol_gap_rel,
        tol_feas)`` of its interior-point method, or :data:`ACTIVE_SET_ACCURACY` where its
        active-set method solves
        (:meth:`cvxlpgd.solvers.base.SolverBackend.tolerance`)."""
        ipm = moreau_settings(settings).ipm_settings
        if ipm is None or (structure is not None and uses_active_set(structure, settings)):
            return ACTIVE_SET_ACCURACY
        return float(max(ipm.tol_gap_abs, ipm.tol_gap_rel, ipm.tol_feas))

    def __init__(
        self,
        structure: ProgramStructure,
        settings: dict | None = None,
        *,
        device: str = "cpu",
        enable_grad: bool = False,
    ):
        self.structure = structure
        self.settings = dict(settings or {})
        self.device = device
        self.enable_grad = enable_grad
        self._cones = moreau_cones(structure.cones)
        moreau_settings(self.settings, device=device, enable_grad=enable_grad)  # fail now
        n, m = structure.n, structure.m
        # Rows of PSD blocks in Moreau's (upper-triangle) order: b_moreau = b[perm].
        self._perm = psd_upper_permutation(structure.cones)
        self._inverse = None if self._perm is None else inverse_permutation(self._perm)
        A = structure.A_pattern
        rows = A.rows if self._inverse is None else self._inverse[A.rows]
        self._A_order = np.lexsort((A.cols, rows))
        self._A_offsets = np.searchsorted(rows[self._A_order], np.arange(m + 1))
        self._A_columns = A.cols[self._A_order].astype(np.int64)
        if structure.P_pattern is None:
            self._P_order = np.zeros(0, dtype=np.int64)
            self._P_offsets = np.zeros(n + 1, dtype=np.int64)
            self._P_columns = np.zeros(0, dtype=np.int64)
        else:
            self._P_order, self._P_offsets, self._P_columns = structure.P_pattern.csr_order()
        self._compiled: dict[int, Any] = {}
        self._matrices: dict[int, tuple] = {}
        #: Moreau's active-set method (its "auto" choice for small QPs) can stop at its
        #: iteration limit where the interior-point method solves (a 260-variable lasso
        #: QP: 200 iterations, not solved; interior point: 8): those elements are
        #: solved again by this solver's interior-point twin, built on first need. An
        #: explicit solver="active_set" is left alone.
        self._active_set = str(
            self.settings.get("solver", "auto")
        ).lower() == "auto" and uses_active_set(structure, self.settings)
        self._interior_point: MoreauSolver | None = None
        #: Solves per batch size: Moreau's derivative belongs to the last solve.
        self.solve_count: dict[int, int] = {}
        self._lock = threading.Lock()

    # ---- translations ------------------------------------------------------------------

    def _rows_in(self, array: np.ndarray) -> np.ndarray:
        return array if self._perm is None else array[:, self._perm]

    def _rows_out(self, array: np.ndarray) -> np.ndarray:
        return array if self._inverse is None else array[:, self._inverse]

    def _values(
        self, data: np.ndarray | None, order: np.ndarray, shared: bool, batch_size: int
    ) -> np.ndarray:
        if data is None:  # no P: an empty row per element (Moreau wants both alike)
            return np.zeros(0) if shared else np.zeros((batch_size, 0))
        return np.ascontiguousarray(data[0, order] if shared else data[:, order])

    def compiled(self, batch_size: int):
        """The compiled solver for ``batch_size`` elements (built on first use)."""
        import moreau

        solver = self._compiled.get(batch_size)
        if solver is None:
            settings = moreau_settings(
                self.settings,
                batch_size=batch_size,
                device=self.device,
                enable_grad=self.enable_grad,
            )
            solver = moreau.CompiledSolver(
                n=self.structure.n,
                m=self.structure.m,
                P_row_offsets=self._P_offsets,
                P_col_indices=self._P_columns,
                A_row_offsets=self._A_offsets,
                A_col_indices=self._A_columns,
                cones=self._cones,
                settings=settings,
            )
            self._compiled[batch_size] = solver
        return solver

    def _setup(self, solver, batch: ProgramBatch, batch_size: int) -> None:
        """Set A and P unless this compiled solver already holds these arrays."""
        held = self._matrices.get(batch_size)
        if held is not None and held[0] is batch.A_data and held[1] is batch.P_data:
            return
        shared = batch.shared_matrices
        solver.setup(
            self._values(batch.P_data, self._P_order, shared, batch_size),
            self._values(batch.A_data, self._A_order, shared, batch_size),
        )
        # The arrays are kept with the solver, so their ids stay theirs.
        self._matrices[batch_size] = (batch.A_data, batch.P_data)

    # ---- the protocol ------------------------------------------------------------------

    def solve(
        self, batch: ProgramBatch, warm_start: BatchPoint | None = None, reuse: dict | None = None
    ) -> BatchSolution:
        """Solve every element in one Moreau call (see :meth:`BatchSolver.solve`).

        ``reuse`` is not needed: the compiled solver keeps the last matrices it was
        given and skips ``setup`` when a batch brings the same arrays again.
        """
        import moreau

        B = batch.batch_size
        with self._lock:
            solver = self.compiled(B)
            self._setup(solver, batch, B)
            start = None
            if warm_start is not None:
                x, y, s = warm_start
                start = moreau.BatchedWarmStart(
                    x=np.ascontiguousarray(x),
                    z=np.ascontiguousarray(self._rows_in(y)),
                    s=np.ascontiguousarray(self._rows_in(s)),
                )
            c, b = np.ascontiguousarray(batch.c), np.ascontiguousarray(self._rows_in(batch.b))
            if start is None:
                solution = solver.solve(c, b)
            else:
                with warnings.catch_warnings():
                    # Moreau re-solves failed warm starts cold and says so; the result
                    # and its status are what we report.
                    warnings.filterwarnings("ignore", message="Warm-started solve failed")
                    solution = solver.solve(c, b, warm_start=start)
            info = solver.info
            self.solve_count[B] = self.solve_count.get(B, 0) + 1
        by_code = _status_by_code()
        status = [by_code.get(int(s), FAILED) for s in info.status]
        iterations = np.broadcast_to(np.asarray(info.iterations, dtype=np.int64), (B,)).copy()
        seconds = float(info.solve_time) + float(info.setup_time)
        result = BatchSolution(
            x=np.asarray(solution.x, dtype=float).reshape(B, -1),
            y=self._rows_out(np.asarray(solution.z, dtype=float).reshape(B, -1)),
            s=self._rows_out(np.asarray(solution.s, dtype=float).reshape(B, -1)),
            status=status,
            iterations=iterations,
            solve_time=np.full(B, seconds / B),
            solver=self.name,
        )
        failed = np.flatnonzero(np.isin(status, (FAILED, OPTIMAL_INACCURATE)))
        if failed.size and self._active_set:
            self._solve_again(result, batch, warm_start, failed)
        return result

    def _solve_again(
        self,
        result: BatchSolution,
        batch: ProgramBatch,
        warm_start: BatchPoint | None,
        rows: np.ndarray,
    ) -> None:
        """Solve the elements ``rows`` with the interior-point method, in place."""
        if self._interior_point is None:
            self._interior_point = MoreauSolver(
                self.structure,
                {**self.settings, "solver": "ipm"},
                device=self.device,
                enable_grad=self.enable_grad,
            )
        start = None if warm_start is None else tuple(a[rows] for a in warm_start)
        again = self._interior_point.solve(batch.rows(rows), start)
        for name in ("x", "y", "s", "iterations", "solve_time"):
            getattr(result, name)[rows] = getattr(again, name)
        for k, row in enumerate(rows):
            result.status[row] = again.status[k]

    def backward(
        self, batch_size: int, dx: np.ndarray, dy: np.ndarray, ds: np.ndarray | None = None
    ) -> dict[str, np.ndarray | None]:
        """Moreau's implicit derivative at its last solve of ``batch_size`` elements.

        Parameters
        ----------
        batch_size : int
            Selects the compiled solver (its last solve is differentiated).
        dx, dy : numpy.ndarray
            Incoming gradients (B, n) and (B, m).
        ds : numpy.ndarray, optional
            Incoming gradient in s (B, m).

        Returns
        -------
        dict
            ``dc`` (B, n), ``db`` (B, m), ``dA_data`` (B, nnz_A) and ``dP_data``
            (B, nnz_P, or None without P), in this package's order.
        """
        solver = self._compiled[batch_size]
        with self._lock:
            raw = solver.backward(
                np.ascontiguousarray(dx),
                np.ascontiguousarray(self._rows_in(dy)),
                None if ds is None else np.ascontiguousarray(self._rows_in(ds)),
            )
        B = batch_size
        dA = np.empty((B, self.structure.A_pattern.nnz))
        dA[:, self._A_order] = np.asarray(raw["dA_values"]).reshape(B, -1)
        dP = None
        if self.structure.P_pattern is not None:
            dP = np.empty((B, self.structure.P_pattern.nnz))
            dP[:, self._P_order] = np.asarray(raw["dP_values"]).reshape(B, -1)
        return {
            "dc": np.asarray(raw["dq"], dtype=float).reshape(B, -1),
            "db": self._rows_out(np.asarray(raw["db"], dtype=float).reshape(B, -1)),
            "dA_data": dA,
            "dP_data": dP,
        }
