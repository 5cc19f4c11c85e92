"""Checking a CVXPY problem before it is compiled: DCP/DPP (or DGP), parameters, outputs.

:func:`validate_problem` turns what CVXPY would reject later, or compile into a form the
layer cannot differentiate, into errors that name the argument and say what was
expected.
"""

from __future__ import annotations

from typing import Any, cast

import cvxpy as cp
from cvxpy.atoms.quad_form import QuadForm

from cvxlpgd.problem.geometric import check_geometric_program
from cvxlpgd.problem.naming import leaf_label
from cvxlpgd.problem.readouts import dual_variable_owners


def needs_quadratic_form(problem: cp.Problem) -> bool:
    """True when the problem is DPP only with its parametrized ``quad_form`` kept in P.

    ``quad_form(x, Q)`` with a parameter Q is ``x``-quadratic with coefficients linear
    in Q: as the objective's quadratic term ``½ xᵀPx`` (P linear in Q) it stays
    parametric; rewritten as a cone (``‖Fx‖² ≤ t`` with a factor F of Q) it does not.

    Parameters
    ----------
    problem : cvxpy.Problem
        A problem.

    Returns
    -------
    bool
    """
    return not problem.is_dpp() and _is_qp_dpp(problem)


_QUAD_FORM_HINT = (
    "quad_form(x, Q) with a parameter Q stays parametric only in the objective, "
    "where CVXPY keeps it in the quadratic term ½xᵀPx (P linear in Q)"
)


CONIC_FORM_REFUSED = (
    _QUAD_FORM_HINT + "; this call needs the conic-only form, which has no P (solver='ECOS', or "
    "gradient='exact' with exact_backend='diffcp': diffcp differentiates cone programs "
    "without a quadratic term) and would fix Q at a value. Use gradient='lpgd' with solver "
    "'MOREAU', 'SCS' or 'CLARABEL', or gradient='exact' with exact_backend='moreau' and "
    "solver='MOREAU'."
)


NOT_IN_P = (
    _QUAD_FORM_HINT + ", and only where the objective is a sum of such terms and terms CVXPY "
    "rewrites as cones; here it sits inside another function (e.g. pos(quad_form(x, Q) - 1)). "
    "Write that term with sum_squares(F @ x) and a parameter F (Q = FᵀF) instead."
)


def validate_problem(problem, parameters, variables, *, gp: bool = False):
    """Check the problem, parameters and outputs; return them as lists.

    Parameters
    ----------
    problem : cvxpy.Problem
        Must be DCP and DPP (``quad_form(x, Q)`` with a PSD parameter Q allowed in the
        objective), or DGP and DPP with ``gp=True``.
    parameters : sequence of cvxpy.Parameter
        Every parameter of ``problem``, each once.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        Outputs, all of ``problem`` (variables, constraints or their
        ``dual_variables``).
    gp : bool, default False
        Check the DGP rules instead of DCP.

    Returns
    -------
    (list, list)
        ``parameters`` and ``variables`` as lists.

    Raises
    ------
    TypeError, ValueError
        See :func:`compile_problem`.
    """
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"problem must be a cvxpy.Problem, got {type(problem).__name__}")
    parameters = _as_list(parameters, "parameters", "cvxpy.Parameter")
    variables = _as_list(variables, "variables", "cvxpy.Variable or cvxpy constraints")
    for v in problem.variables():
        kind = next((a for a in ("integer", "boolean") if v.attributes.get(a)), None)
        if kind:
            position = next((i for i, out in enumerate(variables) if out is v), None)
            raise ValueError(
                f"variable {leaf_label(v, position, 'variables')} is {kind}; the "
                "layer differentiates continuous (convex) problems only, so "
                "declare it without integer=/boolean= (or relax it)"
            )
    if gp:
        check_geometric_program(problem)
    else:
        _check_dcp_dpp(problem)
    for i, p in enumerate(parameters):
        if not isinstance(p, cp.Parameter):
            raise TypeError(
                f"parameters must be cvxpy.Parameter objects, got "
                f"{type(p).__name__} at parameters[{i}]"
            )
    ids = [p.id for p in parameters]
    if len(set(ids)) != len(ids):
        dup = next(i for i, p in enumerate(parameters) if ids.count(p.id) > 1)
        raise ValueError(f"parameter {leaf_label(parameters[dup], dup)} is listed more than once")
    problem_params = {p.id: p for p in problem.parameters()}
    foreign = [i for i, p in enumerate(parameters) if p.id not in problem_params]
    if foreign:
        raise ValueError(
            f"parameter {leaf_label(parameters[foreign[0]], foreign[0])} does not "
            "appear in the problem: `parameters` must exactly match "
            "problem.parameters()"
        )
    missing = [leaf_label(p) for i, p in problem_params.items() if i not in set(ids)]
    if missing:
        raise ValueError(
            f"the problem's parameter(s) {', '.join(missing)} are not "
            "listed in `parameters`, which must exactly match problem.parameters(): "
            "every parameter must be an input of the layer"
        )
    if not variables:
        raise ValueError("`variables` is empty: name at least one variable or constraint to output")
    var_ids = {v.id for v in problem.variables()} | set(dual_variable_owners(problem))
    con_ids = {c.id for c in problem.constraints}
    for i, v in enumerate(variables):
        if isinstance(v, cp.Variable):
            if v.id not in var_ids:
                raise ValueError(
                    f"variable {leaf_label(v, i, 'variables')} does not appear in "
                    "the problem (nor is it a dual variable of one of its "
                    "constraints): outputs must be a subset of problem.variables() "
                    "and its constraints"
                )
        elif isinstance(v, cp.constraints.constraint.Constraint):
            if v.id not in con_ids:
                raise ValueError(
                    f"constraint {v!s:.60} (variables[{i}]) is not one of the "
                    "problem's constraints: outputs must be a subset of "
                    "problem.variables() and its constraints"
                )
        else:
            raise TypeError(
                "variables must hold cvxpy.Variable or cvxpy Constraint objects, "
                f"got {type(v).__name__} at variables[{i}]"
            )
    return parameters, variables


