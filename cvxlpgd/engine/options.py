"""The options of a layer and of one call: what they may be, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cvxlpgd.engine.exact import validate_exact_options
from cvxlpgd.engine.status import validate_inaccurate_policy
from cvxlpgd.lpgd.formulas import validate_lpgd_options
from cvxlpgd.solvers import SOLVERS, supports_quadratic

GRADIENTS = ("lpgd", "exact")
#: Solver names a layer accepts: ``"auto"`` (see :mod:`cvxlpgd.engine.selection`) or a solver.
SOLVER_CHOICES = ("AUTO", *SOLVERS)
#: cvxpylayers' solver names that are not solvers here: diffcp solves with SCS.
SOLVER_ALIASES = {"DIFFCP": "SCS"}
DEFAULT_TAU = 0.1
DEFAULT_SOLVER = "auto"


def validate_solver(solver) -> str:
    """The solver name in upper case (None, cvxpylayers' default, is ``"AUTO"``;
    cvxpylayers' ``"DIFFCP"`` is SCS, which diffcp solves with).

    Raises
    ------
    ValueError
        For a name that is not ``"auto"`` or one of :data:`cvxlpgd.solvers.SOLVERS`.
    """
    if solver is None:  # cvxpylayers' default
        return "AUTO"
    if isinstance(solver, str) and solver.upper() in SOLVER_ALIASES:
        return SOLVER_ALIASES[solver.upper()]
    if not isinstance(solver, str) or solver.upper() not in SOLVER_CHOICES:
        valid = ("auto", *SOLVERS)
        raise ValueError(f"solver must be one of {valid}, got {solver!r}")
    return solver.upper()


@dataclass(frozen=True)
class CallOptions:
    """The options of one call (layer defaults with the call's overrides).

    Attributes
    ----------
    gradient : str
        ``"lpgd"`` or ``"exact"``.
    tau, rho : float
        LPGD's τ and ρ.
    lpgd_mode : str
        ``"central"``, ``"upper"`` or ``"lower"``.
    exact_mode : str
        diffcp's mode.
    exact_backend : str
        ``"diffcp"`` or ``"moreau"``.
    solver_args : dict
        Solver settings.
    inaccurate : str
        ``"warn"`` or ``"raise"`` for inaccurate solutions.
    """

    gradient: str
    tau: float
    rho: float
    lpgd_mode: str
    exact_mode: str
    exact_backend: str
    solver_args: dict
    inaccurate: str = "warn"

    def validated(self, solver: str) -> CallOptions:
        """Check every option, for the layer's ``solver``.

        Returns
        -------
        CallOptions
            This object, for chaining.

        Raises
        ------
        ValueError
            For an unknown gradient, τ ≤ 0, ρ < 0, unknown modes or backends, ρ > 0
            with a solver that takes no quadratic objective (the proximal term is one),
            or Moreau's derivative with another solver.
        TypeError
            When ``solver_args`` is not a dict.
        """
        if self.gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {GRADIENTS}, got {self.gradient!r}")
        validate_lpgd_options(self.tau, self.rho, self.lpgd_mode)
        validate_exact_options(self.exact_mode, self.exact_backend)
        validate_inaccurate_policy(self.inaccurate)
        if not isinstance(self.solver_args, dict):
            raise TypeError(f"solver_args must be a dict, got {type(self.solver_args).__name__}")
        if self.rho > 0 and solver != "AUTO" and not supports_quadratic(solver):
            quadratic = tuple(name for name in SOLVERS if supports_quadratic(name))
            raise ValueError(
                f"rho > 0 adds a quadratic proximal term, which {solver} does not "
                f"accept; use rho=0 or one of {quadratic}"
            )
        if self.exact_backend == "moreau" and solver not in ("MOREAU", "AUTO"):
            raise ValueError(f"exact_backend='moreau' needs solver='MOREAU', got {solver!r}")
        return self

    def override(
        self, solver: str, *, gradient=None, tau=None, rho=None, lpgd_mode=None, solver_args=None
    ) -> CallOptions:
        """These options with a call's overrides (None keeps the layer's), validated.

        ``solver_args`` are merged over the layer's.
        """
        return replace(
            self,
            gradient=self.gradient if gradient is None else gradient,
            tau=self.tau if tau is None else float(tau),
            rho=self.rho if rho is None else float(rho),
            lpgd_mode=self.lpgd_mode if lpgd_mode is None else lpgd_mode,
            solver_args={**self.solver_args, **(solver_args or {})},
        ).validated(solver)
