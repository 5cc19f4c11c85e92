"""Geometric programs (``gp=True``): the check that a problem is one.

CVXPY compiles a DGP problem through its DGP→DCP reduction (log variables, log
parameters); :mod:`cvxlpgd.torch.log_transform` is the front end's side of it.
"""

from __future__ import annotations

from typing import Any, cast

import cvxpy as cp


def check_geometric_program(problem: cp.Problem) -> None:
    """Raise unless ``problem`` is a DGP problem that follows the DPP rules.

    Parameters
    ----------
    problem : cvxpy.Problem
        The problem given with ``gp=True``.

    Raises
    ------
    ValueError
        When it is not DGP (log-log convex), or its parameters do not enter by the
        DGP DPP rules.
    """
    if not problem.is_dgp():
        hint = " (it is DCP: drop gp=True)" if problem.is_dcp() else ""
        raise ValueError(
            "gp=True, but the problem is not a geometric program (DGP: "
            "log-log convex, positive variables and parameters, monomial "
            f"equalities, posynomial ≤ monomial inequalities){hint}"
        )
    if not cast(Any, problem).is_dpp("dgp"):
        raise ValueError(
            "gp=True, but the problem does not follow the DPP rules for "
            "geometric programs: its parameters must enter log-log affinely; "
            "see CVXPY's DGP and DPP documentation"
        )
