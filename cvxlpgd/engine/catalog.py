"""Which solver a call uses, with which settings, and the solvers an engine keeps.

:class:`SolverCatalog` is the part of :class:`cvxlpgd.engine.batch.BatchEngine` that
chooses (``"AUTO"``: :mod:`cvxlpgd.engine.selection`, the call's flat settings:
:mod:`cvxlpgd.engine.solver_args`), builds and caches batch solvers per compiled structure
and settings (Moreau's compiled solvers live there), and their tolerances.
"""

from __future__ import annotations

from concurrent.futures import Executor

from cvxlpgd.engine.fallback import accepts
from cvxlpgd.engine.selection import choose_solver
from cvxlpgd.engine.solver_args import is_per_solver, route, settings_for
from cvxlpgd.engine.tolerances import call_tolerances
from cvxlpgd.lpgd.proximal import proximal_structure
from cvxlpgd.solvers import SOLVERS, batch_solver, solver_tolerance


class SolverCatalog:
    """Solver choice and cache of an engine (see the module docstring).

    The engine sets ``solver``, ``settings``, ``executor``, ``workers``,
    ``partitions``, ``share_factorizations``, ``device`` and ``_solvers``.
    """

    solver: str
    settings: dict
    executor: Executor | None
    workers: int | None
    partitions: int | None
    share_factorizations: bool
    device: str
    _solvers: dict[tuple, tuple]

    def resolve(
        self,
        structure,
        batch_size: int,
        shared_matrices: bool = True,
        settings: dict | None = None,
        exact_backend: str | None = None,
    ) -> tuple[str, dict]:
        """The call's solver and the settings it routes (before any tolerances).

        A named solver is used as given; ``"AUTO"`` decides by :func:`choose_solver`, by
        the flat settings a call brings (:func:`cvxlpgd.engine.solver_args.route`), and takes
        Moreau for Moreau's derivative.

        Returns
        -------
        (str, dict)
            The solver name and the call's settings.
        """
        settings = self.settings if settings is None else dict(settings)
        if self.solver != "AUTO":
            return self.solver, settings
        if exact_backend == "moreau":
            return "MOREAU", settings
        name = choose_solver(
            structure,
            batch_size,
            shared_matrices=shared_matrices,
            executor=self.executor is not None,
        )[0]
        if settings and not is_per_solver(settings):
            accepted = tuple(n for n in SOLVERS if accepts(n, structure))
            name, settings = route(settings, name, accepted)
        return name, settings

    def batch_solver(
        self, owner, variant: str, structure, name: str, settings: dict, enable_grad: bool = False
    ):
        """The cached batch solver of ``owner``'s structure ``variant`` (built once)."""
        key = (id(owner), variant, name, repr(sorted(settings.items())), enable_grad)
        entry = self._solvers.get(key)
        if entry is None:
            solver = batch_solver(
                name,
                structure,
                settings,
                executor=self.executor,
                workers=self.workers,
                partitions=self.partitions,
                share_factorizations=self.share_factorizations,
                device=self.device,
                enable_grad=enable_grad,
            )
            # The owner is kept with its solver, so its id stays its own.
            entry = self._solvers[key] = (owner, solver)
        return entry[1]

    def call_settings(
        self,
        name: str,
        settings: dict,
        lpgd_tau: float | None,
        exact_backend: str | None,
        cones=None,
        primary: bool = True,
    ) -> dict:
        """The settings solver ``name`` gets for a call.

        The user's (:func:`cvxlpgd.engine.solver_args.settings_for`) over
        :func:`cvxlpgd.engine.tolerances.call_tolerances`.

        Parameters
        ----------
        name : str
            The solver.
        settings : dict
            The call's settings, as :meth:`resolve` returned them.
        lpgd_tau : float or None
            τ of the LPGD backward pass to come, or None.
        exact_backend : str or None
            The exact derivative to come, or None.
        cones : ConeDims, optional
            The problem's cones (curved cones get tighter interior-point tolerances).
        primary : bool, default True
            Whether ``name`` is the call's solver (else a fallback solver).

        Returns
        -------
        dict
        """
        return {
            **call_tolerances(name, lpgd_tau, exact_backend, cones, fallback=not primary),
            **settings_for(name, settings, primary),
        }

    def tolerance(self, template, name: str, settings: dict) -> float:
        """The solver's tolerance for these settings (cached: Moreau's settings objects
        take milliseconds to build).

        Parameters
        ----------
        template : ConeTemplate
            The compiled problem.
        name : str
            The solver.
        settings : dict
            Its settings for the call.

        Returns
        -------
        float
        """
        key = (id(template), "tolerance", name, repr(sorted(settings.items())))
        entry = self._solvers.get(key)
        if entry is None:
            entry = self._solvers[key] = (
                template,
                solver_tolerance(name, settings, template.structure),
            )
        return entry[1]

    def clear(self) -> None:
        """Forget every cached solver (Moreau's compiled solvers with them)."""
        self._solvers.clear()

    def _fallback_solver(self, template, variant: str, structure, name: str, settings: dict):
        """A fallback solver ``name`` for ``structure`` and its tolerance."""
        return (
            self.batch_solver(template, variant, structure, name, settings),
            self.tolerance(template, name, settings),
        )

    def _proximal(self, template, slack_term: bool):
        key = (id(template), "proximal-structure", slack_term)
        entry = self._solvers.get(key)
        if entry is None:
            entry = self._solvers[key] = (
                template,
                proximal_structure(template.structure, slack_term),
            )
        return entry[1]
