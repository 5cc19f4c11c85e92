"""A layer's parameters as plain data, and the checks every front end applies to values.

The front ends (:mod:`cvxlpgd.torch.inputs`, :mod:`cvxlpgd.jax.inputs`) check what
their arrays *are* (type, dtype, device) and call :func:`batch_layout` on the shapes
and :func:`checked_values` on the values, so that every layer accepts and refuses the
same things with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvxlpgd.problem.naming import leaf_label

_CHECKED_ATTRIBUTES = ("nonneg", "nonpos", "symmetric", "PSD", "NSD")
_SYMMETRIC = ("symmetric", "PSD", "NSD")


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


def parameter_specs(parameters) -> tuple[ParameterSpec, ...]:
    """The specs of ``parameters`` (cvxpy.Parameter objects, in the layer's order).

    Parameters
    ----------
    parameters : sequence of cvxpy.Parameter

    Returns
    -------
    tuple of ParameterSpec
    """
    return tuple(
        ParameterSpec(
            leaf_label(p, i),
            tuple(int(d) for d in p.shape),
            tuple(a for a in _CHECKED_ATTRIBUTES if p.attributes.get(a)),
        )
        for i, p in enumerate(parameters)
    )


def check_count(specs, arguments, what: str) -> None:
    """One argument per parameter.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    arguments : sequence
    what : str
        What an argument is called (``"tensor"``, ``"array"``).

    Raises
    ------
    ValueError
        Naming the parameters.
    """
    if len(arguments) != len(specs):
        names = ", ".join(spec.label for spec in specs) or "none"
        raise ValueError(
            f"A {what} must be provided for each CVXPY parameter: expected "
            f"{len(specs)} {what}s (for {names}), got {len(arguments)}"
        )


def batch_layout(specs, shapes) -> tuple[list[bool], int]:
    """Which arguments carry a leading batch dimension, and the batch size.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    shapes : sequence of tuple
        One shape per parameter (its sizes may be symbolic under tracing).

    Returns
    -------
    (list of bool, int)
        The batch flags and B (1 when no argument is batched).

    Raises
    ------
    ValueError
        For a shape that is neither the parameter's nor (batch, shape), inconsistent
        batch sizes, or a batch of 0.
    """
    batch_sizes, batched = {}, []
    for spec, got in zip(specs, shapes):
        got = tuple(got)
        if got == spec.shape:
            batched.append(False)
        elif len(got) == len(spec.shape) + 1 and got[1:] == spec.shape:
            batched.append(True)
            batch_sizes[spec.label] = got[0]
        else:
            what = (
                "Invalid parameter dimensionality"
                if len(got) > len(spec.shape) + 1
                else "Invalid parameter shape"
            )
            raise ValueError(
                f"{what}: parameter {spec.label} must have shape {spec.shape} or "
                f"(batch, {', '.join(map(str, spec.shape))}), got {got}"
            )
    sizes = list(batch_sizes.values())
    # Compared pairwise, not as a set: under tracing the sizes may be symbolic.
    if any(size != sizes[0] for size in sizes[1:]):
        detail = ", ".join(f"{k}: {v}" for k, v in batch_sizes.items())
        raise ValueError(f"Inconsistent batch sizes ({detail})")
    batch_size = sizes[0] if sizes else 1
    if batch_size == 0:
        raise ValueError("batch size is 0: nothing to solve")
    return batched, batch_size


def checked_values(specs, values, batched) -> list[np.ndarray]:
    """The parameter values as float64 arrays, checked; symmetric ones as (C + Cᵀ)/2.

    The compiled problem reads one triangle of a symmetric parameter and its gradient
    is symmetrized, ½(G + Gᵀ): the derivative of C ↦ (C + Cᵀ)/2, so that the forward
    and backward passes agree also for a check that perturbs one entry.

    Parameters
    ----------
    specs : sequence of ParameterSpec
    values : sequence of array_like
        One per parameter, shaped as :func:`batch_layout` accepted.
    batched : sequence of bool

    Returns
    -------
    list of numpy.ndarray

    Raises
    ------
    ValueError
        Naming the parameter: non-finite values, or values against its declared sign
        or symmetry.
    """
    out = []
    for spec, value, is_batched in zip(specs, values, batched):
        value = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(value)):
            raise ValueError(f"parameter {spec.label} has non-finite values (nan or inf)")
        _check_attributes(spec, value, is_batched)
        if any(a in spec.attributes for a in _SYMMETRIC):
            value = 0.5 * (value + np.swapaxes(value, -1, -2))
        out.append(value)
    return out


def _check_attributes(spec: ParameterSpec, value: np.ndarray, batched: bool) -> None:
    """Values must respect the parameter's declared sign/symmetry (DPP relies on them)."""
    name, attrs = spec.label, spec.attributes
    if "nonneg" in attrs and np.any(value < 0):
        raise ValueError(f"parameter {name} is declared nonneg but has negative values")
    if "nonpos" in attrs and np.any(value > 0):
        raise ValueError(f"parameter {name} is declared nonpos but has positive values")
    if any(a in attrs for a in _SYMMETRIC):
        matrices = value if batched else value[None]
        if not np.allclose(matrices, np.swapaxes(matrices, -1, -2), atol=1e-8):
            raise ValueError(f"parameter {name} is declared symmetric but its value is not")
        if "PSD" in attrs and np.min(np.linalg.eigvalsh(matrices)) < -1e-8:
            raise ValueError(f"parameter {name} is declared PSD but has a negative eigenvalue")
        if "NSD" in attrs and np.max(np.linalg.eigvalsh(matrices)) > 1e-8:
            raise ValueError(f"parameter {name} is declared NSD but has a positive eigenvalue")
