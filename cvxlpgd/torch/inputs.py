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

from cvxlpgd.problem.naming import leaf_label


@dataclass(frozen=True)
class ParameterSpec:
    """What a call needs to know of one parameter, as plain data.

    Attributes
    ----------
    label : str
        The parameter as errors name it (see :func:`cvxlpgd.problem.naming.leaf_label`).
    shape : tuple of int
        Its shape.
    attributes : tuple of str
        The declared attributes a value must respect (``"nonneg"``, ``"nonpos"``,
        ``"symmetric"``, ``"PSD"``, ``"NSD"``).
    """

    label: str
    shape: tuple[int, ...]
    attributes: tuple[str, ...]


_CHECKED_ATTRIBUTES = ("nonneg", "nonpos", "symmetric", "PSD", "NSD")


def parameter_specs(parameters) -> tuple[ParameterSpec, ...]:
    """The specs of ``parameters`` (cvxpy.Parameter objects, in the layer's order).

    Parameters
    ----------
    parameters : sequence of cvxpy.Parameter

    Returns
    -------
    tuple of ParameterSpec
    """
    return tuple(ParameterSpec(leaf_label(p, i), tuple(int(d) for d in p.shape),
                               tuple(a for a in _CHECKED_ATTRIBUTES if p.attributes.get(a)))
                 for i, p in enumerate(parameters))


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
    if len(tensors) != len(specs):
        names = ", ".join(spec.label for spec in specs) or "none"
        raise ValueError(f"A tensor must be provided for each CVXPY parameter: expected "
                         f"{len(specs)} tensors (for {names}), got {len(tensors)}")
    batch_sizes, batched = {}, []
    for spec, tensor in zip(specs, tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"parameter {spec.label} must be a torch.Tensor, "
                            f"got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise TypeError(f"parameter {spec.label} must be a floating-point tensor, "
                            f"got {tensor.dtype}")
        if tensor.device.type == "meta":
            raise ValueError(f"parameter {spec.label} is a meta tensor (a shape without "
                             "values); the layer solves for values, so pass a tensor on "
                             "the CPU or a GPU")
        got = tuple(tensor.shape)
        if got == spec.shape:
            batched.append(False)
        elif len(got) == len(spec.shape) + 1 and got[1:] == spec.shape:
            batched.append(True)
            batch_sizes[spec.label] = got[0]
        else:
            what = ("Invalid parameter dimensionality" if len(got) > len(spec.shape) + 1
                    else "Invalid parameter shape")
            raise ValueError(f"{what}: parameter {spec.label} must have shape {spec.shape} or "
                             f"(batch, {', '.join(map(str, spec.shape))}), got {got}")
    sizes = list(batch_sizes.values())
    # Compared pairwise, not as a set: under torch.compile the sizes may be symbolic.
    if any(size != sizes[0] for size in sizes[1:]):
        detail = ", ".join(f"{k}: {v}" for k, v in batch_sizes.items())
        raise ValueError(f"Inconsistent batch sizes ({detail})")
    batch_size = sizes[0] if sizes else 1
    if batch_size == 0:
        raise ValueError("batch size is 0: nothing to solve")
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
    values = []
    for spec, tensor, batched in zip(specs, tensors, arguments.batched):
        value = tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {spec.label} has non-finite values (nan or inf)")
        _check_attributes(spec, value, batched)
        if any(a in spec.attributes for a in ("symmetric", "PSD", "NSD")):
            # The compiled problem reads one triangle; its symmetrized gradient is the
            # derivative of this map, so that the forward and backward passes agree.
            value = 0.5 * (value + np.swapaxes(value, -1, -2))
        values.append(value)
    return Inputs(**vars(arguments), values=values)


def _check_attributes(spec: ParameterSpec, value: np.ndarray, batched: bool) -> None:
    """Values must respect the parameter's declared sign/symmetry (DPP relies on them)."""
    name, attrs = spec.label, spec.attributes
    if "nonneg" in attrs and np.any(value < 0):
        raise ValueError(f"parameter {name} is declared nonneg but has negative values")
    if "nonpos" in attrs and np.any(value > 0):
        raise ValueError(f"parameter {name} is declared nonpos but has positive values")
    if any(a in attrs for a in ("symmetric", "PSD", "NSD")):
        matrices = value if batched else value[None]
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), atol=1e-8):
            raise ValueError(f"parameter {name} is declared symmetric but its value is not")
        if "PSD" in attrs and np.min(np.linalg.eigvalsh(matrices)) < -1e-8:
            raise ValueError(f"parameter {name} is declared PSD but has a negative eigenvalue")
        if "NSD" in attrs and np.max(np.linalg.eigvalsh(matrices)) > 1e-8:
            raise ValueError(f"parameter {name} is declared NSD but has a positive eigenvalue")
