"""The layer's autograd boundary: two custom operators and the functions around them.

``torch.ops.cvxlpgd.solve`` and ``torch.ops.cvxlpgd.backward`` (registered with
:func:`torch.library.custom_op`) run a call's forward solve and its backward pass
(:mod:`cvxlpgd.torch.calls`). They take tensors, an int naming the layer (its entry in a
registry of live layers) and a string naming the call's options, so that:

* ``torch.compile`` sees two opaque operators with known output shapes (their fake
  implementations) instead of tracing into NumPy, SciPy and the solvers;
* ``torch.func`` transforms go through :class:`LayerFunction` and
  :class:`BackwardFunction`, ``torch.autograd.Function`` subclasses with a
  ``setup_context`` and ``vmap`` rules: ``vmap`` over the layer becomes one call on
  the flattened batch, and ``jacrev`` (``vmap`` over the backward pass) one backward
  pass on the batch tiled once per output entry.

The layer is first order: differentiating its backward pass (``create_graph=True``
followed by another backward, ``torch.autograd.functional.hessian``,
``torch.func.hessian``) or forward-mode AD (``jvp``, ``jacfwd``) raises
:class:`FirstOrderOnlyError`.
"""

from __future__ import annotations

import itertools
import weakref

import torch

from cvxlpgd.torch.calls import backward_call, fake_gradients, fake_outputs, solve_call

#: Extra outputs of the solve operator after the requested ones: x, y, s and the stamp.
SOLUTION_OUTPUTS = 4

_LAYERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_HANDLES = itertools.count(1)


class FirstOrderOnlyError(RuntimeError):
    """Raised when a derivative of the layer's gradient is requested (it is first order)."""


def register(layer) -> int:
    """A new handle for ``layer`` (held weakly; a copy or unpickled layer gets its own).

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer

    Returns
    -------
    int
    """
    handle = next(_HANDLES)
    _LAYERS[handle] = layer
    return handle


def lookup(handle: int):
    """The layer registered under ``handle``.

    Raises
    ------
    RuntimeError
        When that layer no longer exists.
    """
    layer = _LAYERS.get(handle)
    if layer is None:
        raise RuntimeError(
            f"the CvxpyLayer of this call (handle {handle}) no longer exists; "
            "keep the layer alive until its backward pass has run"
        )
    return layer


