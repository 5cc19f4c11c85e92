"""One call of a layer in NumPy terms: the forward solve and the backward pass.

These functions are the bodies of the layer's custom operators
(:mod:`cvxlpgd.torch.operators`). They take and return plain tensors, so that the operators
are opaque to ``torch.compile`` and to ``torch.func``:

* :func:`solve_call` returns the requested outputs and, as extra tensors, the
  forward solution ``(x, y, s)`` (float64, one row per element) and a *stamp*.
* :func:`backward_call` gets the call's parameter tensors, that solution, the stamp
  and the incoming gradients, and returns one gradient per parameter.

What the backward pass needs beyond those tensors (the solver workspaces of the
forward solve, Moreau's derivative of its last solve, the statistics record) is
kept in the layer's table of live calls under the stamp, and only as long as the
stamp tensor lives: autograd holds it while the graph exists and drops it with the
graph, and a finalizer then removes the entry. A backward pass that does not find
its entry (``vmap`` re-batched the call, or the entry is gone) rebuilds the state
from the tensors: the program data from the parameters (the same affine maps), the
solution from ``(x, y, s)``, the solver from the forward call's recipe.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np
import torch

from cvxlpgd.engine.fallback import fallback_chain
from cvxlpgd.engine.state import ForwardState
from cvxlpgd.solvers.base import BatchSolution
from cvxlpgd.torch.inputs import check_arguments, check_inputs

#: Stamps of calls whose state is kept for their backward pass (-1: none kept).
_STAMPS = itertools.count(1)
NO_STAMP = -1


def solve_call(layer, key: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Solve one call: its outputs, then x (B, n), y (B, m), s (B, m) and the stamp.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
    key : str
        The call's options (see ``CvxpyLayer._call_key``).
    tensors : list of torch.Tensor
        One per parameter.

    Returns
    -------
    list of torch.Tensor
        Outputs in the inputs' dtype and device (batch dimension iff an input had one),
        then the solution (float64, CPU) and a 0-d int64 stamp.

    Raises
    ------
    TypeError, ValueError
        For invalid inputs (naming the parameter).
    cvxlpgd.SolverError
        When an element is not solved.
    """
    call = _Prepared(layer, key, tensors)
    options, inputs, template, engine = call.options, call.inputs, call.template, call.engine
    state = engine.forward(template, call.batch, settings=options.solver_args,
                           exact_backend=call.exact_backend, exact_mode=options.exact_mode,
                           lpgd_tau=call.lpgd_tau, inaccurate=options.inaccurate)
    layer._stats = state.stats
    unbatched = not any(inputs.batched)
    outputs = []
    for array in template.recover_outputs(state.x, state.y):
        array = array[0] if unbatched else array
        outputs.append(torch.from_numpy(np.array(array, order="C")).to(
            dtype=inputs.dtype, device=inputs.device))
    solution = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
                for a in (state.x, state.y, state.s)]
    if not call.needs_grad:
        _release_workspaces(layer, state)
        return [*outputs, *solution, torch.tensor(NO_STAMP, dtype=torch.int64)]
    stamp = next(_STAMPS)
    layer._live_calls[stamp] = state
    layer._recipes[(key, engine.device)] = (state.solver.name, state.settings, state.call_args)
    stamp_tensor = torch.tensor(stamp, dtype=torch.int64)
    # The entry lives as long as the stamp tensor, which autograd keeps with the graph.
    weakref.finalize(stamp_tensor, _forget, weakref.ref(layer), stamp)
    return [*outputs, *solution, stamp_tensor]


def _forget(layer_ref, stamp: int) -> None:
    """A call's graph is gone: drop its state (and large solver workspaces)."""
    layer = layer_ref()
    if layer is not None:
        state = layer._live_calls.pop(stamp, None)
        if state is not None:
            _release_workspaces(layer, state)