def _check_dcp_dpp(problem) -> None:
    """DCP, and DPP (parametrized ``quad_form`` in the objective allowed)."""
    if not problem.is_dcp():
        hint = ""
        if problem.is_dgp():
            hint = "; it is a geometric program (DGP): pass gp=True"
        elif any(_parametric_quad_forms(problem)):
            hint = (
                "; quad_form(x, Q) with a parameter Q needs Q declared PSD=True (NSD=True "
                "in a maximized objective)"
            )
        raise ValueError(
            "problem is not DCP (disciplined convex); cvxlpgd needs a convex "
            "problem written by the DCP rules" + hint
        )
    if problem.is_dpp() or _is_qp_dpp(problem):
        return
    in_constraints = [c for c in problem.constraints if any(_parametric_quad_forms(c))]
    if in_constraints:
        raise ValueError(
            f"constraint {in_constraints[0]!s:.60} uses quad_form(x, Q) with a "
            "parameter Q, which is only supported in the objective: it cannot "
            "stay parametric in a constraint (CVXPY "
            "rewrites it as a cone through a factor of Q's value): "
            + _QUAD_FORM_HINT
            + ". In a constraint write sum_squares(F @ x) "
            "with a parameter F (Q = FᵀF) instead"
        )
    raise ValueError(
        "problem is not DPP (disciplined parametrized): parameters must enter "
        "affinely, e.g. write quad_form(x, P) in a constraint as "
        "sum_squares(L @ x) with a parameter L (in the objective, quad_form(x, P) "
        "with a parameter P declared PSD=True is accepted); see CVXPY's DPP "
        "documentation"
    )


def _parametric_quad_forms(expression):
    """The ``quad_form`` atoms of an expression tree whose matrix holds a parameter."""
    if isinstance(expression, cp.Problem):
        for part in (expression.objective, *expression.constraints):
            yield from _parametric_quad_forms(part)
        return
    if isinstance(expression, QuadForm) and expression.args[1].parameters():
        yield expression
    for arg in getattr(expression, "args", ()):
        yield from _parametric_quad_forms(arg)


def _as_list(items, argument: str, expected: str) -> list:
    """``items`` as a list; a single object or a non-sequence is refused by name."""
    if not isinstance(items, (list, tuple)):
        single = isinstance(
            items, (cp.Parameter, cp.Variable, cp.constraints.constraint.Constraint)
        )
        hint = "; to pass one, wrap it in a list" if single else ""
        raise TypeError(
            f"{argument} must be a list or tuple of {expected}, got {type(items).__name__}{hint}"
        )
    return list(items)


def _is_qp_dpp(problem: cp.Problem) -> bool:
    """DPP when ``quad_form(x, P)`` with a parameter P may stay in the objective (CVXPY's
    ``is_dpp(quad_form_dpp="qp")``, which its type annotations do not declare)."""
    return bool(cast(Any, problem).is_dpp(quad_form_dpp="qp"))