@torch.library.custom_op("cvxlpgd::solve", mutates_args=())
def solve_op(handle: int, key: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Forward solve of one call: outputs, then x, y, s and the stamp."""
    return solve_call(lookup(handle), key, tensors)


@solve_op.register_fake
def _solve_fake(handle, key, tensors):
    return fake_outputs(lookup(handle), key, tensors)


@torch.library.custom_op("cvxlpgd::backward", mutates_args=())
def backward_op(
    handle: int,
    key: str,
    tensors: list[torch.Tensor],
    solution: list[torch.Tensor],
    stamp: torch.Tensor,
    grads: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Backward pass of one call: a float64 CPU gradient per parameter."""
    return backward_call(lookup(handle), key, tensors, solution, stamp, grads)


@backward_op.register_fake
def _backward_fake(handle, key, tensors, solution, stamp, grads):
    return fake_gradients(tensors)


def call_layer(layer, key: str, tensors) -> tuple[torch.Tensor, ...]:
    """Run one call of ``layer`` through autograd; return the requested outputs.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
    key : str
        The call's options.
    tensors : sequence of torch.Tensor

    Returns
    -------
    tuple of torch.Tensor
    """
    function = LayerFunction if torch.compiler.is_compiling() else EagerLayerFunction
    outputs = function.apply(layer._handle, key, *tensors)
    return tuple(outputs[:-SOLUTION_OUTPUTS])


def _first_order_only(what: str):
    raise FirstOrderOnlyError(
        f"{what}: a CvxpyLayer is differentiable to first order only (its backward pass "
        "solves perturbed or adjoint problems and is not itself differentiated); use "
        "first-order reverse mode (backward, torch.autograd.grad, torch.func.grad/vjp/jacrev)"
    )


class LayerFunction(torch.autograd.Function):
    """Forward solve with the layer's backward pass (see the module docstring)."""

    @staticmethod
    def forward(handle, key, *tensors):
        return tuple(solve_op(handle, key, list(tensors)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        handle, key, *tensors = inputs
        ctx.handle, ctx.key, ctx.num_tensors = handle, key, len(tensors)
        if not torch.compiler.is_compiling():
            # The graph keeps its layer alive, as it keeps any module's weights.
            # (A compiled graph does not need to: the compiled module holds the layer.)
            ctx.layer = lookup(handle)
        ctx.save_for_backward(*tensors, *output[-SOLUTION_OUTPUTS:])
        ctx.mark_non_differentiable(*output[-SOLUTION_OUTPUTS:])

    @staticmethod
    def backward(ctx, *grads):
        saved = ctx.saved_tensors
        tensors = saved[: ctx.num_tensors]
        grads = grads[:-SOLUTION_OUTPUTS]
        if torch.compiler.is_compiling():
            # Traced once into the compiled backward graph: the operator itself (no vmap
            # or double backward there, and no int arguments, which Dynamo would lift).
            param_grads = backward_op(
                ctx.handle,
                ctx.key,
                list(tensors),
                list(saved[ctx.num_tensors : -1]),
                saved[-1],
                list(grads),
            )
        else:
            param_grads = BackwardFunction.apply(
                ctx.handle, ctx.key, ctx.num_tensors, *tensors, *saved[ctx.num_tensors :], *grads
            )
        return (
            None,
            None,
            *(
                grad.to(dtype=t.dtype, device=t.device) if needed else None
                for grad, t, needed in zip(param_grads, tensors, ctx.needs_input_grad[2:])
            ),
        )

    @staticmethod
    def vmap(info, in_dims, handle, key, *tensors):
        layer = lookup(handle)
        batch = _VmapBatch(layer, info.batch_size, tensors, in_dims[2:])
        outputs = LayerFunction.apply(
            handle, key, *batch.flatten_inputs(tensors, in_dims[2:], expand_all=False)
        )
        requested = [batch.unflatten(out) for out in outputs[:-SOLUTION_OUTPUTS]]
        solution = [
            batch.unflatten(out, always_batched=True) for out in outputs[-SOLUTION_OUTPUTS:-1]
        ]
        values = (*requested, *solution, outputs[-1])
        return values, (*(0 for _ in range(len(values) - 1)), None)


class BackwardFunction(torch.autograd.Function):
    """The backward pass as a function of its own, so that it is batched under ``vmap``
    and refuses to be differentiated."""

    @staticmethod
    def forward(handle, key, num_tensors, *args):
        tensors, rest = args[:num_tensors], args[num_tensors:]
        solution, stamp, grads = rest[:3], rest[3], rest[4:]
        return tuple(backward_op(handle, key, list(tensors), list(solution), stamp, list(grads)))

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        _first_order_only(
            "a derivative of the gradient (create_graph=True, double "
            "backward, hessian) was requested"
        )

    @staticmethod
    def jvp(ctx, *tangents):
        _first_order_only(
            "forward-mode differentiation of the gradient (jvp, jacfwd, "
            "torch.func.hessian) is not supported"
        )

    @staticmethod
    def vmap(info, in_dims, handle, key, num_tensors, *args):
        layer = lookup(handle)
        tensors, solution = args[:num_tensors], args[num_tensors : num_tensors + 3]
        grads = args[num_tensors + 4 :]
        tensor_dims = in_dims[3 : 3 + num_tensors]
        solution_dims = in_dims[3 + num_tensors : 6 + num_tensors]
        grad_dims = in_dims[7 + num_tensors :]
        batch = _VmapBatch(layer, info.batch_size, tensors, tensor_dims)
        # Every parameter batched, so that each element's gradient comes back on its own.
        flat_tensors = batch.flatten_inputs(tensors, tensor_dims, expand_all=True)
        flat_solution = [batch.flatten_solution(t, d) for t, d in zip(solution, solution_dims)]
        flat_grads = [batch.flatten_output(g, d) for g, d in zip(grads, grad_dims)]
        stamp = torch.tensor(-1, dtype=torch.int64)  # a re-batched call: rebuild its state
        flat = BackwardFunction.apply(
            handle, key, num_tensors, *flat_tensors, *flat_solution, stamp, *flat_grads
        )
        grads_out = [batch.fold_gradient(g, i) for i, g in enumerate(flat)]
        return tuple(grads_out), tuple(0 for _ in grads_out)


class EagerLayerFunction(LayerFunction):
    """:class:`LayerFunction` with a forward-mode rule that refuses (``torch.compile``
    cannot trace an ``autograd.Function`` that defines ``jvp``)."""

    @staticmethod
    def jvp(ctx, *tangents):
        _first_order_only(
            "forward-mode differentiation (jvp, jacfwd, torch.func.hessian) is not supported"
        )


class _VmapBatch:
    """Maps a ``vmap`` of K over a call with logical batch B (or none) to one call of K·B.

    Inside ``vmap`` a parameter tensor is *physically* (K, B, *shape), (K, *shape),
    (B, *shape) or (*shape) once the vmapped dimension is moved to the front; the
    layer sees one batch of K·B elements (K when the call itself is unbatched).
    """

    def __init__(self, layer, K: int, tensors, dims):
        self.K = K
        self.specs = layer._specs
        #: Per parameter: whether the call (inside vmap) has it with a batch dimension.
        self.batched = [
            t.dim() - (d is not None) == len(spec.shape) + 1
            for t, d, spec in zip(tensors, dims, self.specs)
        ]
        sizes = {_front(t, d).shape[1] for t, d, flag in zip(tensors, dims, self.batched) if flag}
        #: The logical batch size B, or None for an unbatched call.
        self.B = next(iter(sizes), None)
        self.inner = 1 if self.B is None else self.B

    def flatten_inputs(self, tensors, dims, *, expand_all: bool) -> list[torch.Tensor]:
        """The parameters of the flattened call (unvmapped, unbatched ones stay shared
        unless ``expand_all``)."""
        out = []
        for t, d, spec, batched in zip(tensors, dims, self.specs, self.batched):
            if d is None and not batched and not expand_all:
                out.append(t)
                continue
            t = _front(t, d)
            if not batched:
                t = t.unsqueeze(1)
            t = t.expand(self.K, self.inner, *spec.shape)
            out.append(t.reshape(self.K * self.inner, *spec.shape))
        return out

    def unflatten(self, out: torch.Tensor, always_batched: bool = False) -> torch.Tensor:
        """A flattened call's output (K·B, ...) as (K, B, ...), or (K, ...) unbatched."""
        if self.B is None and not always_batched:
            return out
        return out.reshape(self.K, self.inner, *out.shape[1:])

    def flatten_solution(self, t: torch.Tensor, d) -> torch.Tensor:
        """x, y or s ((B, n) in the call) for the flattened call: tiled when not vmapped."""
        t = _front(t, d).expand(self.K, self.inner, t.shape[-1])
        return t.reshape(self.K * self.inner, t.shape[-1])

    def flatten_output(self, g: torch.Tensor, d) -> torch.Tensor:
        """An incoming gradient for the flattened (batched) call."""
        g = _front(g, d)
        if self.B is None:
            g = g.unsqueeze(1)
        g = g.expand(self.K, self.inner, *g.shape[2:])
        return g.reshape(self.K * self.inner, *g.shape[2:])

    def fold_gradient(self, g: torch.Tensor, index: int) -> torch.Tensor:
        """Per-element gradients (K·B, *shape) as (K, B, *shape), or summed over B to
        (K, *shape) for a parameter the call has without batch dimension."""
        g = g.reshape(self.K, self.inner, *g.shape[1:])
        return g if self.batched[index] else g.sum(dim=1)


def _front(t: torch.Tensor, d) -> torch.Tensor:
    """``t`` with its vmapped dimension first (size-K dimension added by expand if none)."""
    return t.unsqueeze(0) if d is None else t.movedim(d, 0)
