"""Batches for the per-element solvers (SCS, Clarabel, ECOS): partitions on an executor.

:class:`PooledSolver` implements the batch protocol for a backend that solves one
program per :class:`~cvxlpgd.solvers.base.Workspace`:

* **Partitions.** The batch is cut into contiguous partitions; one task solves one
  partition, element after element. Tasks run in parallel on an executor (the
  process-wide thread pool by default: the solvers release the GIL).
* **Shared factorizations.** When every element has the same A and P
  (:attr:`ProgramBatch.shared_matrices`) a task sets up ONE workspace (one
  factorization) and solves its elements through ``update(b=, c=)``; otherwise
  each element gets its own workspace.
* **Layout.** The number of partitions depends on the batch size and the number of
  cores only, never on the worker count or the executor, so results are the same
  for any of them (a workspace that solves several elements in turn carries solver
  state from one solve to the next: SCS keeps its acceleration memory).
* **Reuse.** Given a ``reuse`` dictionary (same process only), the workspaces set
  up for a batch are kept there and serve a later batch with the same ``A_data``
  and ``P_data`` arrays: LPGD's re-solves change only c and b.
* **Executors that do not share memory** (process pools, dask) receive module-level
  functions of plain data (:func:`solve_partition`) and return plain solutions.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.base import BatchPoint, BatchSolution, Solution, SolverBackend
from cvxlpgd.solvers.parallel import default_workers, run_tasks, shares_memory, split, thread_pool

#: Elements per partition are solved in order on one workspace when the matrices are
#: shared; otherwise every element has its own workspace and the layout changes no
#: result, so more, smaller partitions balance the load across workers.
_UNSHARED_PARTITIONS_PER_CORE = 4


@dataclass(frozen=True)
class PartitionTask:
    """Plain, picklable data of one partition's solves.

    Attributes
    ----------
    solver : str
        Backend name.
    settings : dict
        Solver settings.
    structure : ProgramStructure
        Cones and patterns.
    batch : ProgramBatch
        The partition's elements.
    shared : bool
        Whether every element has the same A and P (one workspace for all).
    warm_start : tuple of numpy.ndarray or None
        ``(X, Y, S)`` rows of the partition.
    """

    solver: str
    settings: dict
    structure: ProgramStructure
    batch: ProgramBatch
    shared: bool
    warm_start: BatchPoint | None = None

    def point(self, j: int):
        """Warm start of element ``j`` or None."""
        if self.warm_start is None:
            return None
        return tuple(array[j] for array in self.warm_start)


def solve_partition(
    task: PartitionTask, workspaces: list | None = None, keep: bool = False
) -> tuple[list[Solution], list]:
    """Solve the elements of one partition in order.

    Parameters
    ----------
    task : PartitionTask
        What to solve.
    workspaces : list, optional
        Workspaces set up earlier for the same matrices (one per element, or one
        shared); new ones are set up when None.
    keep : bool, default False
        Return the workspaces (only where the caller shares this process's memory:
        solver objects cannot be pickled).

    Returns
    -------
    solutions : list of Solution
    workspaces : list
        With ``keep``, the workspaces used (one, or one per element); else ``[]``.
    """
    from cvxlpgd.solvers import get_backend  # the registry imports this module

    backend = get_backend(task.solver)
    batch, structure = task.batch, task.structure
    if workspaces is None:
        if task.shared:
            A, P = batch.element_matrices(structure, 0)
            workspaces = [backend.setup(A, P, structure.cones, task.settings)]
        else:
            workspaces = []
            for j in range(batch.batch_size):
                A, P = batch.element_matrices(structure, j)
                workspaces.append(backend.setup(A, P, structure.cones, task.settings))
    solutions = []
    for j in range(batch.batch_size):
        workspace = workspaces[0] if task.shared else workspaces[j]
        solutions.append(workspace.solve(batch.b[j], batch.c[j], task.point(j)))
    return solutions, (workspaces if keep else [])


class PooledSolver:
    """A per-element backend behind the batch protocol (see the module docstring).

    Parameters
    ----------
    backend : SolverBackend
        The per-element solver.
    structure : ProgramStructure
        Cones and patterns of every batch this solver sees.
    settings : dict
        Solver settings.
    executor : concurrent.futures.Executor, optional
        Where partitions run (default: the shared thread pool with ``workers``
        threads).
    workers : int, optional
        Size of the default thread pool (default: all cores).
    partitions : int, optional
        Partitions of a batch with shared matrices (default: the number of cores;
        four times as many when every element has its own workspace).
    share_factorizations : bool, default True
        Let elements with the same A and P share a workspace. False sets up one per
        element (the reference the tests compare the fast path with).
    """

    def __init__(
        self,
        backend: SolverBackend,
        structure: ProgramStructure,
        settings: dict,
        *,
        executor: Executor | None = None,
        workers: int | None = None,
        partitions: int | None = None,
        share_factorizations: bool = True,
    ):
        self.backend = backend
        self.name = backend.name
        self.supports_warm_start = backend.supports_warm_start
        self.solves_independently = backend.solves_independently
        self.structure = structure
        self.settings = dict(settings)
        self.executor = executor
        self.workers = workers or default_workers()
        self.partitions = partitions or default_workers()
        self.share_factorizations = share_factorizations

    @property
    def local(self) -> bool:
        """Whether tasks run in this process (so workspaces can be kept)."""
        return shares_memory(self.executor)

    def layout(self, batch: ProgramBatch) -> tuple[bool, list[range]]:
        """Whether the batch shares one factorization, and its partitions."""
        shared = self.share_factorizations and batch.shared_matrices
        parts = self.partitions if shared else self.partitions * _UNSHARED_PARTITIONS_PER_CORE
        return shared, split(batch.batch_size, parts)

    def task_settings(self, shared: bool, layout: list[range]) -> dict:
        """The settings of a batch's tasks."""
        settings = dict(self.settings)
        if shared and self.name == "SCS" and max(len(part) for part in layout) > 1:
            # SCS adapts its step scale during a solve and keeps it for the next solve
            # on the same workspace; a scale tuned at the end of one element's solve is
            # a poor start for another element's cold solve (several times the
            # iterations on the benchmark QP and LP). The user's choice wins.
            settings.setdefault("adaptive_scale", False)
        return settings

    def solve(
        self, batch: ProgramBatch, warm_start: BatchPoint | None = None, reuse: dict | None = None
    ) -> BatchSolution:
        """Solve every element (see :meth:`BatchSolver.solve`)."""
        shared, layout = self.layout(batch)
        settings = self.task_settings(shared, layout)
        store = reuse if reuse is not None and self.local else None
        keep = store is not None
        kept = store.get("workspaces") if store is not None else None
        if kept is not None and (
            kept[0] is not batch.A_data or kept[1] is not batch.P_data or kept[2] != layout
        ):
            kept = None
        tasks = []
        for k, part in enumerate(layout):
            rows = slice(part.start, part.stop)
            point = None if warm_start is None else tuple(a[rows] for a in warm_start)
            task = PartitionTask(
                self.name, settings, self.structure, batch.rows(rows), shared, point
            )
            tasks.append((task, None if kept is None else kept[3][k], keep))
        executor = self.executor
        if executor is None:
            single = len(tasks) == 1 or self.workers == 1
            executor = None if single else thread_pool(self.workers)
        results = run_tasks(solve_partition, tasks, executor)
        if store is not None:
            # The arrays are kept with the workspaces, so their ids stay theirs.
            store["workspaces"] = (
                batch.A_data,
                batch.P_data,
                layout,
                [workspaces for _, workspaces in results],
            )
        return BatchSolution.from_solutions(
            [s for solutions, _ in results for s in solutions], self.name
        )
