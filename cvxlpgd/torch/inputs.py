"""Checking the tensors of a call against the layer's parameters.

Two stages: :func:`check_arguments` looks at what a tensor *is* (type, dtype, device,
shape; it also runs on the fake tensors ``torch.compile`` traces with), and
:func:`check_inputs` adds what it *holds* (finite values, declared sign or symmetry)
and converts the values to float64 NumPy arrays for the solvers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cvxlpgd.problem.parameters import batch_layout, check_count, checked_values


@dataclass
class Arguments:
    """What the tensors of a call are: batch flags, batch size, dtype and device."""

    batched: list[bool]
    batch_size: int
    dtype: torch.dtype
    device: torch.device


@dataclass
class Inputs(Arguments):
    """Parameter values of one call as float64 arrays, with batch and tensor facts."""

    values: list[np.ndarray] = field(default_factory=list)


def check_arguments(specs, tensors) -> Arguments:
    """Check count, type, dtype, device and shape of one tensor per parameter.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    tensors : sequence
        The call's arguments.

    Returns
    -------
    Arguments
        A call without parameters is unbatched, float64, on the CPU.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter and what was expected.
    """
    check_count(specs, tensors, "tensor")
    for spec, tensor in zip(specs, tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"parameter {spec.label} must be a torch.Tensor, got {type(tensor).__name__}"
            )
        if not tensor.is_floating_point():
            raise TypeError(
                f"parameter {spec.label} must be a floating-point tensor, got {tensor.dtype}"
            )
        if tensor.device.type == "meta":
            raise ValueError(
                f"parameter {spec.label} is a meta tensor (a shape without "
                "values); the layer solves for values, so pass a tensor on "
                "the CPU or a GPU"
            )
    batched, batch_size = batch_layout(specs, [tuple(t.shape) for t in tensors])
    if not tensors:
        return Arguments(batched, 1, torch.float64, torch.device("cpu"))
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all parameters must be on one device, got {sorted(map(str, devices))}")
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else tensors[0].dtype
    return Arguments(batched, batch_size, dtype, tensors[0].device)


def check_inputs(specs, tensors) -> Inputs:
    """Validate one tensor per parameter; return their values as float64 NumPy arrays.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    tensors : sequence of torch.Tensor

    Returns
    -------
    Inputs

    Raises
    ------
    TypeError, ValueError
        Naming the parameter and what was expected (count, type, shape, batch size,
        finiteness, declared sign or symmetry, one device).
    """
    arguments = check_arguments(specs, tensors)
    values = checked_values(
        specs,
        [t.detach().to(device="cpu", dtype=torch.float64).numpy() for t in tensors],
        arguments.batched,
    )
    return Inputs(**vars(arguments), values=values)
