"""Moreau's settings and cones in its own terms: what the layer passes to ``moreau.Settings``.

Which method a structure gets (the active-set method for small LPs and QPs, the
interior-point method otherwise), the tolerances that go with it, and the cone
description in Moreau's order.
"""

from __future__ import annotations

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramStructure
from cvxlpgd.solvers._common import (
    INTERIOR_POINT_ALIASES,
    resolve_aliases,
)

#: Settings the layer manages itself (per call), not the user.
_MANAGED = frozenset({"batch_size", "enable_grad"})


#: Accuracy of Moreau's active-set method, measured: its solutions of the tests' QPs
#: leave relative residuals of 1e-6 to 2e-6 whatever its own tolerances say (its
#: interior-point method reaches 1e-14 on the same problems).
ACTIVE_SET_ACCURACY = 2e-6


def uses_active_set(structure: ProgramStructure, settings: dict | None) -> bool:
    """Whether Moreau solves this structure with its active-set method.

    Moreau's ``solver="auto"`` (the default) picks it for small QPs on the CPU: a
    nonzero P, only zero and nonnegative cones, n ≤ 500 and 0 < m ≤ max(500, 2n).

    Parameters
    ----------
    structure : ProgramStructure
        Cones and patterns.
    settings : dict or None
        The user's Moreau settings.

    Returns
    -------
    bool
    """
    choice = str((settings or {}).get("solver", "auto")).lower()
    if choice != "auto":
        return choice == "active_set"
    n, m = structure.n, structure.m
    polyhedral = structure.cones.size == structure.cones.zero + structure.cones.nonneg
    quadratic = structure.P_pattern is not None and structure.P_pattern.nnz > 0
    device = str((settings or {}).get("device", "cpu"))
    return polyhedral and quadratic and n <= 500 and 0 < m <= max(500, 2 * n) and device != "cuda"


def moreau_settings(
    settings: dict | None, *, batch_size: int = 1, device: str = "cpu", enable_grad: bool = False
):
    """``moreau.Settings`` from a flat dictionary of the user's settings.

    Top-level names (``max_iter``, ``time_limit``, ``solver``, ``verbose``, ...) go to
    ``moreau.Settings``; interior-point names (``tol_gap_abs``, ``tol_feas``, ...) to
    its ``ipm_settings``; ``ipm_settings`` / ``active_set_settings`` may also be given
    as dictionaries or Moreau objects.

    Parameters
    ----------
    settings : dict or None
        The user's settings.
    batch_size : int, default 1
        Elements per solve.
    device : str, default "cpu"
        ``"cpu"`` or ``"cuda"``.
    enable_grad : bool, default False
        Prepare Moreau's implicit derivative (``backward``).

    Returns
    -------
    moreau.Settings

    Raises
    ------
    ValueError
        Listing the names that are no Moreau setting, or naming an invalid value.
    """
    import moreau

    user = resolve_aliases(settings, INTERIOR_POINT_ALIASES)
    managed = sorted(_MANAGED & set(user))
    if managed:
        raise ValueError(f"Moreau setting(s) {', '.join(managed)} are set by the layer")
    top_names = set(moreau.Settings.model_fields)
    ipm_names = set(moreau.IPMSettings.model_fields)
    top = {k: v for k, v in user.items() if k in top_names}
    ipm = {k: v for k, v in user.items() if k in ipm_names and k not in top_names}
    unknown = sorted(set(user) - set(top) - set(ipm))
    if unknown:
        raise ValueError(
            f"unknown Moreau setting(s): {', '.join(unknown)}; valid: top-level "
            f"{sorted(top_names - _MANAGED)} and interior-point "
            f"{sorted(ipm_names)}"
        )
    for key, cls in (
        ("ipm_settings", moreau.IPMSettings),
        ("active_set_settings", moreau.ActiveSetSettings),
    ):
        if isinstance(top.get(key), dict):
            top[key] = cls(**top[key])
    try:
        out = moreau.Settings(
            **{"device": device, **top}, batch_size=batch_size, enable_grad=enable_grad
        )
        if ipm:
            base = out.ipm_settings or moreau.IPMSettings()
            out.ipm_settings = base.model_copy(update=ipm)
            moreau.IPMSettings.model_validate(out.ipm_settings.model_dump())
    except (ValueError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        raise ValueError(f"invalid Moreau settings {user}: {err}") from err
    return out


def moreau_cones(cones: ConeDims):
    """``moreau.Cones`` for ``cones`` (same order as SCS).

    Raises
    ------
    ValueError
        For dual exponential cones, which Moreau does not provide.
    """
    import moreau

    if cones.dual_exp:
        raise ValueError(
            f"Moreau does not support the dual exponential cone ({cones.dual_exp} given); use SCS"
        )
    return moreau.Cones(
        num_zero_cones=cones.zero,
        num_nonneg_cones=cones.nonneg,
        so_cone_dims=list(cones.soc),
        psd_dims=list(cones.psd),
        num_exp_cones=cones.exp,
        power_alphas=list(cones.power),
    )
