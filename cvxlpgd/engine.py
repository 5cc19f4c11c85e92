"""Batched forward solves and backward passes (LPGD and exact) of a :class:`ConeTemplate`.

Plain NumPy/SciPy: the torch layer converts tensors and calls :class:`BatchEngine`.

How a batch runs (see also :mod:`cvxlpgd.parallel`):

* **Partitions.** The batch is cut into contiguous partitions; one task solves one
  partition, element after element. Tasks run in parallel on an executor (the
  built-in thread pool by default: SCS and Clarabel release the GIL).
* **Shared factorizations.** When A and P do not depend on a batched parameter
  (:meth:`ConeTemplate.depends_on`), :meth:`BatchEngine.program_data` evaluates them
  once and every element has the same (P, A, K): a task sets up ONE workspace (one
  factorization) and solves its elements through ``update(b=, c=)``. Otherwise each
  element gets its own workspace. The layout depends on the batch size and the
  number of cores only, never on the worker count or the executor, so results are
  bitwise identical for any of them (a shared SCS workspace carries Anderson
  acceleration memory from one solve to the next: a layout that followed the worker
  count would change the last digits).
* **LPGD re-solves** keep A and K, so with ρ = 0 they reuse the forward workspace;
  with ρ > 0 the quadratic becomes P' = P + ρI (+ ρAᵀA when ds ≠ 0, see
  :func:`cvxlpgd.lpgd.proximal_quadratic`), set up once per partition when the
  structure is shared and kept with the forward state for further backward passes.
  Every re-solve is warm-started from the forward (x*, y*, s*).
* **SCS's adaptive scale** stays in a workspace from one solve to the next; on a
  workspace shared by several elements it is off by default (a scale tuned to one
  element's solve made cold solves of the others take 3.5x the iterations).
* **Executors that do not share memory** (process pools, dask) get the same tasks:
  module-level functions of plain data (:class:`Structure`, :class:`Columns`). Such a
  task sets up its own workspace, returns no solver objects, and the backward task
  on such an executor sets up a workspace again and warm-starts from the forward
  solution (exact gradients: re-solves through diffcp, warm-started, to rebuild the
  adjoint, which is a closure and cannot travel).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from cvxlpgd import exact as exact_gradient
from cvxlpgd.compile import ConeTemplate, ProgramBatch, SparsePattern
from cvxlpgd.cones import ConeDims
from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd import SIDE_NAMES, DataGradient, perturbed_solve, proximal_quadratic
from cvxlpgd.parallel import (
    WarmStartMemory,
    default_workers,
    run_tasks,
    shares_memory,
    split,
    thread_pool,
)
from cvxlpgd.solvers import get_backend
from cvxlpgd.solvers.base import Solution

__all__ = [
    "BatchEngine", "BatchGradient", "Columns", "ForwardState", "SolveRecord", "SolverStats",
    "Structure", "default_workers", "exact_backward_partition", "exact_forward_partition",
    "lpgd_partition", "solve_partition",
]

#: Elements per partition are solved in order on one workspace when the structure is
#: shared; otherwise every element has its own workspace and the layout changes no
#: result, so more, smaller partitions balance the load across workers.
_UNSHARED_PARTITIONS_PER_CORE = 4


@dataclass(frozen=True)
class SolveRecord:
    """Status, iterations and wall time of one solve.

    Attributes
    ----------
    status : str
        Normalized status: ``"optimal"``, ``"optimal_inaccurate"``, ``"infeasible"``,
        ``"unbounded"``, ``"infeasible_inaccurate"``, ``"unbounded_inaccurate"`` or
        ``"failed"``.
    iterations : int
        Solver iterations (0 for solves through diffcp, which does not report them).
    solve_time : float
        Wall time of the solve in seconds (0 through diffcp).
    """

    status: str
    iterations: int
    solve_time: float

    @classmethod
    def of(cls, solution: Solution) -> SolveRecord:
        """The record of a solution.

        Parameters
        ----------
        solution : Solution
            A backend's solution.

        Returns
        -------
        SolveRecord
        """
        return cls(solution.status, int(solution.iterations), float(solution.solve_time))


@dataclass
class SolverStats:
    """Per-element solver statistics of the last call of a layer.

    Attributes
    ----------
    forward : list of SolveRecord
        One record per batch element.
    backward : list of dict
        After an LPGD backward pass: per element, ``{"upper": SolveRecord, "lower": ...}``
        for the sides that were solved. Empty before backward and for exact gradients.
    """

    forward: list[SolveRecord]
    backward: list[dict[str, SolveRecord]] = field(default_factory=list)

    def summary(self) -> dict:
        """Totals: solves, iterations and seconds, forward and backward.

        Returns
        -------
        dict
            ``forward_solves``, ``forward_iterations``, ``forward_seconds``,
            ``backward_solves``, ``backward_iterations``, ``backward_seconds``.
        """
        back = [r for sides in self.backward for r in sides.values()]
        return {
            "forward_solves": len(self.forward),
            "forward_iterations": sum(r.iterations for r in self.forward),
            "forward_seconds": sum(r.solve_time for r in self.forward),
            "backward_solves": len(back),
            "backward_iterations": sum(r.iterations for r in back),
            "backward_seconds": sum(r.solve_time for r in back),
        }


# ---- plain data sent to tasks ------------------------------------------------------------


@dataclass(frozen=True)
class Structure:
    """What every task of one batch shares: solver, settings, cones, and A/P.

    Plain, picklable data. When ``shared`` is True, ``A`` (and ``P``) are the one
    matrix pair of the whole batch; otherwise each element's matrices are built from
    its columns of ``A_data`` / ``P_data`` on the patterns.

    Attributes
    ----------
    solver : str
        Backend name.
    settings : dict
        Solver settings.
    cones : ConeDims
        The cone K.
    A_pattern, P_pattern : SparsePattern, SparsePattern or None
        Sparsity patterns of A and P.
    shared : bool
        Whether every element has the same A and P.
    A, P : scipy.sparse.csc_matrix or None
        The shared matrices (None unless ``shared``; P None without quadratic term).
    """

    solver: str
    settings: dict
    cones: ConeDims
    A_pattern: SparsePattern
    P_pattern: SparsePattern | None
    shared: bool
    A: sp.csc_matrix | None = None
    P: sp.csc_matrix | None = None

    @property
    def n(self) -> int:
        """Number of variables."""
        return self.A_pattern.shape[1]

    def matrices(self, columns: Columns, j: int):
        """A (and P or None) of element ``j`` of ``columns``.

        Parameters
        ----------
        columns : Columns
            The partition's data.
        j : int
            Element index within the partition.

        Returns
        -------
        (scipy.sparse.csc_matrix, scipy.sparse.csc_matrix or None)
        """
        if self.shared:
            return self.A, self.P
        A = self.A_pattern.matrix(columns.A_data[:, j])
        P = None if self.P_pattern is None else self.P_pattern.matrix(columns.P_data[:, j])
        return A, P


@dataclass
class Columns:
    """The data of one partition: batch columns ``start, …, start + size − 1``.

    ``A_data``/``P_data`` are None when the structure is shared. ``x, y, s`` hold the
    warm start of a forward solve (None: cold) or the forward solution in a backward
    task.

    Attributes
    ----------
    start : int
        Batch index of the first column.
    b, c : numpy.ndarray
        Right-hand sides (m, size) and costs (n, size).
    A_data, P_data : numpy.ndarray or None
        Stored entries of A and P per column (None when shared).
    x, y, s : numpy.ndarray or None
        Warm start or forward solution per column.
    """

    start: int
    b: np.ndarray
    c: np.ndarray
    A_data: np.ndarray | None = None
    P_data: np.ndarray | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    s: np.ndarray | None = None

    @property
    def size(self) -> int:
        """Number of elements in the partition."""
        return self.c.shape[1]

    def point(self, j: int):
        """``(x, y, s)`` of element ``j`` or None.

        Parameters
        ----------
        j : int
            Element index within the partition.

        Returns
        -------
        tuple of numpy.ndarray or None
        """
        if self.x is None:
            return None
        return self.x[:, j], self.y[:, j], self.s[:, j]


# ---- the tasks: module-level functions of plain data (picklable by reference) ------------


def solve_partition(structure: Structure, columns: Columns, keep_workspaces: bool
                    ) -> tuple[list[Solution], list]:
    """Solve the elements of one partition in order.

    Shared structure: one workspace (one factorization), ``update(b=, c=)`` per
    element; otherwise one workspace per element.

    Parameters
    ----------
    structure : Structure
        Solver, settings, cones and matrices.
    columns : Columns
        The partition's data (and warm starts).
    keep_workspaces : bool
        Return the workspaces, for an LPGD backward pass in this process.

    Returns
    -------
    solutions : list of Solution
    workspaces : list
        When ``keep_workspaces``: the workspace of each element (the same object for
        all when shared), else ``[]``.
    """
    backend = get_backend(structure.solver)
    shared = (backend.setup(structure.A, structure.P, structure.cones, structure.settings)
              if structure.shared else None)
    solutions, kept = [], []
    for j in range(columns.size):
        if shared is None:
            A, P = structure.matrices(columns, j)
            workspace = backend.setup(A, P, structure.cones, structure.settings)
        else:
            workspace = shared
        solutions.append(workspace.solve(columns.b[:, j], columns.c[:, j], columns.point(j)))
        if keep_workspaces:
            kept.append(workspace)
    return solutions, kept


def lpgd_partition(structure: Structure, columns: Columns, forward: list[Solution],
                   dx: np.ndarray, dy: np.ndarray, ds: np.ndarray | None, tau: float,
                   rho: float, mode: str, workspaces: list | None = None,
                   out: DataGradient | None = None, regularized: dict | None = None):
    """LPGD perturbed re-solves and data gradients of one partition.

    Workspaces: with ρ = 0 the forward ones (``workspaces``, one per element, the same
    object for all when shared) when given, else one set up here (once per partition
    when shared); with ρ > 0 one ρ-regularized workspace, set up once per partition
    and kind (with or without the slack term) when shared — kept in ``regularized``
    for later backward passes of the same forward — and per element otherwise.
    Every re-solve is warm-started from the element's forward solution (solvers that
    cannot warm-start ignore it).

    Parameters
    ----------
    structure : Structure
        Solver, settings, cones and matrices.
    columns : Columns
        The partition's data.
    forward : list of Solution
        The forward solutions of the partition's elements.
    dx, dy : numpy.ndarray
        Incoming gradients, one column per element.
    ds : numpy.ndarray or None
        Incoming gradient in s, or None.
    tau, rho : float
        LPGD's τ and ρ.
    mode : str
        ``"central"``, ``"upper"`` or ``"lower"``.
    workspaces : list, optional
        The forward workspaces (same process only).
    out : DataGradient, optional
        Arrays with one column per element of the partition to write the gradient
        into (views of the batch's arrays, same process only); allocated when None.
    regularized : dict, optional
        The partition's cache of workspaces set up here, by ``(ρ, slack term)``
        (same process only: it outlives the task); a fresh one when None.

    Returns
    -------
    gradient : DataGradient
        Columns of the partition.
    perturbed : list of dict
        Per element, the perturbed solutions by side (+1, −1).

    Raises
    ------
    SolverError
        For the first failing perturbed solve (side and batch index in the message).
    """
    backend = get_backend(structure.solver)
    cache = {} if regularized is None else regularized
    # Filled column by column: no per-element copies to stack afterwards.
    k = columns.size
    gradient = out if out is not None else _empty_gradient(structure, k)
    perturbed = []
    for j in range(k):
        A, P = structure.matrices(columns, j)
        ds_j = None if ds is None else ds[:, j]
        slack_term = ds_j is not None and bool(np.any(ds_j))
        if rho == 0 and workspaces:
            workspace = workspaces[j]
        else:
            # ρ = 0: P is unchanged whatever ds is, so one kind of workspace serves all.
            key = (rho, slack_term if rho > 0 else None)
            workspace = cache.get(key) if structure.shared else None
            if workspace is None:
                P_new = proximal_quadratic(P, A, structure.n, rho, slack_term)
                workspace = backend.setup(A, P_new, structure.cones, structure.settings)
                if structure.shared:
                    cache[key] = workspace
        warm = forward[j]
        start = (warm.x, warm.y, warm.s) if backend.supports_warm_start else None

        def solve(sign, c_new, b_new, workspace=workspace, start=start):
            return workspace.solve(b_new, c_new, warm_start=start)

        grad, sides = perturbed_solve(
            solve, tau=tau, rho=rho, mode=mode, c=columns.c[:, j], b=columns.b[:, j], A=A,
            dx=dx[:, j], dy=dy[:, j], ds=ds_j, forward=warm, A_pattern=structure.A_pattern,
            P_pattern=structure.P_pattern, batch_index=columns.start + j)
        gradient.dc[:, j], gradient.db[:, j], gradient.dA_data[:, j] = (
            grad.dc, grad.db, grad.dA_data)
        if gradient.dP_data is not None:
            gradient.dP_data[:, j] = grad.dP_data
        perturbed.append(sides)
    return gradient, perturbed


def exact_forward_partition(structure: Structure, columns: Columns, mode: str,
                            keep_adjoints: bool) -> tuple[list[Solution], list]:
    """Solve the elements of one partition through diffcp (exact-gradient path).

    Parameters
    ----------
    structure : Structure
        Solver, settings, cones and matrices.
    columns : Columns
        The partition's data (and warm starts).
    mode : str
        diffcp's mode.
    keep_adjoints : bool
        Return the adjoints (closures: they stay in this process).

    Returns
    -------
    solutions : list of Solution
    adjoints : list
        diffcp's adjoint of each element when ``keep_adjoints``, else ``[]``.
    """
    solutions, adjoints = [], []
    for j in range(columns.size):
        A, _ = structure.matrices(columns, j)
        solution, adjoint = exact_gradient.solve_with_adjoint(
            A, columns.b[:, j].copy(), columns.c[:, j].copy(), structure.cones,
            solver=structure.solver, settings=structure.settings, mode=mode,
            warm_start=columns.point(j), batch_index=columns.start + j)
        solutions.append(solution)
        if keep_adjoints:
            adjoints.append(adjoint)
    return solutions, adjoints


def exact_backward_partition(structure: Structure, columns: Columns, dx: np.ndarray,
                             dy: np.ndarray, mode: str, adjoints: list | None = None
                             ) -> DataGradient:
    """diffcp's exact adjoint for the elements of one partition.

    Without ``adjoints`` (executors that do not share memory) each element is solved
    again through diffcp, warm-started from its forward solution in ``columns``, to
    rebuild its adjoint here.

    Parameters
    ----------
    structure : Structure
        Solver, settings, cones and matrices.
    columns : Columns
        The partition's data and forward solutions.
    dx, dy : numpy.ndarray
        Incoming gradients, one column per element.
    mode : str
        diffcp's mode.
    adjoints : list, optional
        The forward pass's adjoints (same process only).

    Returns
    -------
    DataGradient
        One column per element.
    """
    grads = []
    for j in range(columns.size):
        if adjoints:
            adjoint = adjoints[j]
        else:
            A, _ = structure.matrices(columns, j)
            _, adjoint = exact_gradient.solve_with_adjoint(
                A, columns.b[:, j].copy(), columns.c[:, j].copy(), structure.cones,
                solver=structure.solver, settings=structure.settings, mode=mode,
                warm_start=columns.point(j), batch_index=columns.start + j)
        grads.append(exact_gradient.adjoint_data_gradient(adjoint, dx[:, j], dy[:, j],
                                                          structure.A_pattern))
    return _stack(grads)


def _empty_gradient(structure: Structure, columns: int) -> DataGradient:
    """Uninitialized data-gradient arrays with ``columns`` columns."""
    P_nnz = None if structure.P_pattern is None else structure.P_pattern.nnz
    return DataGradient(dc=np.empty((structure.n, columns)),
                        db=np.empty((structure.cones.size, columns)),
                        dA_data=np.empty((structure.A_pattern.nnz, columns)),
                        dP_data=None if P_nnz is None else np.empty((P_nnz, columns)))


def _stack(grads: list[DataGradient]) -> DataGradient:
    """Per-element data gradients as one with a column per element."""
    dP = None if grads[0].dP_data is None else np.column_stack([g.dP_data for g in grads])
    return DataGradient(dc=np.column_stack([g.dc for g in grads]),
                        db=np.column_stack([g.db for g in grads]),
                        dA_data=np.column_stack([g.dA_data for g in grads]), dP_data=dP)


# ---- results -----------------------------------------------------------------------------


@dataclass
class ForwardState:
    """What the backward pass needs from the forward pass of one batch.

    Attributes
    ----------
    template, batch : ConeTemplate, ProgramBatch
        The problem and its data (A_data/P_data may be read-only broadcast views
        when the structure is shared).
    solutions : list of Solution
        One per element.
    workspaces : list
        Solver workspaces kept for an LPGD backward pass (thread executors only), one
        per element: elements of a partition with shared structure share one object
        (one factorization); use it from one thread at a time.
    adjoints : list
        diffcp adjoints, one per element (exact path, thread executors only).
    stats : SolverStats
    structure : Structure or None
    partitions : list of range
        The partition layout the workspaces belong to.
    warm_started : bool
        Whether the forward solves were warm-started from the previous call.
    exact_mode : str or None
        diffcp's mode of the exact path's forward solves (None on the LPGD path).
    regularized : dict
        Per partition (by its first batch index), the ρ-regularized workspaces that
        LPGD backward passes set up, by ``(ρ, slack term)``: a second backward pass of
        the same forward (``retain_graph=True``) reuses them. Thread executors only.
    """

    template: ConeTemplate
    batch: ProgramBatch
    solutions: list[Solution]
    workspaces: list = field(default_factory=list)
    adjoints: list = field(default_factory=list)
    stats: SolverStats | None = None
    structure: Structure | None = None
    partitions: list = field(default_factory=list)
    warm_started: bool = False
    exact_mode: str | None = None
    regularized: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.stats is None:
            self.stats = SolverStats([SolveRecord.of(s) for s in self.solutions])
        self._x = np.column_stack([s.x for s in self.solutions])
        self._y = np.column_stack([s.y for s in self.solutions])
        self._s = np.column_stack([s.s for s in self.solutions])

    @property
    def x(self) -> np.ndarray:
        """Primal solutions, (n, B)."""
        return self._x

    @property
    def y(self) -> np.ndarray:
        """Dual solutions, (m, B)."""
        return self._y

    @property
    def s(self) -> np.ndarray:
        """Slacks, (m, B)."""
        return self._s


@dataclass
class BatchGradient:
    """Data gradients of a batch, one column per element (as :class:`ProgramBatch`).

    Attributes
    ----------
    dc, db, dA_data : numpy.ndarray
        Gradients in c, b and the stored entries of A.
    dP_data : numpy.ndarray or None
        Gradient in the stored entries of P.
    perturbed : list of dict
        LPGD only: per element, the perturbed solutions by side (+1, −1).
    """

    dc: np.ndarray
    db: np.ndarray
    dA_data: np.ndarray
    dP_data: np.ndarray | None
    perturbed: list = field(default_factory=list)

    @classmethod
    def stack(cls, grads: list[DataGradient], perturbed=None) -> BatchGradient:
        """From per-element (or per-partition, column blocks) data gradients, in order."""
        dP = None if grads[0].dP_data is None else np.column_stack([g.dP_data for g in grads])
        return cls(dc=np.column_stack([g.dc for g in grads]),
                   db=np.column_stack([g.db for g in grads]),
                   dA_data=np.column_stack([g.dA_data for g in grads]), dP_data=dP,
                   perturbed=perturbed or [])


# ---- the engine --------------------------------------------------------------------------

def _constant_columns(data: np.ndarray | None) -> bool:
    """True when every column of ``data`` is the same (broadcast or equal values)."""
    if data is None or data.shape[1] == 1 or data.strides[1] == 0:
        return True
    return bool(np.all(data == data[:, :1]))


class BatchEngine:
    """Solve batches of one cone template and differentiate them.

    Parameters
    ----------
    solver : str
        Backend name (see :data:`cvxlpgd.solvers.SOLVERS`).
    settings : dict
        Solver settings, passed to the backend.
    executor : concurrent.futures.Executor, optional
        Where partitions run. Default: the process-wide thread pool with ``workers``
        threads. Executors other than thread pools receive only picklable data.
    workers : int, optional
        Size of the default thread pool (default: all cores).
    partitions : int, optional
        Number of partitions of a batch with shared structure (default: the number of
        cores, so that with the default ``workers`` each thread factorizes once; four
        times as many when every element has its own workspace, to balance the load).
        Results depend on it (in the last digits), never on ``workers`` or the executor.
    warm_starts : WarmStartMemory, optional
        Warm-start each forward solve from the solution this memory holds for the same
        batch position (same template and batch size; ignored for solvers without warm
        start), and store the new solutions in it.
    share_factorizations : bool, default True
        Let elements with the same A and P share a workspace. False sets up one per
        element (the reference behaviour the tests compare the fast path with).
    """

    def __init__(self, solver: str, settings: dict | None = None,
                 executor: Executor | None = None, workers: int | None = None,
                 partitions: int | None = None, warm_starts: WarmStartMemory | None = None,
                 share_factorizations: bool = True):
        self.backend = get_backend(solver)
        self.solver = self.backend.name
        self.settings = dict(settings or {})
        self.workers = workers or default_workers()
        self.partitions = partitions or default_workers()
        self.warm_starts = warm_starts
        self.share_factorizations = share_factorizations
        self._executor = executor

    @property
    def executor(self) -> Executor:
        """The executor partitions run on (the user's, or the shared thread pool)."""
        return self._executor if self._executor is not None else thread_pool(self.workers)

    @property
    def local(self) -> bool:
        """Whether tasks run in this process (workspaces and adjoints can be kept)."""
        return shares_memory(self._executor)

    def _run(self, function, arguments: list[tuple]) -> list:
        if self._executor is None and (len(arguments) == 1 or self.workers == 1):
            executor = None  # no pool round trip for a single task or a single worker
        else:
            executor = self.executor
        return run_tasks(function, arguments, executor)

    # ---- problem data ----------------------------------------------------------------

    def program_data(self, template: ConeTemplate, theta: np.ndarray,
                     batched: list[bool] | None = None) -> ProgramBatch:
        """c, b, A.data (and P.data) of every column of Θ̃ (see ``template.program_data``).

        A and P that do not depend on a batched parameter are evaluated on one column
        and broadcast (a read-only view, no copies): the canonicalization product and
        the memory then do not grow with the batch, and the engine sees the shared
        structure.
        """
        B = theta.shape[1]
        if batched is None:
            return template.program_data(theta)
        deps = template.depends_on([bool(f) for f in batched])

        def evaluate(mapping, varies):
            if mapping is None:
                return None
            if varies or B == 1:
                return np.asarray(mapping @ theta)
            column = np.asarray(mapping @ theta[:, :1])
            return np.broadcast_to(column, (column.shape[0], B))

        return ProgramBatch(c=np.asarray(template.c_map @ theta),
                            b=np.asarray(template.b_map @ theta),
                            A_data=evaluate(template.A_map, deps["A"]),
                            P_data=evaluate(template.P_map, deps["P"]))

    @staticmethod
    def element_matrices(template: ConeTemplate, batch: ProgramBatch, index: int):
        """A (and P, or None) of batch element ``index`` as CSC matrices."""
        A = template.A_pattern.matrix(batch.A_data[:, index])
        P = None if template.P_pattern is None else template.P_pattern.matrix(
            batch.P_data[:, index])
        return A, P

    def _plan(self, template: ConeTemplate, batch: ProgramBatch, *, exact: bool
              ) -> tuple[Structure, list[range]]:
        """The batch's :class:`Structure` and partition layout."""
        shared = (self.share_factorizations and _constant_columns(batch.A_data)
                  and _constant_columns(batch.P_data))
        parts = self.partitions if shared else self.partitions * _UNSHARED_PARTITIONS_PER_CORE
        layout = split(batch.batch_size, parts)
        settings = dict(self.settings)
        if (shared and not exact and self.solver == "SCS"
                and max(len(part) for part in layout) > 1):
            # SCS adapts its step scale during a solve and keeps it for the next solve
            # on the same workspace; a scale tuned at the end of one element's solve is
            # a poor start for another element's cold solve (measured: 3.5x the
            # iterations on the benchmark QP and LP). A workspace that serves one
            # element only keeps SCS's default. The user's choice wins.
            settings.setdefault("adaptive_scale", False)
        A = P = None
        if shared:
            A, P = self.element_matrices(template, batch, 0)
        structure = Structure(solver=self.solver, settings=settings, cones=template.cones,
                              A_pattern=template.A_pattern, P_pattern=template.P_pattern,
                              shared=shared, A=A, P=P)
        return structure, layout

    @staticmethod
    def _columns(structure: Structure, batch: ProgramBatch, part: range, point=None
                 ) -> Columns:
        cols = slice(part.start, part.stop)
        x = y = s = None
        if point is not None:
            x, y, s = (array[:, cols] for array in point)
        return Columns(start=part.start, b=batch.b[:, cols], c=batch.c[:, cols],
                       A_data=None if structure.shared else batch.A_data[:, cols],
                       P_data=None if structure.shared or batch.P_data is None
                       else batch.P_data[:, cols],
                       x=x, y=y, s=s)

    def _warm_point(self, template: ConeTemplate, batch_size: int):
        if self.warm_starts is None or not self.backend.supports_warm_start:
            return None
        return self.warm_starts.lookup(template, batch_size)

    def _remember(self, state: ForwardState) -> None:
        if self.warm_starts is not None and self.backend.supports_warm_start:
            self.warm_starts.store(state.template, state.x, state.y, state.s)

    # ---- forward ---------------------------------------------------------------------

    def forward(self, template: ConeTemplate, batch: ProgramBatch, *, keep_workspaces: bool
                ) -> ForwardState:
        """Solve every element; keep the workspaces when an LPGD backward will follow.

        Raises
        ------
        SolverError
            Naming the status and the first failing batch index.
        """
        structure, layout = self._plan(template, batch, exact=False)
        point = self._warm_point(template, batch.batch_size)
        keep = keep_workspaces and self.local
        results = self._run(solve_partition, [
            (structure, self._columns(structure, batch, part, point), keep)
            for part in layout])
        solutions = [s for r in results for s in r[0]]
        self._raise_on_failure(solutions)
        state = ForwardState(template, batch, solutions,
                             workspaces=[w for r in results for w in r[1]],
                             structure=structure, partitions=layout,
                             warm_started=point is not None)
        self._remember(state)
        return state

    def forward_exact(self, template: ConeTemplate, batch: ProgramBatch, mode: str
                      ) -> ForwardState:
        """Solve every element through diffcp, keeping its adjoint derivative."""
        structure, layout = self._plan(template, batch, exact=True)
        point = self._warm_point(template, batch.batch_size)
        results = self._run(exact_forward_partition, [
            (structure, self._columns(structure, batch, part, point), mode, self.local)
            for part in layout])
        state = ForwardState(template, batch, [s for r in results for s in r[0]],
                             adjoints=[a for r in results for a in r[1]],
                             structure=structure, partitions=layout,
                             warm_started=point is not None, exact_mode=mode)
        self._remember(state)
        return state

    def _raise_on_failure(self, solutions: list[Solution]) -> None:
        for i, solution in enumerate(solutions):
            if not solution.ok:
                raise SolverError(
                    f"{self.solver} returned status {solution.status!r} at batch index {i}: "
                    "the problem is infeasible, unbounded or the solver failed for these "
                    "parameter values", status=solution.status, batch_index=i)

    # ---- backward --------------------------------------------------------------------

    def _state_structure(self, state: ForwardState) -> tuple[Structure, list[range]]:
        if state.structure is not None:
            return state.structure, state.partitions
        return self._plan(state.template, state.batch, exact=state.exact_mode is not None)

    def backward_lpgd(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray, *,
                      tau: float, rho: float, mode: str, ds: np.ndarray | None = None
                      ) -> BatchGradient:
        """LPGD data gradients of every element (see :mod:`cvxlpgd.lpgd`)."""
        structure, layout = self._state_structure(state)
        point = (state.x, state.y, state.s)
        # The batch's gradient arrays; tasks in this process write their columns in
        # place (no second copy to concatenate), remote tasks return theirs.
        full = _empty_gradient(structure, state.batch.batch_size)
        arguments = []
        for part in layout:
            cols = slice(part.start, part.stop)
            workspaces = state.workspaces[cols] if state.workspaces else None
            out = regularized = None
            if self.local:
                out = DataGradient(full.dc[:, cols], full.db[:, cols], full.dA_data[:, cols],
                                   None if full.dP_data is None else full.dP_data[:, cols])
                regularized = state.regularized.setdefault(part.start, {})
            arguments.append((structure, self._columns(structure, state.batch, part, point),
                              state.solutions[cols], dx[:, cols], dy[:, cols],
                              None if ds is None else ds[:, cols], tau, rho, mode,
                              workspaces, out, regularized))
        results = self._run(lpgd_partition, arguments)
        for part, (block, _) in zip(layout, results):
            if not self.local:
                cols = slice(part.start, part.stop)
                full.dc[:, cols], full.db[:, cols], full.dA_data[:, cols] = (
                    block.dc, block.db, block.dA_data)
                if full.dP_data is not None:
                    full.dP_data[:, cols] = block.dP_data
        perturbed = [sides for r in results for sides in r[1]]
        state.stats.backward = [
            {SIDE_NAMES[sign]: SolveRecord.of(sol) for sign, sol in sides.items()}
            for sides in perturbed]
        return BatchGradient(full.dc, full.db, full.dA_data, full.dP_data,
                             perturbed=perturbed)

    def backward_exact(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray
                       ) -> BatchGradient:
        """diffcp's exact adjoint for every element.

        Where the forward adjoints could not be kept (executors that do not share
        memory), each element is solved again through diffcp, warm-started from its
        forward solution, in the same mode.
        """
        structure, layout = self._state_structure(state)
        mode = state.exact_mode or "lsqr"
        point = (state.x, state.y, state.s)
        arguments = []
        for part in layout:
            cols = slice(part.start, part.stop)
            arguments.append((structure, self._columns(structure, state.batch, part, point),
                              dx[:, cols], dy[:, cols], mode,
                              state.adjoints[cols] if state.adjoints else None))
        return BatchGradient.stack(self._run(exact_backward_partition, arguments))

