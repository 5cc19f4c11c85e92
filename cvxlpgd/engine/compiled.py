"""What a layer of any front end knows of its compiled problem, framework-free.

:class:`CompiledProblem` is shared by :class:`cvxlpgd.CvxpyLayer` (PyTorch) and
:class:`cvxlpgd.jax.CvxpyLayer`: the two compiled forms (QP with P kept, conic-only)
built on demand, which form a call solves, and what ``exact_backend="auto"`` means for
this problem.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

from cvxlpgd.engine.exact import choose_exact_backend
from cvxlpgd.engine.options import CallOptions, validate_solver
from cvxlpgd.engine.solver_args import routes_elsewhere
from cvxlpgd.problem.compile import compile_problem
from cvxlpgd.problem.naming import leaf_label
from cvxlpgd.problem.parameters import parameter_specs
from cvxlpgd.problem.template import ConeTemplate
from cvxlpgd.problem.validate import validate_problem
from cvxlpgd.solvers import supports_quadratic
from cvxlpgd.solvers.moreau_backend import moreau_available


class CompiledProblem:
    """Mixin of the layers: their configuration, compiled templates and the exact-backend
    choice. A layer's constructor calls :meth:`_configure` first."""

    def _configure(
        self,
        problem,
        parameters,
        variables,
        *,
        gradient: str,
        tau: float,
        rho: float,
        lpgd_mode: str,
        exact_mode: str,
        exact_backend: str,
        solver: str,
        solver_args: dict | None,
        workers: int | None,
        warm_start: bool,
        inaccurate: str,
        gp: bool,
        fallback: bool | None,
        active_set: bool = True,
    ) -> ConeTemplate:
        """Check the constructor's arguments, store them and compile the problem.

        Sets ``options``, ``solver``, ``gp``, ``problem``, ``parameters_``,
        ``variables_``, ``workers``, ``fallback``, ``warm_start``, ``active_set``, ``_specs``,
        ``_output_labels`` and ``_templates``; compiles the form a call solves (and
        the exact path's, so that a form that cannot be compiled fails here).

        Returns
        -------
        ConeTemplate
            The form an LPGD call solves.

        Raises
        ------
        TypeError, ValueError
            Naming the argument and what was expected.
        """
        solver = validate_solver(solver)
        self.options = CallOptions(
            gradient=gradient,
            tau=float(tau),
            rho=float(rho),
            lpgd_mode=lpgd_mode,
            exact_mode=exact_mode,
            exact_backend=exact_backend,
            solver_args=dict(solver_args or {}),
            inaccurate=inaccurate,
        ).validated(solver)
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1
        ):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        if fallback is not None and not isinstance(fallback, bool):
            raise TypeError(f"fallback must be True, False or None, got {fallback!r}")
        for name, value in (("warm_start", warm_start), ("gp", gp), ("active_set", active_set)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        self.solver, self.gp, self.problem = solver, gp, problem
        self.parameters_, self.variables_ = validate_problem(problem, parameters, variables, gp=gp)
        self.workers = None if workers is None else int(workers)
        self.fallback, self.warm_start, self.active_set = fallback, warm_start, active_set
        self._specs = parameter_specs(self.parameters_)
        self._output_labels = tuple(output_label(item, i) for i, item in enumerate(self.variables_))
        self._templates: dict[bool, ConeTemplate] = {}
        template = self._template(quadratic=self._solves_quadratic(None))
        if self.options.gradient == "exact":
            self._template(
                quadratic=self._solves_quadratic(self.exact_backend_for(self.options.exact_backend))
            )
        return template

    def _solves_quadratic(self, exact_backend: str | None) -> bool:
        """Whether a call solves the QP form (P kept) or the conic one.

        ``exact_backend`` is the exact derivative the call prepares (None: LPGD or none).
        """
        if exact_backend == "diffcp":
            return False  # diffcp differentiates the conic form only
        return self.solver == "AUTO" or supports_quadratic(self.solver)

    def exact_backend_for(self, backend: str, solver_args: dict | None = None) -> str:
        """The exact derivative ``backend`` stands for on this layer.

        ``"auto"`` picks the derivative from the active set on LPs and QPs (unless the
        layer's ``active_set`` is off); else Moreau's where diffcp cannot differentiate
        the problem (a parametrized P, power cones) or a QP would be solved less
        accurately in its conic-only form, when Moreau is installed and the layer's
        solver is ``"auto"`` or Moreau; diffcp's otherwise
        (:func:`cvxlpgd.engine.exact.choose_exact_backend`).

        Parameters
        ----------
        backend : str
            ``"auto"``, ``"active-set"``, ``"diffcp"`` or ``"moreau"``.
        solver_args : dict, optional
            The call's settings (default: the layer's): flat settings of another solver
            (e.g. SCS's ``eps``) keep a QP with a constant P on diffcp's derivative.

        Returns
        -------
        str
            ``"active-set"``, ``"diffcp"`` or ``"moreau"``.
        """
        if backend != "auto":
            return backend
        usable = self.solver in ("AUTO", "MOREAU") and moreau_available()
        args = self.options.solver_args if solver_args is None else solver_args
        return choose_exact_backend(
            self._template(quadratic=True),
            usable,
            usable and self.solver == "AUTO" and routes_elsewhere(args, "MOREAU"),
            active_set=getattr(self, "active_set", True),
        )

    def _template(self, quadratic: bool) -> ConeTemplate:
        if quadratic not in self._templates:
            template = compile_problem(
                self.problem, self.parameters_, self.variables_, quadratic=quadratic, gp=self.gp
            )
            if quadratic and not template.quadratic:  # no quadratic term: one form serves both
                self._templates[False] = template
            self._templates[quadratic] = template
        return self._templates[quadratic]


def output_label(item, position: int) -> str:
    """An output as errors name it: a variable's label, or the dual of a constraint.

    Parameters
    ----------
    item : cvxpy.Variable or cvxpy.Constraint
    position : int
        Its position in ``variables``.

    Returns
    -------
    str
    """
    if isinstance(item, cp.Variable):
        return leaf_label(item, position, "variables")
    return f"dual({' '.join(str(item).split())}) (variables[{position}])"
