"""One kind of call of the JAX layer, in NumPy terms: the bodies of its host callbacks.

The JAX layer (:mod:`cvxlpgd.jax.layer`) calls three functions of a :class:`HostCall`
through ``jax.pure_callback``; they take and return NumPy arrays and import no
deep-learning framework:

* :meth:`HostCall.primal` solves and returns the requested outputs (a call that is
  not differentiated: no exact derivative or LPGD tolerances are prepared);
* :meth:`HostCall.forward` also returns the forward solution (x, y, s), one row per
  batch element, which JAX keeps as the residuals of the custom VJP;
* :meth:`HostCall.backward` takes the parameters, that solution and the incoming
  cotangents, rebuilds the engine's forward state from them (the program data from
  the parameters, by the same affine maps; the solver from the forward's recipe) and
  returns one gradient per parameter, θ̄ = Tᵀ D̄(x̄, ȳ) (T: the affine map
  θ ↦ (c, b, A, P); D̄: the LPGD or exact data gradient of the cotangents x̄, ȳ),
  summed over the layer's batch for an unbatched parameter.

Under ``jax.vmap`` (``vmap_method="expand_dims"``) each array arrives with extra
leading axes, of size 1 for an argument that is not mapped. The functions broadcast
those axes V against each other and flatten them, with the layer's own batch axis B,
into one batch of N = ∏V · B elements: a vmapped call is one batched solve, and
``jacrev`` one backward pass on the tiled batch.

Without ``jax_enable_x64`` the float64 solution travels as two float32 arrays,
x = x_hi + x_lo, so that the backward pass starts from the forward solution to about
1e-14 relative, not float32's 1e-7.
"""

from __future__ import annotations

import numpy as np

from cvxlpgd.jax.inputs import CallShape
from cvxlpgd.problem.parameters import checked_values