#: A batch of at most this many numbers (B·(n + m) plus the stored entries of A and P
#: per distinct matrix) leaves its solver workspaces cached for the next call of the
#: same size; a larger one releases them when its call ends. Moreau's compiled solver
#: holds many times the batch's data; rebuilding it costs little next to a solve of a
#: large batch but a sizeable part of a call of small problems, which therefore keep
#: theirs (measurements: docs/pytorch.md, memory).
KEEP_WORKSPACE_NUMBERS = 2 ** 16


def _release_workspaces(layer, state) -> None:
    """Empty the engine's solver cache after a call on a large batch (see above).

    Solvers that calls still alive use stay with those calls' states.
    """
    batch = state.batch
    B = batch.batch_size
    numbers = B * (batch.c.shape[1] + batch.b.shape[1])
    for data in (batch.A_data, batch.P_data):
        if data is not None:
            numbers += data.shape[1] * (1 if data.strides[0] == 0 or B == 1 else B)
    if numbers > KEEP_WORKSPACE_NUMBERS:
        for engine in layer._engines.values():
            engine.clear()


def _exact_backend(layer, options, needs_grad: bool) -> str | None:
    """The exact derivative a call prepares (None: LPGD or no gradient)."""
    if needs_grad and options.gradient == "exact":
        return layer.exact_backend_for(options.exact_backend, options.solver_args)
    return None


def fake_outputs(layer, key: str, tensors) -> list[torch.Tensor]:
    """Empty tensors of the shapes, dtypes and devices :func:`solve_call` returns.

    What ``torch.compile`` traces with: it runs on fake tensors and solves nothing.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
    key : str
    tensors : list of torch.Tensor

    Returns
    -------
    list of torch.Tensor
    """
    options, needs_grad = layer._call_options(key)
    arguments = check_arguments(layer._specs, tensors)
    template = layer._template(quadratic=layer._solves_quadratic(
        _exact_backend(layer, options, needs_grad)))
    B = arguments.batch_size
    lead = (B,) if any(arguments.batched) else ()
    outputs = [torch.empty((*lead, *slot.shape), dtype=arguments.dtype,
                           device=arguments.device) for slot in template.outputs]
    solution = [torch.empty((B, size), dtype=torch.float64)
                for size in (template.n, template.m, template.m)]
    return [*outputs, *solution, torch.empty((), dtype=torch.int64)]


