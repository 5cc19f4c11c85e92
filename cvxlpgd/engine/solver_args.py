"""Flat ``solver_args`` with ``solver="auto"``: which solver a setting belongs to.

cvxpylayers passes its ``solver_args`` to diffcp, so code written for it brings SCS
settings (``{"eps": 1e-10}``, ``max_iters``, ``acceleration_lookback``) or
``solve_method``. With ``solver="auto"`` a flat dictionary is routed:

* ``verbose`` goes to every solver;
* ``solve_method`` (diffcp's name for the solver: ``"SCS"``, ``"ECOS"``,
  ``"Clarabel"``) picks that solver for the call;
* the other names pick the solver that knows them all — auto's own choice when it
  does, else the first of :data:`ROUTING_ORDER` that does — and a name that no
  installed solver knows is a :class:`ValueError` naming it.

Fallback solvers (:mod:`cvxlpgd.engine.fallback`) get the settings they know, and their
defaults for the rest. A dictionary keyed by solver names
(``{"SCS": {...}, "MOREAU": {...}}``) gives each solver its own settings instead.
"""

from __future__ import annotations

import functools

from cvxlpgd.solvers import SOLVERS
from cvxlpgd.solvers._common import INTERIOR_POINT_ALIASES
from cvxlpgd.solvers.ecos_backend import KNOWN_SETTINGS as ECOS_SETTINGS
from cvxlpgd.solvers.moreau_backend import moreau_available

#: Where a flat setting known to several solvers goes first (ECOS only by name: it
#: takes no quadratic objective).
ROUTING_ORDER = ("SCS", "CLARABEL", "MOREAU")
#: Settings every solver takes under the same name and meaning.
SHARED_SETTINGS = frozenset({"verbose"})
#: diffcp's ``solve_method`` values → solver names.
SOLVE_METHODS = {"SCS": "SCS", "ECOS": "ECOS", "CLARABEL": "CLARABEL"}
#: SCS's keyword settings (SCS ≥ 3.2), with the ``eps`` alias of both tolerances.
SCS_SETTINGS = frozenset(
    {
        "normalize",
        "scale",
        "adaptive_scale",
        "rho_x",
        "max_iters",
        "eps",
        "eps_abs",
        "eps_rel",
        "eps_infeas",
        "alpha",
        "time_limit_secs",
        "verbose",
        "acceleration_lookback",
        "acceleration_interval",
        "write_data_filename",
        "log_csv_filename",
        "linear_solver",
        "use_indirect",
        "gpu",
        "mkl",
    }
)


@functools.cache
def setting_names(name: str) -> frozenset[str]:
    """The flat setting names solver ``name`` accepts.

    Parameters
    ----------
    name : str
        One of :data:`cvxlpgd.solvers.SOLVERS`.

    Returns
    -------
    frozenset of str
    """
    if name == "SCS":
        return SCS_SETTINGS
    if name == "ECOS":
        return frozenset(ECOS_SETTINGS)
    if name == "CLARABEL":
        import clarabel

        defaults = clarabel.DefaultSettings()
        return frozenset(
            {
                n
                for n in dir(defaults)
                if not n.startswith("_") and not callable(getattr(defaults, n))
            }
            | set(INTERIOR_POINT_ALIASES)
        )
    if name == "MOREAU" and moreau_available():
        import moreau

        return frozenset(
            (
                set(moreau.Settings.model_fields)
                | set(moreau.IPMSettings.model_fields)
                | set(INTERIOR_POINT_ALIASES)
            )
            - {"batch_size", "enable_grad"}
        )
    return frozenset()


def is_per_solver(settings: dict) -> bool:
    """Whether ``settings`` is keyed by solver names (``{"SCS": {...}, ...}``).

    Parameters
    ----------
    settings : dict
        A call's settings.

    Returns
    -------
    bool
    """
    return bool(settings) and all(isinstance(k, str) and k.upper() in SOLVERS for k in settings)


def route(settings: dict, choice: str, accepted: tuple[str, ...]) -> tuple[str, dict]:
    """The solver a call with flat ``settings`` uses under ``solver="auto"``, and its settings.

    Parameters
    ----------
    settings : dict
        The call's flat settings.
    choice : str
        The solver auto chose for the problem and batch.
    accepted : tuple of str
        The installed solvers that accept the problem.

    Returns
    -------
    (str, dict)
        The solver and the settings it gets (``solve_method`` removed).

    Raises
    ------
    ValueError
        Naming the settings that no installed solver knows, or a ``solve_method`` that
        is not a solver for this problem.
    """
    settings = dict(settings)
    method = settings.pop("solve_method", None)
    if method is not None:
        name = SOLVE_METHODS.get(str(method).upper())
        if name is None or name not in accepted:
            usable = sorted(set(SOLVE_METHODS) & set(accepted))
            raise ValueError(
                f"solver_args solve_method={method!r} is not a solver for this "
                f"problem here; use one of {usable}"
            )
        return name, settings
    names = set(settings) - SHARED_SETTINGS
    if not names:
        return choice, settings
    candidates = [choice, *ROUTING_ORDER]
    for name in candidates:
        if name in accepted and names <= setting_names(name):
            return name, settings
    known = set().union(*(setting_names(n) for n in SOLVERS))
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"solver_args: unknown setting(s) {', '.join(map(repr, unknown))}: no "
            f"installed solver ({', '.join(accepted)}) takes them; see "
            "docs/solvers.md for each solver's settings"
        )
    raise ValueError(
        f"solver_args: no single solver takes all of {sorted(names)}; pass "
        "solver=... or a dictionary per solver ({'SCS': {...}, 'MOREAU': {...}})"
    )


def routes_elsewhere(settings: dict, name: str) -> bool:
    """Whether flat ``settings`` send a call to another solver than ``name``.

    Parameters
    ----------
    settings : dict
        A call's settings.
    name : str
        The solver auto would use.

    Returns
    -------
    bool
        True when ``solve_method`` names another solver, or a setting is one ``name``
        does not know.
    """
    if not settings or is_per_solver(settings):
        return False
    method = settings.get("solve_method")
    if method is not None:
        return SOLVE_METHODS.get(str(method).upper()) != name
    return not (set(settings) - SHARED_SETTINGS) <= setting_names(name)


def settings_for(name: str, settings: dict, primary: bool) -> dict:
    """The settings solver ``name`` gets from a call's ``settings``.

    Parameters
    ----------
    name : str
        The solver.
    settings : dict
        Flat settings or a dictionary per solver name.
    primary : bool
        Whether ``name`` is the call's solver (it gets every flat setting, and rejects
        the ones it does not know); a fallback solver gets the ones it knows.

    Returns
    -------
    dict
    """
    if is_per_solver(settings):
        return dict({k.upper(): v for k, v in settings.items()}.get(name, {}))
    if primary:
        return {k: v for k, v in settings.items() if k != "solve_method"}
    known = setting_names(name)
    return {k: v for k, v in settings.items() if k in known}
