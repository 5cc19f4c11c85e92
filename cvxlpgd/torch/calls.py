"""One call of a layer in tensors: the forward solve and the backward pass.

These functions are the bodies of the layer's custom operators
(:mod:`cvxlpgd.torch.operators`). They take and return plain tensors, so that the operators
are opaque to ``torch.compile`` and to ``torch.func``, and hand NumPy arrays to the layer's
:class:`cvxlpgd.engine.runtime.LayerRuntime`:

* :func:`solve_call` returns the requested outputs and, as extra tensors, the
  forward solution ``(x, y, s)`` (float64, one row per element) and a *stamp*.
* :func:`backward_call` gets the call's parameter tensors, that solution, the stamp
  and the incoming gradients, and returns one gradient per parameter.

What the backward pass needs beyond those tensors (the solver workspaces of the
forward solve, Moreau's derivative of its last solve, the statistics record) the
runtime keeps under the stamp, and only as long as the stamp tensor lives: autograd
holds it while the graph exists and drops it with the graph, and a finalizer then
tells the runtime to forget it. A backward pass that does not find its state rebuilds
it from the tensors (:meth:`cvxlpgd.engine.runtime.LayerRuntime.rebuild`).
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from cvxlpgd.torch.inputs import check_arguments, check_inputs

#: The stamp of a call whose state is not kept (no backward pass may follow).
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
    kind = layer._call_kind(key)
    inputs = check_inputs(layer._specs, tensors)
    where = layer._where(inputs.device)
    runtime = layer._runtime
    state = runtime.solve(kind, key, inputs.values, inputs.batched, inputs.batch_size, where)
    layer._stats = state.stats
    unbatched = not any(inputs.batched)
    outputs = []
    for array in kind.template.recover_outputs(state.x, state.y):
        array = array[0] if unbatched else array
        outputs.append(
            torch.from_numpy(np.array(array, order="C")).to(
                dtype=inputs.dtype, device=inputs.device
            )
        )
    solution = [
        torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        for a in (state.x, state.y, state.s)
    ]
    if not kind.needs_grad:
        runtime.release_workspaces(state)
        return [*outputs, *solution, torch.tensor(NO_STAMP, dtype=torch.int64)]
    stamp = runtime.keep(state, inputs.batched, where)
    stamp_tensor = torch.tensor(stamp, dtype=torch.int64)
    # The state lives as long as the stamp tensor, which autograd keeps with the graph.
    weakref.finalize(stamp_tensor, runtime.forget, stamp)
    return [*outputs, *solution, stamp_tensor]


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
    template = layer._call_kind(key).template
    arguments = check_arguments(layer._specs, tensors)
    B = arguments.batch_size
    lead = (B,) if any(arguments.batched) else ()
    outputs = [
        torch.empty((*lead, *slot.shape), dtype=arguments.dtype, device=arguments.device)
        for slot in template.outputs
    ]
    solution = [
        torch.empty((B, size), dtype=torch.float64) for size in (template.n, template.m, template.m)
    ]
    return [*outputs, *solution, torch.empty((), dtype=torch.int64)]


def backward_call(
    layer,
    key: str,
    tensors: list[torch.Tensor],
    solution: list[torch.Tensor],
    stamp: torch.Tensor,
    grads: list[torch.Tensor],
) -> list[torch.Tensor]:
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
    kind = layer._call_kind(key)
    runtime = layer._runtime
    batch_size = int(solution[0].shape[0])
    live = runtime.live.get(int(stamp))
    rebuilt = live is None or live.state.batch.batch_size != batch_size
    if rebuilt:
        inputs = check_inputs(layer._specs, tensors)
        batched, where = inputs.batched, layer._where(inputs.device)
    else:
        batched, where = list(live.batched), live.where
    unbatched = not any(batched)
    incoming = []
    for label, grad in zip(layer._output_labels, grads):
        array = grad.detach().to("cpu", torch.float64).numpy()
        array = array[None] if unbatched else array
        _check_finite(label, array, unbatched)
        incoming.append(array)
    if rebuilt:
        state = runtime.rebuild(
            kind,
            key,
            inputs.values,
            batched,
            batch_size,
            [t.detach().to("cpu", torch.float64).numpy() for t in solution],
            where,
        )
    else:
        state = live.state
    param_grads = runtime.gradients(kind, state, incoming, where)
    if rebuilt:  # no graph holds this state: its call ends here
        runtime.release_workspaces(state)
    return [
        torch.from_numpy(np.array(grad if flag else grad.sum(axis=0), order="C"))
        for grad, flag in zip(param_grads, batched)
    ]


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
        raise ValueError(
            f"the incoming gradient of output {label} holds NaN or inf{where}; "
            "the loss or an earlier backward step produced it, so nothing "
            "was solved"
        )
