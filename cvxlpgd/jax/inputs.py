"""Checking the arrays of a JAX call against the layer's parameters.

:func:`check_shapes` looks at what an argument *is* (its shape and dtype; it runs at
trace time, on tracers too); the host callback then checks what it *holds* with
:func:`cvxlpgd.problem.parameters.checked_values`, the checks the PyTorch layer applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvxlpgd.problem.parameters import batch_layout, check_count


@dataclass(frozen=True)
class CallShape:
    """What the arguments of a call are: batch flags, batch size and dtype.

    Attributes
    ----------
    batched : tuple of bool
        Whether each argument has a leading batch dimension.
    batch_size : int
        B (1 for an unbatched call).
    dtype : numpy.dtype
        The outputs' dtype.
    """

    batched: tuple[bool, ...]
    batch_size: int
    dtype: np.dtype

    @property
    def any_batched(self) -> bool:
        """Whether the outputs have a batch dimension."""
        return any(self.batched)


def check_shapes(specs, arguments, default_dtype) -> CallShape:
    """Check count, dtype and shape of one array per parameter.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    arguments : sequence
        Objects with ``shape`` and ``dtype`` (arrays or tracers), one per parameter.
    default_dtype : numpy.dtype
        The outputs' dtype of a call without parameters.

    Returns
    -------
    CallShape
        The dtype is float64 if any argument is float64, else the first argument's.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter and what was expected.
    """
    check_count(specs, arguments, "tensor")
    for spec, argument in zip(specs, arguments):
        if not np.issubdtype(argument.dtype, np.floating):
            raise TypeError(
                f"parameter {spec.label} must be a floating-point array, got {argument.dtype}"
            )
    batched, batch_size = batch_layout(specs, [tuple(int(d) for d in a.shape) for a in arguments])
    dtypes = [np.dtype(a.dtype) for a in arguments]
    if not dtypes:
        dtype = np.dtype(default_dtype)
    else:
        dtype = np.dtype(np.float64) if np.dtype(np.float64) in dtypes else dtypes[0]
    return CallShape(tuple(batched), batch_size, dtype)