def backward_call(layer, key: str, tensors: list[torch.Tensor], solution: list[torch.Tensor],
                  stamp: torch.Tensor, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of one call: one float64 CPU tensor per parameter, of its shape.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
    key : str
    tensors : list of torch.Tensor
        The call's parameters.
    solution : list of torch.Tensor
        x (B, n), y (B, m), s (B, m) as :func:`solve_call` returned them.
    stamp : torch.Tensor
        The call's stamp.
    grads : list of torch.Tensor
        Incoming gradient per output.

    Returns
    -------
    list of torch.Tensor
        The gradient of each parameter (summed over the batch for an unbatched one).

    Raises
    ------
    ValueError
        When an incoming gradient holds NaN or inf (the output and the batch element
        are named); checked before anything is solved.
    cvxlpgd.SolverError
        When an LPGD re-solve fails.
    """
    options, _ = layer._call_options(key)
    arguments = check_arguments(layer._specs, tensors)
    batch_size = int(solution[0].shape[0])
    unbatched = not any(arguments.batched)
    incoming = []
    for label, grad in zip(layer._output_labels, grads):
        array = grad.detach().to("cpu", torch.float64).numpy()
        array = array[None] if unbatched else array
        _check_finite(label, array, unbatched)
        incoming.append(array)
    state = layer._live_calls.get(int(stamp))
    rebuilt = state is None or state.batch.batch_size != batch_size
    if rebuilt:
        state = _rebuild_state(layer, key, tensors, solution)
    template = state.template
    dx, dy = template.output_adjoint(incoming, batch_size)
    data_grad = layer._engine(arguments.device).backward(state, dx, dy, options, layer)
    param_grads = template.parameter_gradient(*data_grad.parts())
    if rebuilt:  # no graph holds this state: its call ends here
        _release_workspaces(layer, state)
    return [torch.from_numpy(np.array(grad if batched else grad.sum(axis=0), order="C"))
            for grad, batched in zip(param_grads, arguments.batched)]


def fake_gradients(tensors) -> list[torch.Tensor]:
    """Empty float64 CPU tensors shaped as the parameters (``torch.compile`` tracing).

    Parameters
    ----------
    tensors : list of torch.Tensor

    Returns
    -------
    list of torch.Tensor
    """
    return [torch.empty(tuple(t.shape), dtype=torch.float64) for t in tensors]


def _check_finite(label: str, grad: np.ndarray, unbatched: bool) -> None:
    """NaN/inf in an incoming gradient: name the output and the batch element."""
    flat = grad.reshape(grad.shape[0], -1)
    bad = np.flatnonzero(~np.all(np.isfinite(flat), axis=1))
    if bad.size:
        where = "" if unbatched else f" at batch index {int(bad[0])}"
        if not unbatched and bad.size > 1:
            where += f" (and {bad.size - 1} more)"
        raise ValueError(f"the incoming gradient of output {label} holds NaN or inf{where}; "
                         "the loss or an earlier backward step produced it, so nothing "
                         "was solved")


class _Prepared:
    """A call's options, checked inputs, template, program data and engine."""

    def __init__(self, layer, key: str, tensors):
        self.options, self.needs_grad = layer._call_options(key)
        self.inputs = check_inputs(layer._specs, tensors)
        self.exact_backend = _exact_backend(layer, self.options, self.needs_grad)
        lpgd = self.needs_grad and self.options.gradient == "lpgd"
        #: The LPGD τ the forward solve prepares for (interior-point tolerances).
        self.lpgd_tau = self.options.tau if lpgd else None
        self.template = layer._template(quadratic=layer._solves_quadratic(self.exact_backend))
        theta = self.template.stack_parameters(self.inputs.values, self.inputs.batch_size)
        self.batch = self.template.program_data(theta, self.inputs.batched)
        self.engine = layer._engine(self.inputs.device)


def _rebuild_state(layer, key: str, tensors, solution) -> ForwardState:
    """The forward state of a call from its tensors (see the module docstring)."""
    call = _Prepared(layer, key, tensors)
    template, engine, options = call.template, call.engine, call.options
    recipe = layer._recipes.get((key, engine.device))
    if recipe is None:  # no forward of this call ran here: pick as the forward would
        name, args = engine.resolve(template.structure, call.batch.batch_size,
                                    call.batch.shared_matrices, options.solver_args,
                                    call.exact_backend)
        recipe = (name, engine.call_settings(name, args, call.lpgd_tau, call.exact_backend,
                                             template.structure.cones),
                  args)
    name, settings, args = recipe
    solver = engine.batch_solver(template, "forward", template.structure, name, settings,
                                 enable_grad=call.exact_backend == "moreau")
    x, y, s = (t.detach().to("cpu", torch.float64).numpy() for t in solution)
    B = x.shape[0]
    point = BatchSolution(x=x, y=y, s=s, status=["optimal"] * B,
                          iterations=np.zeros(B, dtype=np.int64), solve_time=np.zeros(B),
                          solver=name)
    # moreau_solves=-1: Moreau's derivative belongs to another solve, so it re-solves.
    # A reuse record marked as used: a solver that carries state between solves (SCS)
    # replays the (cold) forward solves first, as a repeated backward pass does.
    return ForwardState(template, call.batch, point, solver, settings,
                        reuse={"used_by_backward": True},
                        exact_backend=call.exact_backend, exact_mode=options.exact_mode,
                        moreau_solves=-1,
                        tolerance=engine.tolerance(template, name, settings),
                        call_args=args, lpgd_tau=call.lpgd_tau,
                        chain=fallback_chain(name, template.structure, engine.fallback))
