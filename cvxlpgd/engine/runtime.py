"""What the calls of one layer share while it runs, framework-free.

A front end (:mod:`cvxlpgd.torch`, :mod:`cvxlpgd.jax`) turns a call into NumPy arrays and
hands them to its layer's :class:`LayerRuntime`, which owns everything a layer rebuilds
instead of copying: the engines (one per device) with their solvers, the warm-start
memory, the decoded kinds of call, the recipes of forward calls and the forward states
that live backward passes will need. Its interface is five verbs: :meth:`~LayerRuntime.solve`
a call, :meth:`~LayerRuntime.keep` its state for the backward pass (under a stamp),
:meth:`~LayerRuntime.rebuild` a state from the forward solution when none was kept,
:meth:`~LayerRuntime.gradients` of the parameters, and
:meth:`~LayerRuntime.release_workspaces`.

A backward pass that finds no kept state (``vmap`` re-batched the call, or the graph
that held it is gone) rebuilds one from tensors alone: the program data from the
parameters (the same affine maps), the solution from ``(x, y, s)``, the solver from
the forward call's recipe.
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np

from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.fallback import fallback_chain
from cvxlpgd.engine.options import CallOptions
from cvxlpgd.engine.state import ForwardState
from cvxlpgd.problem.template import ConeTemplate
from cvxlpgd.solvers.base import BatchSolution
from cvxlpgd.solvers.parallel import WarmStartMemory

#: Kinds of call (decoded options) and forward recipes a runtime keeps at most.
MAX_ENTRIES = 256

#: A batch of at most this many numbers (B·(n + m) plus the stored entries of A and P
#: per distinct matrix) leaves its solver workspaces cached for the next call of the
#: same size; a larger one releases them when its call ends. Moreau's compiled solver
#: holds many times the batch's data; rebuilding it costs little next to a solve of a
#: large batch but a sizeable part of a call of small problems, which therefore keep
#: theirs (measurements: docs/pytorch.md, memory).
KEEP_WORKSPACE_NUMBERS = 2**16

_STAMPS = itertools.count(1)


@dataclass(frozen=True)
class CallKind:
    """What one kind of call prepares: its options and the form it solves.

    Attributes
    ----------
    options : CallOptions
        The call's options (the layer's, with per-call overrides).
    needs_grad : bool
        Whether a backward pass may follow.
    exact_backend : str or None
        The exact derivative the forward prepares (None: LPGD or no gradient).
    lpgd_tau : float or None
        The LPGD τ the forward solve prepares for (interior-point tolerances).
    template : ConeTemplate
        The compiled form the call solves.
    """

    options: CallOptions
    needs_grad: bool
    exact_backend: str | None
    lpgd_tau: float | None
    template: ConeTemplate


@dataclass(frozen=True)
class LiveCall:
    """A forward state kept for its backward pass, with the call's batch flags."""

    state: ForwardState
    batched: tuple[bool, ...]
    where: str


