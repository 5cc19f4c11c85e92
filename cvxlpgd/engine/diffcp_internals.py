"""The one place that touches diffcp's private API (pinned by ``diffcp<1.2``).

diffcp's public entry point solves and differentiates in one call; the exact path
needs its derivative *at a solution another solver found*, which only its internals
offer: the cone parser, the projection derivative DΠ, the residual map's derivative
M (dense or as an operator) and its adjoint solves. :func:`check` fails loudly when
a diffcp release moves one of them (``tests/test_exact_backends.py`` calls it).
"""

from __future__ import annotations

import diffcp
from diffcp import _diffcp
from diffcp import cones as _cones
from diffcp.cone_program import pi as _pi

#: The diffcp releases whose internals this module was written against.
TESTED_VERSIONS = ("1.1",)
#: (module, attribute) pairs the exact path uses.
USED = (
    (_cones, "parse_cone_dict"),
    (_cones, "parse_cone_dict_cpp"),
    (_diffcp, "dprojection"),
    (_diffcp, "M_dense"),
    (_diffcp, "M_operator"),
    (_diffcp, "_solve_adjoint_derivative_dense"),
    (_diffcp, "lsqr"),
)


def check() -> None:
    """Raise ImportError when diffcp's internals are not where this module uses them.

    Raises
    ------
    ImportError
        Naming the missing attributes and the installed diffcp version.
    """
    missing = [
        f"{module.__name__}.{name}"
        for module, name in USED
        if not callable(getattr(module, name, None))
    ]
    if missing:
        raise ImportError(
            f"diffcp {diffcp.__version__} lacks {', '.join(missing)}, which "
            f"cvxlpgd's exact path uses (written for diffcp "
            f"{', '.join(TESTED_VERSIONS)}.x)"
        )


def parse_cones(scs_cones: dict) -> tuple[list, object]:
    """diffcp's cone list and its C++ form for a cone dictionary in SCS's keys.

    Parameters
    ----------
    scs_cones : dict
        ``{"z": …, "l": …, "q": […], "s": […], "ep": …, "ed": …}``.

    Returns
    -------
    (list, object)
    """
    cone_list = _cones.parse_cone_dict(scs_cones)
    return cone_list, _cones.parse_cone_dict_cpp(cone_list)


def dual_projection_derivative(v, parsed):
    """DΠ_{K*}(v) as a linear operator (``rmatvec`` applies its transpose)."""
    return _diffcp.dprojection(v, parsed, True)


def residual_derivative(Q, parsed, u, v, w: float, dense: bool):
    """M = (Q − I) DΠ(z) + I at z = (u, v, w): a dense matrix, or an operator."""
    if dense:
        return _diffcp.M_dense(Q.todense(), parsed, u, v, w)
    return _diffcp.M_operator(Q, parsed, u, v, w)


def solve_adjoint_dense(M, MT, dz):
    """r with Mᵀ r = dz, M dense."""
    return _diffcp._solve_adjoint_derivative_dense(M, MT, dz)


def solve_adjoint_lsqr(MT, dz):
    """r with Mᵀ r = dz by diffcp's LSQR on the operator Mᵀ."""
    return _diffcp.lsqr(MT, dz).solution


def project_embedding(z: tuple, cone_list: list):
    """Π(z) onto ℝⁿ × K* × ℝ₊."""
    return _pi(z, cone_list)
