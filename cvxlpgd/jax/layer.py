r"""The JAX layer: a ``jax.custom_vjp`` around host callbacks into the batch engine.

A call is one ``jax.pure_callback`` (``vmap_method="expand_dims"``) that solves the
batch on the host with :class:`cvxlpgd.engine.batch.BatchEngine`; its VJP is a
second callback that computes the LPGD gradient or the exact derivative
(:mod:`cvxlpgd.jax.host`). The callbacks are opaque to JAX, so the layer works under
``jax.jit``, ``jax.grad``, ``jax.vjp``, ``jax.jacrev`` and ``jax.vmap`` (one batched
solve); forward-mode differentiation (``jax.jvp``, ``jacfwd``) is not defined.
"""

from __future__ import annotations

import json
from concurrent.futures import Executor
from typing import Any

import numpy as np

from cvxlpgd.engine.compiled import CompiledProblem
from cvxlpgd.engine.runtime import LayerRuntime
from cvxlpgd.engine.state import SolverStats
from cvxlpgd.jax.host import HostCall
from cvxlpgd.jax.inputs import check_shapes
from cvxlpgd.problem.parameters import checked_values

jax: Any
jnp: Any
try:  # the module imports without JAX (the docs' module walk); the layer needs it
    import jax
    import jax.numpy as jnp
except ImportError:  # pragma: no cover - exercised only where JAX is missing
    jax = jnp = None

#: Compiled call functions a layer keeps (one per options and argument shapes).
_MAX_FUNCTIONS = 256


class CvxpyLayer(CompiledProblem):
    """A parametrized CVXPY problem as a differentiable JAX function.

    The constructor's arguments and their meaning are those of the PyTorch layer
    (:class:`cvxlpgd.CvxpyLayer`): the problem is compiled once into a parametrized
    cone program, minimize c(θ)ᵀx + ½ xᵀP(θ)x subject to
    A(θ)x + s = b(θ), s ∈ K; a call solves it for a batch
    of parameter values, and its VJP is the LPGD gradient replacement
    (``gradient="lpgd"``) or the exact derivative (``gradient="exact"``).

    The constructor takes the arguments of :class:`cvxlpgd.CvxpyLayer` (``problem``,
    ``parameters``, ``variables``, then keyword-only ``gradient``, ``tau``, ``rho``,
    ``lpgd_mode``, ``exact_mode``, ``exact_backend``, ``solver``, ``solver_args``,
    ``workers``, ``executor``, ``warm_start``, ``inaccurate``, ``gp``, ``fallback``,
    ``active_set``),
    with the same defaults and meaning; JAX arrays take the place of tensors, and
    with ``gp=True`` JAX differentiates the ``log`` in and the ``exp`` out.

    Raises
    ------
    ImportError
        When JAX is not installed.
    TypeError, ValueError
        For a problem that is not DCP/DPP, parameters or outputs that do not match it,
        and invalid options.

    Notes
    -----
    Solves run on the host's CPU whatever device the arrays are on. Outputs have a
    leading batch dimension iff an input had one; their dtype is float64 if an input
    is float64 (``jax_enable_x64``), else the inputs' float dtype; without inputs,
    float64 under ``jax_enable_x64`` and float32 otherwise.
    """

    def __init__(
        self,
        problem,
        parameters,
        variables,
        *,
        gradient: str = "lpgd",
        tau: float = 0.1,
        rho: float = 0.0,
        lpgd_mode: str = "central",
        exact_mode: str = "lsqr",
        exact_backend: str = "auto",
        solver: str = "auto",
        solver_args: dict | None = None,
        workers: int | None = None,
        executor: Executor | None = None,
        warm_start: bool = False,
        inaccurate: str = "warn",
        gp: bool = False,
        fallback: bool | None = None,
        active_set: bool = True,
    ):
        if jax is None:
            raise ImportError(
                "cvxlpgd.jax.CvxpyLayer needs JAX: pip install 'cvxlpgd[jax]' "
                "(or pip install 'jax[cpu]')"
            )
        template = self._configure(
            problem,
            parameters,
            variables,
            gradient=gradient,
            tau=tau,
            rho=rho,
            lpgd_mode=lpgd_mode,
            exact_mode=exact_mode,
            exact_backend=exact_backend,
            solver=solver,
            solver_args=solver_args,
            workers=workers,
            warm_start=warm_start,
            inaccurate=inaccurate,
            gp=gp,
            fallback=fallback,
            active_set=active_set,
        )
        if executor is not None and not isinstance(executor, Executor):
            raise TypeError(
                "executor must be a concurrent.futures.Executor or None, got "
                f"{type(executor).__name__}"
            )
        self.executor = executor
        self._runtime = LayerRuntime(self, executor)
        self._functions: dict = {}
        self._stats: SolverStats | None = None
        self._logged = [slot.log_space for slot in template.parameters] if gp else None
        self._primal = [slot.source == "primal" for slot in template.outputs]

    @property
    def solver_stats(self) -> SolverStats | None:
        """Per-element status, iterations and solve time of the last forward solve, and
        which solver ran; None before the first call."""
        return self._stats

    # ---- call ----------------------------------------------------------------------------

    def __call__(
        self,
        *params,
        gradient: str | None = None,
        tau: float | None = None,
        rho: float | None = None,
        lpgd_mode: str | None = None,
        solver_args: dict | None = None,
    ) -> tuple:
        """Solve the problem for the given parameter values.

        The arguments are those of :meth:`cvxlpgd.CvxpyLayer.forward`, with JAX arrays
        (or array-likes) for tensors; outputs are JAX arrays, one per output in the
        order of ``variables``, with a leading batch dimension iff an input had one.

        Raises
        ------
        TypeError, ValueError
            For wrong counts, dtypes, shapes or batch sizes (at trace time), and for
            non-finite values or values against a parameter's declared attributes
            (eagerly for concrete arrays; inside the callback, as a JAX runtime error,
            under transformations).
        cvxlpgd.SolverError
            When a problem of the batch is not solved (as it is for an eager call; under
            a transformation, wrapped in a JAX runtime error).
        """
        arrays = [p if isinstance(p, jax.Array) else jnp.asarray(p) for p in params]
        default = np.float64 if jax.config.read("jax_enable_x64") else np.float32
        shape = check_shapes(self._specs, arrays, default)
        if self._logged is not None:
            arrays = self._log_inputs(arrays)
        if not any(isinstance(a, jax.core.Tracer) for a in arrays):  # named errors, eagerly
            checked_values(self._specs, [np.asarray(a) for a in arrays], shape.batched)
        overrides = {
            k: v
            for k, v in dict(
                gradient=gradient, tau=tau, rho=rho, lpgd_mode=lpgd_mode, solver_args=solver_args
            ).items()
            if v is not None
        }
        function = self._function(overrides, shape, arrays)
        self._host_error = None
        try:
            outputs = function(*arrays)
        except jax.errors.JaxRuntimeError as error:
            original, self._host_error = self._host_error, None
            if original is None:
                raise
            raise original from error
        if self._logged is not None:
            outputs = [jnp.exp(o) if primal else o for primal, o in zip(self._primal, outputs)]
        return tuple(outputs)

    def _log_inputs(self, arrays) -> list:
        """``log p`` for the parameters a geometric program takes in log space."""
        out = []
        for spec, logged, array in zip(self._specs, self._logged or (), arrays):
            if logged:
                if not isinstance(array, jax.core.Tracer) and not bool(jnp.all(array > 0)):
                    raise ValueError(
                        f"parameter {spec.label} must be positive (gp=True: a "
                        "geometric program's parameters enter through their "
                        f"logarithm), got min {float(jnp.min(array)):g}"
                    )
                array = jnp.log(array)
            out.append(array)
        return out

    def _function(self, overrides: dict, shape, arrays):
        """The custom-VJP function of a call's options and argument shapes (cached)."""
        try:
            key = json.dumps(overrides, sort_keys=True)
        except TypeError:
            key = repr(sorted(overrides.items()))
        x64 = bool(jax.config.read("jax_enable_x64"))
        signature = (key, x64, tuple((tuple(a.shape), np.dtype(a.dtype)) for a in arrays))
        function = self._functions.get(signature)
        if function is None:
            options = self.options.override(self.solver, **overrides) if overrides else self.options
            host = HostCall(self, key, options, shape, np.float64 if x64 else np.float32)
            function = _build(host, shape, arrays)
            if len(self._functions) >= _MAX_FUNCTIONS:
                self._functions.pop(next(iter(self._functions)))
            self._functions[signature] = function
        return function


