r"""Geometric programs (``CvxpyLayer(..., gp=True)``): the log transform around the layer.

CVXPY turns a DGP problem into a convex one by the change of variables
``u = log x`` and parameters ``θ = log p`` (its DGP→DCP reduction); the compiled cone
program lives in that log space. The layer keeps the user's (positive) space at
its boundary:

    p ↦ θ = log p  →  solve in log space  →  u* ↦ x* = exp(u*)

and lets PyTorch do the chain rule through ``torch.log`` and ``torch.exp``:

    ∂ℓ/∂p = (∂ℓ/∂θ) / p,        ∂ℓ/∂u* = (∂ℓ/∂x*) · x*.

Duals are those of the log-space constraints, exactly what CVXPY reports as
``dual_value`` after ``problem.solve(gp=True)``; they pass through unchanged.
Parameters that CVXPY keeps as they are (an exponent, e.g. ``x ** a``) are not
logged either; which ones are is recorded at compile time (``ParameterSlot.log_space``).
"""

from __future__ import annotations

import torch

from cvxlpgd.problem.template import ConeTemplate


class LogTransform:
    """Maps a geometric program's inputs to log space and its outputs back.

    Parameters
    ----------
    template : ConeTemplate
        The problem compiled with ``gp=True``: its parameter slots say which inputs
        enter through their logarithm, its output slots which outputs are variables.
    """

    def __init__(self, template: ConeTemplate):
        self.names = [slot.name for slot in template.parameters]
        self.logged = [slot.log_space for slot in template.parameters]
        self.primal = [slot.source == "primal" for slot in template.outputs]

    def inputs(self, tensors) -> tuple:
        """``log p`` for every logged parameter, after checking that ``p > 0``.

        Inputs that are not floating-point tensors, or a wrong count, are passed on
        unchanged for the layer's own checks to name.

        Parameters
        ----------
        tensors : sequence of torch.Tensor
            The call's parameter values, in the user's space.

        Returns
        -------
        tuple of torch.Tensor

        Raises
        ------
        ValueError
            Naming the first parameter with a value ≤ 0 (or nan).
        """
        if len(tensors) != len(self.logged):
            return tuple(tensors)
        out = []
        for name, logged, tensor in zip(self.names, self.logged, tensors):
            if logged and isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
                if _concrete(tensor) and not bool(torch.all(tensor > 0)):
                    raise ValueError(
                        f"parameter {name!r} must be positive (gp=True: a "
                        "geometric program's parameters enter through their "
                        f"logarithm), got min {tensor.detach().min().item():g}"
                    )
                tensor = torch.log(tensor)
            out.append(tensor)
        return tuple(out)

    def outputs(self, tensors) -> tuple:
        """``exp`` of every variable output (duals unchanged).

        Parameters
        ----------
        tensors : sequence of torch.Tensor
            The layer's outputs in log space.

        Returns
        -------
        tuple of torch.Tensor
        """
        return tuple(torch.exp(t) if primal else t for primal, t in zip(self.primal, tensors))


def _concrete(tensor: torch.Tensor) -> bool:
    """Whether the values are at hand: not under ``torch.compile`` or ``torch.func``.

    There the check would be data-dependent control flow; a value ≤ 0 then becomes nan
    or -inf after the logarithm, which the layer's own finite check names.
    """
    if torch.compiler.is_compiling():
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
