"""Solver tolerances of a call: the LPGD path's and the exact path's.

Both gradients divide by small numbers (LPGD by τ, the exact derivative by the
curvature of the solution map), so both need solutions more accurate than what the
solvers stop at by default. One rule per path, applied under the user's settings
(settings the user gives win).
"""

from __future__ import annotations

import numpy as np

from cvxlpgd.problem.cones import ConeDims


def lpgd_tolerances(solver: str, tau: float) -> dict:
    """Interior-point tolerances for a call whose LPGD backward uses ``tau``.

    LPGD divides differences of solutions by τ, so a solution error δ becomes δ/τ in
    the gradient; and an interior-point solution stopped at tolerance ε can be off by
    about √ε (measured: Moreau's LPGD gradient on a power-cone problem at τ = 1e-4 is
    7 % off with its default 1e-8 and 0.03 % off with 1e-12). Asking δ ≤ 1e-3 τ gives
    ``tol = clip(1e-6 τ², 1e-12, 1e-8)`` for the gap and feasibility tolerances of
    Moreau and Clarabel (1e-8, their default, down to τ = 0.1). Moreau's active-set
    method, its choice for small QPs, is accurate to about 2e-6 only: below τ = 0.01
    Moreau is asked for its interior-point method instead. SCS's default is tightened
    for every call (``eps = 1e-7``); ECOS keeps its 1e-8.

    Parameters
    ----------
    solver : str
        The solver name.
    tau : float
        LPGD's τ.

    Returns
    -------
    dict
        Settings to merge under the user's (empty for SCS and ECOS).
    """
    if solver not in ("MOREAU", "CLARABEL"):
        return {}
    tol = float(np.clip(LPGD_TOLERANCE_PER_TAU_SQUARED * tau**2, 1e-12, 1e-8))
    tighter: dict[str, float | str] = {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
    if solver == "MOREAU" and tau < ACTIVE_SET_MIN_TAU:
        tighter["solver"] = "ipm"
    return tighter


#: Interior-point tolerance per τ² on the LPGD path (see :func:`lpgd_tolerances`).
LPGD_TOLERANCE_PER_TAU_SQUARED = 1e-6
#: Below this τ Moreau's active-set error (≈ 2e-6) would exceed 1e-4 relative after the
#: division by τ: the interior-point method is used instead.
ACTIVE_SET_MIN_TAU = 1e-2


def call_tolerances(
    solver: str,
    lpgd_tau: float | None,
    exact_backend: str | None,
    cones: ConeDims | None = None,
    fallback: bool = False,
) -> dict:
    """Settings a call's solver gets under the user's.

    * Moreau's interior-point method on LPs and QPs gets :data:`POLYHEDRAL_TOLERANCES`
      (its default 1e-8 left LP vertices and QP duals up to 1.4e-4 from a 1e-12
      Clarabel solve on the differential campaign's polyhedral families; 1e-10 within
      5e-7);
    * Moreau on problems with curved cones gets :data:`CURVED_CONE_TOLERANCES` on
      every path: where the solution lies on a curved boundary and the objective is
      linear along it, an objective error ε moves the solution by about √ε (measured
      on the differential campaign's SOCP, SDP, exponential and power-cone families:
      1e-8 leaves x up to 3e-4 from a 1e-12 solve, 1e-12 within 9e-6). Clarabel keeps
      its defaults there: asked for 1e-10 or 1e-12 it stops without progress on some
      SOCPs (1 to 3 % of the elements of the tests' SOCP family), where Moreau does not;
      it serves as the fallback;
    * with LPGD's τ, :func:`lpgd_tolerances` (polyhedral problems);
    * for Moreau's exact derivative, its interior-point method: its derivative is
      smooth, the active-set method's jumps with the active set.

    Parameters
    ----------
    solver : str
        The solver.
    lpgd_tau : float or None
        τ of the LPGD backward pass to come, or None.
    exact_backend : str or None
        The exact derivative to come, or None.
    cones : ConeDims, optional
        The problem's cones.
    fallback : bool, default False
        Whether ``solver`` takes over elements another solver failed on: Clarabel then
        gets :data:`FALLBACK_CURVED_CONE_TOLERANCES` on curved cones (its defaults left
        a fallback element's power-cone duals 1e-4 off; where it stalls at the tighter
        ones, the checks judge its last iterate and SCS tries next).

    Returns
    -------
    dict
    """
    settings = {} if lpgd_tau is None else lpgd_tolerances(solver, lpgd_tau)
    if solver == "MOREAU" and cones is not None and not has_curved_cones(cones):
        for key, value in POLYHEDRAL_TOLERANCES.items():
            settings[key] = min(settings.get(key, value), value)
    if solver == "MOREAU" and cones is not None and has_curved_cones(cones):
        settings.update(CURVED_CONE_TOLERANCES)
        if not (cones.soc or cones.psd):
            settings.update(EXP_POWER_REDUCED_TOLERANCES)
    if fallback and solver == "CLARABEL" and cones is not None and has_curved_cones(cones):
        settings.update(FALLBACK_CURVED_CONE_TOLERANCES)
    if exact_backend == "moreau" and solver == "MOREAU":
        settings["solver"] = "ipm"
    return settings


def has_curved_cones(cones: ConeDims) -> bool:
    """Whether ``cones`` has second-order, PSD, exponential or power cones.

    Parameters
    ----------
    cones : ConeDims

    Returns
    -------
    bool
    """
    return bool(cones.soc or cones.psd or cones.exp or cones.dual_exp or cones.power)


#: Moreau's tolerances on problems with curved cones. It stops ``AlmostSolved`` when
#: it reaches only the reduced ones (such solutions pass the checks of
#: :mod:`cvxlpgd.engine.status` as optimal). Measured on the differential campaign's SOCP,
#: SDP, exponential and power-cone families (deviation from a 1e-12 Clarabel solve):
#: with second-order or PSD cones, reduced tolerances of 1e-11 or 1e-12 make Moreau
#: stall on some problems (their elements then go to Clarabel, at its defaults 3e-4
#: off), 1e-10 keeps them within 8e-6.
CURVED_CONE_TOLERANCES = {
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "reduced_tol_gap_abs": 1e-10,
    "reduced_tol_gap_rel": 1e-10,
    "reduced_tol_feas": 1e-10,
}
#: ... and with exponential and power cones only, where asking for 1e-12 does not
#: make it stall: power-cone duals 4e-5 off at 1e-10 match the reference at 1e-12
#: (exponential-cone families: x within 1.2e-5 either way).
EXP_POWER_REDUCED_TOLERANCES = {
    "reduced_tol_gap_abs": 1e-12,
    "reduced_tol_gap_rel": 1e-12,
    "reduced_tol_feas": 1e-12,
}

#: Moreau's interior-point tolerances on LPs and QPs.
POLYHEDRAL_TOLERANCES = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}

#: Clarabel's tolerances on curved cones when it takes over from Moreau.
FALLBACK_CURVED_CONE_TOLERANCES = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}