def _build(host: HostCall, shape, arrays):
    """``jax.custom_vjp`` of the host's forward, with its backward as the VJP."""
    lead = (shape.batch_size,) if shape.any_batched else ()
    outputs = [
        jax.ShapeDtypeStruct((*lead, *slot.shape), shape.dtype)
        for slot in host.primal_template.outputs
    ]
    template = host.grad_template
    solution = [
        jax.ShapeDtypeStruct((shape.batch_size, size), host.solution_dtype)
        for size in (template.n, template.m, template.m)
        for _ in range(host.parts)
    ]
    grads = [jax.ShapeDtypeStruct(tuple(a.shape), a.dtype) for a in arrays]
    k = len(outputs)

    def callback(function, specs, *args):
        def remembered(*values):
            try:
                return function(*values)
            except Exception as error:  # JAX wraps it; an eager call re-raises it as it is
                host.layer._host_error = error
                raise

        return jax.pure_callback(remembered, specs, *args, vmap_method="expand_dims")

    if not arrays:  # nothing to differentiate
        return lambda: tuple(callback(host.primal, outputs))

    @jax.custom_vjp
    def call(*args):
        return tuple(callback(host.primal, outputs, *args))

    def forward(*args):
        result = callback(host.forward, outputs + solution, *args)
        return tuple(result[:k]), (args, tuple(result[k:]))

    def backward(residuals, cotangents):
        args, point = residuals
        return tuple(callback(host.backward, grads, *args, *point, *cotangents))

    call.defvjp(forward, backward)
    return call