class LayerRuntime:
    """The run-time side of one layer (see the module docstring).

    Parameters
    ----------
    layer : cvxlpgd.engine.compiled.CompiledProblem
        The layer whose compiled problem and configuration the calls use (held weakly:
        the layer owns its runtime).
    executor : concurrent.futures.Executor, optional
        Where the engines solve batches (None: the built-in thread pool).
    """

    def __init__(self, layer, executor=None) -> None:
        self._layer = weakref.ref(layer)
        self.executor = executor
        self.warm_starts = WarmStartMemory()
        self.engines: dict[str, BatchEngine] = {}
        self.kinds: dict[str, CallKind] = {}
        self.recipes: dict[tuple, tuple[str, dict, dict]] = {}
        self.live: dict[int, LiveCall] = {}
        #: Kinds whose key cannot be decoded again (never dropped).
        self.pinned: dict[str, CallKind] = {}

    @property
    def layer(self):
        layer = self._layer()
        if layer is None:
            raise RuntimeError("the layer of this runtime no longer exists")
        return layer

    # ---- configuration -------------------------------------------------------------------

    def engine(self, where: str = "cpu") -> BatchEngine:
        """The engine that solves on ``where`` (``"cpu"`` or ``"cuda"``), built once."""
        engine = self.engines.get(where)
        if engine is None:
            layer = self.layer
            engine = self.engines[where] = BatchEngine(
                layer.solver,
                executor=self.executor,
                workers=layer.workers,
                fallback=layer.fallback,
                warm_starts=self.warm_starts if layer.warm_start else None,
                device=where,
                active_set=getattr(layer, "active_set", True),
            )  # older pickles lack it
        return engine

    def set_executor(self, executor) -> None:
        """Solve on ``executor`` from the next call on (the engines are rebuilt)."""
        self.executor = executor
        self.engines.clear()

    def known_kind(self, key: str) -> CallKind | None:
        """The kind of call prepared under ``key`` earlier, if it is still kept."""
        return self.kinds.get(key) or self.pinned.get(key)

    def kind(
        self, key: str, options: CallOptions, needs_grad: bool, *, pinned: bool = False
    ) -> CallKind:
        """The kind of call ``key`` names (a key names one kind), prepared once and kept (at most
        :data:`MAX_ENTRIES`, the oldest dropped first, unless ``pinned``: a key that
        cannot be decoded again)."""
        kind = self.known_kind(key)
        if kind is None:
            layer = self.layer
            exact_backend = None
            if needs_grad and options.gradient == "exact":
                exact_backend = layer.exact_backend_for(options.exact_backend, options.solver_args)
            lpgd_tau = options.tau if needs_grad and exact_backend is None else None
            template = layer._template(quadratic=layer._solves_quadratic(exact_backend))
            kind = CallKind(options, needs_grad, exact_backend, lpgd_tau, template)
            if pinned:
                self.pinned[key] = kind
            else:
                _bounded_put(self.kinds, key, kind)
        return kind

    # ---- forward -------------------------------------------------------------------------

    def solve(
        self,
        kind: CallKind,
        key: str,
        values: list[np.ndarray],
        batched,
        batch_size: int,
        where: str = "cpu",
    ) -> ForwardState:
        """Solve every element of one call; its recipe is kept for rebuilt backward passes.

        Parameters
        ----------
        kind : CallKind
        key : str
            Names the kind of call (recipes are kept under it, ``where`` and the size).
        values : list of numpy.ndarray
            Checked float64 parameter values (:func:`cvxlpgd.problem.parameters.checked_values`).
        batched : sequence of bool
            Per parameter: whether it has a leading batch dimension.
        batch_size : int
        where : str

        Returns
        -------
        ForwardState

        Raises
        ------
        cvxlpgd.SolverError
            When an element is not solved.
        """
        template, options = kind.template, kind.options
        batch = template.program_data(template.stack_parameters(values, batch_size), batched)
        state = self.engine(where).forward(
            template,
            batch,
            settings=options.solver_args,
            exact_backend=kind.exact_backend,
            exact_mode=options.exact_mode,
            lpgd_tau=kind.lpgd_tau,
            inaccurate=options.inaccurate,
        )
        if kind.needs_grad:
            _bounded_put(
                self.recipes,
                (key, where, batch_size),
                (state.solver.name, state.settings, state.call_args),
            )
        return state

    def keep(self, state: ForwardState, batched, where: str = "cpu") -> int:
        """Keep a forward state for its backward pass; the stamp that names it."""
        stamp = next(_STAMPS)
        self.live[stamp] = LiveCall(state, tuple(batched), where)
        return stamp

    def forget(self, stamp: int) -> None:
        """A call's graph is gone: drop its state (and large solver workspaces)."""
        live = self.live.pop(stamp, None)
        if live is not None:
            self.release_workspaces(live.state)

    def release_workspaces(self, state: ForwardState) -> None:
        """Empty the engines' solver caches after a call on a large batch (see
        :data:`KEEP_WORKSPACE_NUMBERS`); solvers of live calls stay with their states."""
        batch = state.batch
        B = batch.batch_size
        numbers = B * (batch.c.shape[1] + batch.b.shape[1])
        for data in (batch.A_data, batch.P_data):
            if data is not None:
                numbers += data.shape[1] * (1 if data.strides[0] == 0 or B == 1 else B)
        if numbers > KEEP_WORKSPACE_NUMBERS:
            for engine in self.engines.values():
                engine.clear()

    # ---- backward ------------------------------------------------------------------------

    def rebuild(
        self,
        kind: CallKind,
        key: str,
        values: list[np.ndarray],
        batched,
        batch_size: int,
        solution,
        where: str = "cpu",
    ) -> ForwardState:
        """The forward state of a call from its parameters and solution, solving nothing.

        Parameters
        ----------
        kind, key, values, batched, batch_size, where
            As for :meth:`solve`.
        solution : tuple of numpy.ndarray
            x (B, n), y (B, m), s (B, m) of the forward solve.

        Returns
        -------
        ForwardState
        """
        template, options, engine = kind.template, kind.options, self.engine(where)
        batch = template.program_data(template.stack_parameters(values, batch_size), batched)
        recipe = self.recipes.get((key, where, batch_size))
        if recipe is None:  # no forward of this size ran here: pick as the forward would
            name, args = engine.resolve(
                template.structure,
                batch_size,
                batch.shared_matrices,
                options.solver_args,
                kind.exact_backend,
            )
            recipe = (
                name,
                engine.call_settings(
                    name, args, kind.lpgd_tau, kind.exact_backend, template.structure.cones
                ),
                args,
            )
        name, settings, args = recipe
        solver = engine.batch_solver(
            template,
            "forward",
            template.structure,
            name,
            settings,
            enable_grad=kind.exact_backend == "moreau",
        )
        x, y, s = (np.ascontiguousarray(a, dtype=np.float64) for a in solution)
        point = BatchSolution(
            x=x,
            y=y,
            s=s,
            status=["optimal"] * batch_size,
            iterations=np.zeros(batch_size, dtype=np.int64),
            solve_time=np.zeros(batch_size),
            solver=name,
        )
        # moreau_solves=-1: Moreau's derivative belongs to another solve, so it re-solves.
        # A reuse record marked as used: a solver that carries state between solves (SCS)
        # replays the (cold) forward solves first, as a repeated backward pass does.
        return ForwardState(
            template,
            batch,
            point,
            solver,
            settings,
            reuse={"used_by_backward": True},
            exact_backend=kind.exact_backend,
            exact_mode=options.exact_mode,
            moreau_solves=-1,
            tolerance=engine.tolerance(template, name, settings),
            call_args=args,
            lpgd_tau=kind.lpgd_tau,
            chain=fallback_chain(name, template.structure, engine.fallback),
        )

    def gradients(
        self, kind: CallKind, state: ForwardState, incoming: list, where: str = "cpu"
    ) -> list[np.ndarray]:
        r"""Per-element gradients of the parameters, θ̄ = Tᵀ D̄(x̄, ȳ).

        T is the affine map θ ↦ (c, b, A, P) and D̄ the LPGD or exact data gradient of
        the incoming gradients x̄, ȳ of the outputs.

        Parameters
        ----------
        kind : CallKind
        state : ForwardState
        incoming : list of numpy.ndarray
            One (B, *shape) float64 array per output.
        where : str

        Returns
        -------
        list of numpy.ndarray
            One (B, *shape) array per parameter.
        """
        template = state.template
        dx, dy = template.output_adjoint(incoming, state.batch.batch_size)
        data_grad = self.engine(where).backward(state, dx, dy, kind.options, self.layer)
        return template.parameter_gradient(
            data_grad.dc, data_grad.db, data_grad.dA_data, data_grad.dP_data
        )


def _bounded_put(table: dict, key, value) -> None:
    """``table[key] = value`` as the newest entry; the oldest go beyond MAX_ENTRIES."""
    table.pop(key, None)
    table[key] = value
    while len(table) > MAX_ENTRIES:
        table.pop(next(iter(table)))
