"""Exceptions raised by cvxlpgd, and how its warnings reach the user's code."""

from __future__ import annotations

import sys
import types
import warnings

import diffcp

#: Modules whose frames a warning skips to point at the caller's own line.
_INTERNAL = ("cvxlpgd", "torch", "concurrent", "threading")


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointing at the first frame outside cvxlpgd and torch.

    A warning raised deep inside a forward or backward pass then names the user's line
    (the call of the layer, or ``loss.backward()``), not the package's.

    Parameters
    ----------
    message : str
        The warning text.
    category : type
        A Warning subclass.
    """
    level = 2  # stacklevel 2: warn_user's caller
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in _INTERNAL:
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


class SolverError(RuntimeError, diffcp.SolverError):
    """A cone program could not be solved to optimality.

    Also a ``diffcp.SolverError``, so that code written for cvxpylayers (which raises
    diffcp's) catches it unchanged.

    Parameters
    ----------
    message : str
        What failed, where, and what to try.
    status : str, optional
        The solver's normalized status.
    batch_index : int, optional
        Position of the failing problem in the batch.
    side : str, optional
        ``"upper"`` or ``"lower"`` for an LPGD perturbed solve.

    Attributes
    ----------
    status : str or None
        The solver's normalized status (``"infeasible"``, ``"unbounded"``, ...).
    batch_index : int or None
        Position of the failing problem in the batch.
    side : str or None
        For LPGD perturbed solves, ``"upper"`` or ``"lower"``.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | None = None,
        batch_index: int | None = None,
        side: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.batch_index = batch_index
        self.side = side