class HostCall:
    """The host side of one kind of call (options and argument shapes fixed).

    Parameters
    ----------
    layer : cvxlpgd.jax.CvxpyLayer
    key : str
        Names the call's options (recipes are kept under it).
    options : cvxlpgd.engine.options.CallOptions
        The call's options.
    shape : CallShape
        The arguments' batch flags, batch size and the outputs' dtype.
    solution_dtype : numpy.dtype
        float64, or float32 (then the solution travels as hi + lo parts).
    """

    def __init__(self, layer, key: str, options, shape: CallShape, solution_dtype):
        self.layer = layer
        self.key = key
        self.options = options
        self.shape = shape
        self.solution_dtype = np.dtype(solution_dtype)
        self.parts = 1 if self.solution_dtype == np.float64 else 2
        runtime = layer._runtime
        #: The differentiated call (its key also names the forward recipes).
        self.recipe_key = f"{key}:grad"
        self.grad_kind = runtime.kind(self.recipe_key, options, True)
        self.primal_kind = runtime.kind(f"{key}:primal", options, False)
        self.grad_template = self.grad_kind.template
        self.primal_template = self.primal_kind.template

    # ---- callbacks -----------------------------------------------------------------------

    def primal(self, *arrays) -> tuple[np.ndarray, ...]:
        """Outputs of a call that is not differentiated (the arguments of :meth:`forward`).

        Returns
        -------
        tuple of numpy.ndarray
        """
        outputs, _ = self._solve(arrays, with_grad=False)
        return outputs

    def forward(self, *arrays) -> tuple[np.ndarray, ...]:
        """Outputs, then the solution x (…, B, n), y (…, B, m), s (…, B, m) in parts.

        Parameters
        ----------
        *arrays : array_like
            One per parameter (with leading vmap axes, if any).

        Returns
        -------
        tuple of numpy.ndarray
        """
        outputs, solution = self._solve(arrays, with_grad=True)
        return (*outputs, *solution)

    def backward(self, *arrays) -> tuple[np.ndarray, ...]:
        """Gradients of the parameters from parameters, solution parts and cotangents.

        Parameters
        ----------
        *arrays : array_like
            The parameters, the solution parts (as :meth:`forward` returned them) and
            one cotangent per output, in that order.

        Returns
        -------
        tuple of numpy.ndarray
            One gradient per parameter, of its shape (plus the vmap axes).

        Raises
        ------
        ValueError
            When a cotangent holds NaN or inf (the output is named).
        """
        host_arrays = [np.asarray(a) for a in arrays]
        p = len(self.shape.batched)
        params, rest = host_arrays[:p], host_arrays[p:]
        solution, cotangents = rest[: 3 * self.parts], rest[3 * self.parts :]
        template = self.grad_template
        lead = self._lead(params, solution, cotangents)
        values, batched, N = self._elements(params, lead)
        x, y, s = (
            self._rows(
                sum(
                    solution[i * self.parts : (i + 1) * self.parts][j].astype(np.float64)
                    for j in range(self.parts)
                ),
                lead,
                True,
                (size,),
            )
            for i, size in enumerate((template.n, template.m, template.m))
        )
        incoming = []
        for label, slot, grad in zip(self.layer._output_labels, template.outputs, cotangents):
            grad = self._rows(grad.astype(np.float64), lead, self.shape.any_batched, slot.shape)
            if not np.all(np.isfinite(grad)):
                raise ValueError(
                    f"the incoming cotangent of output {label} holds NaN or inf; "
                    "the loss or an earlier backward step produced it, so "
                    "nothing was solved"
                )
            incoming.append(grad)
        runtime, kind = self.layer._runtime, self.grad_kind
        state = runtime.rebuild(kind, self.recipe_key, values, batched, N, (x, y, s))
        grads = []
        B = self.shape.batch_size
        for grad, spec, was_batched, param in zip(
            runtime.gradients(kind, state, incoming), self.layer._specs, self.shape.batched, params
        ):
            grad = grad.reshape((*lead, B, *spec.shape))
            if not was_batched:
                grad = grad.sum(axis=len(lead))
            grads.append(np.asarray(grad, dtype=param.dtype, order="C"))
        return tuple(grads)

    # ---- helpers -------------------------------------------------------------------------

    def _solve(self, arrays, with_grad: bool):
        """Forward solve of every element; outputs and (with_grad) solution parts."""
        arrays = [np.asarray(a) for a in arrays]
        lead = self._lead(arrays)
        values, batched, N = self._elements(arrays, lead)
        kind = self.grad_kind if with_grad else self.primal_kind
        state = self.layer._runtime.solve(kind, self.recipe_key, values, batched, N)
        self.layer._stats = state.stats
        template = kind.template
        B = self.shape.batch_size
        out_lead = (*lead, B) if self.shape.any_batched else lead
        outputs = tuple(
            np.asarray(a.reshape((*out_lead, *slot.shape)), dtype=self.shape.dtype, order="C")
            for a, slot in zip(template.recover_outputs(state.x, state.y), template.outputs)
        )
        if not with_grad:
            return outputs, ()
        solution = []
        for array in (state.x, state.y, state.s):
            array = np.asarray(array, dtype=np.float64).reshape((*lead, B, array.shape[1]))
            hi = array.astype(self.solution_dtype)
            solution.append(hi)
            if self.parts == 2:
                solution.append((array - hi.astype(np.float64)).astype(self.solution_dtype))
        return outputs, tuple(solution)

    def _lead(self, params, solution=(), cotangents=()) -> tuple[int, ...]:
        """The vmap axes V of all arrays, broadcast against each other.

        Cores: a parameter's shape (after B when batched), B × size for the solution
        parts, an output's shape (after B when the call is batched) for cotangents.
        """
        leads = [
            a.shape[: a.ndim - len(spec.shape) - int(batched)]
            for spec, batched, a in zip(self.layer._specs, self.shape.batched, params)
        ]
        leads += [a.shape[: a.ndim - 2] for a in solution]
        leads += [
            a.shape[: a.ndim - len(slot.shape) - int(self.shape.any_batched)]
            for slot, a in zip(self.grad_template.outputs, cotangents)
        ]
        return tuple(np.broadcast_shapes(*leads)) if leads else ()

    def _elements(self, params, lead):
        """Parameter values of the N = prod(V)·B elements, their batch flags and N."""
        B = self.shape.batch_size
        values, batched = [], []
        for spec, was_batched, a in zip(self.layer._specs, self.shape.batched, params):
            k = a.ndim - len(spec.shape) - int(was_batched)
            if not was_batched and all(d == 1 for d in a.shape[:k]):
                values.append(a.reshape(spec.shape))
                batched.append(False)
            else:
                values.append(self._rows(a, lead, was_batched, spec.shape))
                batched.append(True)
        N = int(np.prod(lead, dtype=np.int64)) * B
        return checked_values(self.layer._specs, values, batched), batched, N

    def _rows(self, a, lead, was_batched: bool, core):
        """``a`` of shape (*lead_a, [B], *core) as (N, *core) rows, broadcast over V."""
        k = a.ndim - len(core) - int(was_batched)
        if not was_batched:
            a = a.reshape((*a.shape[:k], 1, *core))
        full = (*lead, self.shape.batch_size, *core)
        return np.broadcast_to(a, full).reshape((-1, *core))
