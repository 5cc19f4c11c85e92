"""Checking the tensors of a call against the layer's parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Inputs:
    """Parameter values of one call as float64 arrays, with batch and tensor facts."""

    values: list[np.ndarray]
    batched: list[bool]
    batch_size: int
    dtype: torch.dtype
    device: torch.device


def check_inputs(parameters, tensors) -> Inputs:
    """Validate one tensor per parameter; return their values as float64 NumPy arrays.

    Raises
    ------
    TypeError, ValueError
        Naming the parameter and what was expected (count, type, shape, batch size,
        finiteness, declared sign or symmetry, one device).
    """
    if len(tensors) != len(parameters):
        names = ", ".join(p.name() for p in parameters)
        raise ValueError(f"expected {len(parameters)} tensors (for {names}), got {len(tensors)}")
    batch_sizes, values, batched = {}, [], []
    for param, tensor in zip(parameters, tensors):
        name = param.name()
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"parameter {name!r} must be a torch.Tensor, "
                            f"got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"parameter {name!r} must be a floating-point tensor, "
                            f"got {tensor.dtype}")
        shape = tuple(param.shape)
        got = tuple(tensor.shape)
        if got == shape:
            batched.append(False)
        elif len(got) == len(shape) + 1 and got[1:] == shape:
            batched.append(True)
            batch_sizes[name] = got[0]
        else:
            raise ValueError(f"parameter {name!r} must have shape {shape} or (batch, "
                             f"{', '.join(map(str, shape))}), got {got}")
        value = tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {name!r} has non-finite values (nan or inf)")
        _check_attributes(param, value, batched[-1])
        values.append(value)
    if len(set(batch_sizes.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in batch_sizes.items())
        raise ValueError(f"inconsistent batch sizes ({detail})")
    batch_size = next(iter(batch_sizes.values()), 1)
    if batch_size == 0:
        raise ValueError("batch size is 0: nothing to solve")
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all parameters must be on one device, got {sorted(map(str, devices))}")
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else tensors[0].dtype
    return Inputs(values, batched, batch_size, dtype, tensors[0].device)


def _check_attributes(param, value: np.ndarray, batched: bool) -> None:
    """Values must respect the parameter's declared sign/symmetry (DPP relies on them)."""
    name = param.name()
    attrs = param.attributes
    if attrs.get("nonneg") and np.any(value < 0):
        raise ValueError(f"parameter {name!r} is declared nonneg but has negative values")
    if attrs.get("nonpos") and np.any(value > 0):
        raise ValueError(f"parameter {name!r} is declared nonpos but has positive values")
    if any(attrs.get(a) for a in ("symmetric", "PSD", "NSD")):
        matrices = value if batched else value[None]
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), atol=1e-8):
            raise ValueError(f"parameter {name!r} is declared symmetric but its value is not")
        if attrs.get("PSD") and np.min(np.linalg.eigvalsh(matrices)) < -1e-8:
            raise ValueError(f"parameter {name!r} is declared PSD but has a negative eigenvalue")
        if attrs.get("NSD") and np.max(np.linalg.eigvalsh(matrices)) > 1e-8:
            raise ValueError(f"parameter {name!r} is declared NSD but has a positive eigenvalue")
