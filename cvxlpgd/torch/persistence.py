"""Copies, pickles and saves of a layer: configuration only, caches rebuilt on first use.

A layer's runtime members (compiled solvers, engines, warm starts, live calls, the
operator registration) are rebuilt instead of copied; a user executor is shared by a
deep copy and left out of a pickle.
"""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import Executor
from typing import Any, cast

#: What a layer rebuilds on demand instead of copying or pickling it.
RUNTIME = ("_runtime", "_handle")


class RebuildsRuntime:
    """Mixin of :class:`cvxlpgd.CvxpyLayer`: pickling and deep copies without caches.

    The class using it provides ``_start_runtime()`` (which creates the members of
    :data:`RUNTIME`) and an ``executor`` property stored as ``_executor``.
    """

    executor: Executor | None

    def _start_runtime(self) -> None:
        raise NotImplementedError

    def _state(self) -> dict:
        """``torch.nn.Module``'s state of the layer without the runtime members."""
        module_state = cast(Any, super()).__getstate__()
        return {k: v for k, v in module_state.items() if k not in RUNTIME}

    def __getstate__(self) -> dict:
        """The layer's state for pickling: no solvers, engines, warm starts or pools.

        Returns
        -------
        dict
            A user ``executor`` is left out too (an executor cannot be pickled); the
            loaded layer uses the built-in thread pool, with a warning here.
        """
        state = self._state()
        if state.get("_executor") is not None:
            warnings.warn(
                f"the layer's executor ({type(self.executor).__name__}) is not "
                "pickled; the loaded layer uses the built-in thread pool (set "
                "layer.executor to use another)",
                RuntimeWarning,
                stacklevel=2,
            )
            state["_executor"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled layer; its caches are rebuilt on first use.

        Parameters
        ----------
        state : dict
            What :meth:`__getstate__` returned.
        """
        cast(Any, super()).__setstate__(state)
        self._start_runtime()

    def __deepcopy__(self, memo: dict):
        """A copy with its own caches; a user ``executor`` is shared, not copied.

        Parameters
        ----------
        memo : dict
            ``copy.deepcopy``'s memo.

        Returns
        -------
        CvxpyLayer
        """
        if self.executor is not None:
            memo[id(self.executor)] = self.executor
        state = self._state()
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(state, memo))
        return new
