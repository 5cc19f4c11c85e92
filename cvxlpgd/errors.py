"""Exceptions raised by cvxlpgd."""

from __future__ import annotations


class SolverError(RuntimeError):
    """A cone program could not be solved to optimality.

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

    def __init__(self, message: str, *, status: str | None = None,
                 batch_index: int | None = None, side: str | None = None):
        super().__init__(message)
        self.status = status
        self.batch_index = batch_index
        self.side = side
