"""Where the elements of a batch run: executors, partitions and warm starts across calls.

A batch of B cone programs is cut into contiguous *partitions*; one task solves one
partition, element after element, on one solver workspace when the elements share
A and P (one factorization per partition, ``update(b=, c=)`` per element) or on one
workspace per element otherwise. Tasks run on an executor:

* the built-in thread pool (default): the solvers release the GIL, so threads scale,
  and workspaces stay in memory for the backward pass;
* any other :class:`concurrent.futures.Executor` — a process pool, a
  ``dask.distributed`` ``Client.get_executor()`` — receives only plain, picklable
  data and module-level functions (see :mod:`cvxlpgd.engine.batch`); nothing that lives in
  solver memory comes back.

The number of partitions, ``min(B, partitions)`` with ``partitions`` the number of
cores by default, depends on the batch size and the machine only — never on
``workers`` or on the executor. A workspace that solves several elements in turn
carries solver state from one solve to the next (SCS keeps its Anderson-acceleration
memory), so a partition layout that changed with the worker count would change the
last digits of the results; a fixed layout keeps them bitwise identical for any
worker count and any executor.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor, wait

import numpy as np


def default_workers() -> int:
    """All cores this process may use.

    Returns
    -------
    int
        The size of the process's CPU affinity set (``os.cpu_count()`` off Linux).
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def thread_pool(workers: int) -> ThreadPoolExecutor:
    """The process-wide thread pool with ``workers`` threads, created on first use.

    Shared by every layer and call: a pool per call would start and stop threads on
    every forward pass. ``concurrent.futures`` joins its threads at interpreter exit.

    Parameters
    ----------
    workers : int
        Number of threads.

    Returns
    -------
    concurrent.futures.ThreadPoolExecutor
    """
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cvxlpgd")
            _POOLS[workers] = pool
        return pool


def shares_memory(executor: Executor | None) -> bool:
    """Whether tasks on ``executor`` run in this process (so workspaces can be kept).

    Only thread pools qualify; every other executor (process pools, dask, unknown
    kinds) is treated as remote: its tasks receive pickled data and return plain data.

    Parameters
    ----------
    executor : concurrent.futures.Executor or None
        None stands for the built-in thread pool.

    Returns
    -------
    bool
    """
    return executor is None or isinstance(executor, ThreadPoolExecutor)


def split(batch_size: int, parts: int) -> list[range]:
    """``min(batch_size, parts)`` contiguous ranges covering ``range(batch_size)``.

    Parameters
    ----------
    batch_size : int
        Number of elements B.
    parts : int
        Requested number of partitions (at least one is made).

    Returns
    -------
    list of range
        Sizes differ by at most one, the larger ones first.
    """
    parts = max(1, min(batch_size, parts))
    base, extra = divmod(batch_size, parts)
    ranges, start = [], 0
    for k in range(parts):
        stop = start + base + (1 if k < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def run_tasks(function: Callable, arguments: Sequence[tuple], executor: Executor | None) -> list:
    """``[function(*args) for args in arguments]``, on ``executor`` when one is given.

    Every task finishes before this returns (so no workspace is still in use when the
    caller moves on); then the first failure in task order is raised, which for
    contiguous partitions is the one with the lowest batch index.

    Parameters
    ----------
    function : callable
        A module-level function when ``executor`` is not a thread pool (it is pickled
        by reference).
    arguments : sequence of tuple
        Positional arguments of each task.
    executor : concurrent.futures.Executor or None
        None runs the tasks here, in order.

    Returns
    -------
    list
        The tasks' results, in order.

    Raises
    ------
    concurrent.futures.BrokenExecutor
        When the executor is broken (a worker process died), saying how to replace it.
    """
    if executor is None:
        return [function(*args) for args in arguments]
    try:
        futures = [executor.submit(function, *args) for args in arguments]
        wait(futures)
        return [future.result() for future in futures]
    except BrokenExecutor as error:
        raise type(error)(
            f"the layer's executor ({type(executor).__name__}) is broken ({error}): a worker "
            "died, and the pool takes no more work; set layer.executor = None (the built-in "
            "thread pool) or a new executor and call the layer again"
        ) from error


class WarmStartMemory:
    """The last forward solution per batch position, to warm-start the next call.

    One entry per cone template (a layer compiles up to two: the QP form for LPGD and
    the conic form for exact gradients), so switching the gradient mode does not
    discard the other form's solutions. An entry is used only when the next batch has
    the same size; the engine also ignores it for solvers that cannot warm-start
    (Clarabel, ECOS). Thread-safe.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[object, np.ndarray, np.ndarray, np.ndarray]] = {}

    def lookup(self, template, batch_size: int):
        """``(x, y, s)`` of shapes (B, n), (B, m), (B, m) stored for ``template``, or None
        when there is none or it was stored for another batch size."""
        with self._lock:
            entry = self._entries.get(id(template))
        if entry is None or entry[0] is not template or entry[1].shape[0] != batch_size:
            return None
        return entry[1], entry[2], entry[3]

    def store(self, template, x: np.ndarray, y: np.ndarray, s: np.ndarray) -> None:
        """Remember a batch's solution (arrays with one row per element)."""
        with self._lock:
            # The template is kept with its arrays: its id cannot be reused meanwhile.
            self._entries[id(template)] = (template, x, y, s)

    def clear(self) -> None:
        """Forget every stored solution."""
        with self._lock:
            self._entries.clear()


@functools.cache
def _blas_controller():
    """threadpoolctl's controller (a dependency of diffcp's), built once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS uses one thread.

    The engine's dense products and factorizations are small; threaded BLAS on them is
    slower, and on a loaded machine much slower (threads spin for busy cores: a
    128 × 50 by 50 × 100 product measured 5 ms threaded against 50 µs on one thread at
    load 4 on 2 cores). Entering and leaving costs about 10 µs.

    Returns
    -------
    contextlib.AbstractContextManager
        threadpoolctl's limit, to use in a ``with`` statement.
    """
    return _blas_controller().limit(limits=1, user_api="blas")
