"""Compile a DPP CVXPY problem once into a :class:`~cvxlpgd.problem.template.ConeTemplate`.

CVXPY's ``ParamConeProg`` stores the problem data as affine functions of its own
parameter vector; :func:`compile_problem` re-expresses them in the user's θ (the
parameters in the layer's order, each flattened column-major, symmetric ones in
full), turns CVXPY's ``A_cvx x + b ∈ K`` into SCS form ``Ax + s = b`` (A = −A_cvx),
and keeps only the entries of A and P that can be nonzero (fixed patterns).
"""

from __future__ import annotations

from typing import Any, cast

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.atoms.quad_form import QuadForm
from cvxpy.reductions.cvx_attr2constr import lower_value
from cvxpy.reductions.dgp2dcp.dgp2dcp import Dgp2Dcp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.geometric import check_geometric_program
from cvxlpgd.problem.naming import leaf_label
from cvxlpgd.problem.program import SparsePattern
from cvxlpgd.problem.readouts import dual_variable_owners, output_slots
from cvxlpgd.problem.template import ConeTemplate, ParameterSlot

_SYMMETRIC_ATTRIBUTES = ("symmetric", "PSD", "NSD")


def compile_problem(problem: cp.Problem, parameters, variables, *,
                    quadratic: bool = True, gp: bool = False) -> ConeTemplate:
    """Compile ``problem`` into a :class:`ConeTemplate`.

    Parameters
    ----------
    problem : cvxpy.Problem
        A DCP problem that follows the DPP rules (``quad_form(x, Q)`` with a PSD
        parameter Q in the objective included), or with ``gp=True`` a DGP problem.
    parameters : sequence of cvxpy.Parameter
        Every parameter of ``problem``, in the order the layer receives them.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        Outputs: a variable yields its value, a constraint (or one of its
        ``dual_variables``) its dual.
    quadratic : bool, default True
        Keep a quadratic objective as P (for Moreau/SCS/Clarabel). With False, CVXPY
        rewrites quadratics as second-order cones (the form diffcp differentiates).
    gp : bool, default False
        Compile a geometric program through CVXPY's DGP→DCP reduction: the cone
        program lives in log space, and θ holds the logarithms of the positive
        parameters (their slots have ``log_space=True``).

    Returns
    -------
    ConeTemplate

    Raises
    ------
    TypeError
        When ``problem``, a parameter or an output has the wrong type.
    ValueError
        When the problem is not DCP/DPP (DGP with ``gp=True``), a parameter is missing
        or foreign, an output does not belong to the problem, or a parametrized
        ``quad_form`` cannot stay parametric in this form.
    """
    parameters, variables = validate_problem(problem, parameters, variables, gp=gp)
    quadratic_parameters = not gp and needs_quadratic_form(problem)
    if quadratic_parameters and not quadratic:
        raise ValueError(_CONIC_FORM_REFUSED)
    # A fresh Problem object: CVXPY caches the compiled program on the problem, and its
    # cached path evaluates the parameters' values (None before any solve) for DGP.
    fresh = cp.Problem(problem.objective, problem.constraints)
    try:
        data, chain, inverse_data = fresh.get_problem_data(
            cp.SCS, gp=gp, solver_opts={"use_quad_obj": quadratic})
    except Exception as error:
        if quadratic_parameters:  # CVXPY could not keep Q in P (see the message)
            raise ValueError(_NOT_IN_P) from error
        raise
    param_prob = data[cp.settings.PARAM_PROB]
    n = int(param_prob.x.size)
    m = int(param_prob.constr_size)

    slots, lift = _parameter_lift(parameters, param_prob, chain, quadratic_parameters)
    c_map = sp.csr_matrix(param_prob.q[:n] @ lift)

    # [A_cvx | b] is stored column-major; CVXPY's constraint is A_cvx x + b ∈ K, so the
    # SCS-form matrix is A = −A_cvx.
    stacked = sp.csr_matrix(param_prob.A @ lift)
    A_entries = stacked[:m * n]
    A_pattern, A_map = _pattern_and_map(A_entries, (m, n), sign=-1.0)
    b_map = stacked[m * n:]

    P_pattern = P_map = None
    if quadratic and param_prob.P is not None and param_prob.P.nnz > 0:
        P_pattern, P_map = _pattern_and_map(sp.csr_matrix(param_prob.P @ lift), (n, n))

    cones = ConeDims(
        zero=int(param_prob.cone_dims.zero),
        nonneg=int(param_prob.cone_dims.nonneg),
        soc=tuple(int(d) for d in param_prob.cone_dims.soc),
        psd=tuple(int(d) for d in param_prob.cone_dims.psd),
        exp=int(param_prob.cone_dims.exp),
        power=tuple(float(a) for a in param_prob.cone_dims.p3d),
    )
    if cones.size != m:
        raise ValueError(f"the problem compiles to cones this package does not support "
                         f"({param_prob.cone_dims}); supported: zero, nonneg, SOC, PSD, exp, "
                         "3-d power")
    outputs = output_slots(variables, problem, param_prob, chain, inverse_data)
    b_map = sp.csr_matrix(b_map)
    maps = {"A": A_map, "P": P_map, "b": b_map, "c": c_map}
    column_usage = {name: np.zeros(lift.shape[1], dtype=bool) if matrix is None
                    else _used_columns(matrix) for name, matrix in maps.items()}
    return ConeTemplate(n=n, m=m, cones=cones, parameters=slots, outputs=outputs,
                        c_map=c_map, b_map=b_map, A_pattern=A_pattern, A_map=A_map,
                        P_pattern=P_pattern, P_map=P_map, column_usage=column_usage)


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


_QUAD_FORM_HINT = ("quad_form(x, Q) with a parameter Q stays parametric only in the objective, "
                   "where CVXPY keeps it in the quadratic term ½xᵀPx (P linear in Q)")
_CONIC_FORM_REFUSED = (
    _QUAD_FORM_HINT + "; this call needs the conic-only form, which has no P (solver='ECOS', or "
    "gradient='exact' with exact_backend='diffcp': diffcp differentiates cone programs "
    "without a quadratic term) and would fix Q at a value. Use gradient='lpgd' with solver "
    "'MOREAU', 'SCS' or 'CLARABEL', or gradient='exact' with exact_backend='moreau' and "
    "solver='MOREAU'.")
_NOT_IN_P = (
    _QUAD_FORM_HINT + ", and only where the objective is a sum of such terms and terms CVXPY "
    "rewrites as cones; here it sits inside another function (e.g. pos(quad_form(x, Q) - 1)). "
    "Write that term with sum_squares(F @ x) and a parameter F (Q = FᵀF) instead.")


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
            raise ValueError(f"variable {leaf_label(v, position, 'variables')} is {kind}; the "
                             "layer differentiates continuous (convex) problems only, so "
                             "declare it without integer=/boolean= (or relax it)")
    if gp:
        check_geometric_program(problem)
    else:
        _check_dcp_dpp(problem)
    for i, p in enumerate(parameters):
        if not isinstance(p, cp.Parameter):
            raise TypeError(f"parameters must be cvxpy.Parameter objects, got "
                            f"{type(p).__name__} at parameters[{i}]")
    ids = [p.id for p in parameters]
    if len(set(ids)) != len(ids):
        dup = next(i for i, p in enumerate(parameters) if ids.count(p.id) > 1)
        raise ValueError(f"parameter {leaf_label(parameters[dup], dup)} is listed more than once")
    problem_params = {p.id: p for p in problem.parameters()}
    foreign = [i for i, p in enumerate(parameters) if p.id not in problem_params]
    if foreign:
        raise ValueError(f"parameter {leaf_label(parameters[foreign[0]], foreign[0])} does not "
                         "appear in the problem: `parameters` must exactly match "
                         "problem.parameters()")
    missing = [leaf_label(p) for i, p in problem_params.items() if i not in set(ids)]
    if missing:
        raise ValueError(f"the problem's parameter(s) {', '.join(missing)} are not "
                         "listed in `parameters`, which must exactly match problem.parameters(): "
                         "every parameter must be an input of the layer")
    if not variables:
        raise ValueError("`variables` is empty: name at least one variable or constraint to output")
    var_ids = {v.id for v in problem.variables()} | set(dual_variable_owners(problem))
    con_ids = {c.id for c in problem.constraints}
    for i, v in enumerate(variables):
        if isinstance(v, cp.Variable):
            if v.id not in var_ids:
                raise ValueError(f"variable {leaf_label(v, i, 'variables')} does not appear in "
                                 "the problem (nor is it a dual variable of one of its "
                                 "constraints): outputs must be a subset of problem.variables() "
                                 "and its constraints")
        elif isinstance(v, cp.constraints.constraint.Constraint):
            if v.id not in con_ids:
                raise ValueError(f"constraint {v!s:.60} (variables[{i}]) is not one of the "
                                 "problem's constraints: outputs must be a subset of "
                                 "problem.variables() and its constraints")
        else:
            raise TypeError("variables must hold cvxpy.Variable or cvxpy Constraint objects, "
                            f"got {type(v).__name__} at variables[{i}]")
    return parameters, variables


def _check_dcp_dpp(problem) -> None:
    """DCP, and DPP (parametrized ``quad_form`` in the objective allowed)."""
    if not problem.is_dcp():
        hint = ""
        if problem.is_dgp():
            hint = "; it is a geometric program (DGP): pass gp=True"
        elif any(_parametric_quad_forms(problem)):
            hint = ("; quad_form(x, Q) with a parameter Q needs Q declared PSD=True (NSD=True "
                    "in a maximized objective)")
        raise ValueError("problem is not DCP (disciplined convex); cvxlpgd needs a convex "
                         "problem written by the DCP rules" + hint)
    if problem.is_dpp() or _is_qp_dpp(problem):
        return
    in_constraints = [c for c in problem.constraints if any(_parametric_quad_forms(c))]
    if in_constraints:
        raise ValueError(f"constraint {in_constraints[0]!s:.60} uses quad_form(x, Q) with a "
                         "parameter Q, which is only supported in the objective: it cannot "
                         "stay parametric in a constraint (CVXPY "
                         "rewrites it as a cone through a factor of Q's value): "
                         + _QUAD_FORM_HINT + ". In a constraint write sum_squares(F @ x) "
                         "with a parameter F (Q = FᵀF) instead")
    raise ValueError("problem is not DPP (disciplined parametrized): parameters must enter "
                     "affinely, e.g. write quad_form(x, P) in a constraint as "
                     "sum_squares(L @ x) with a parameter L (in the objective, quad_form(x, P) "
                     "with a parameter P declared PSD=True is accepted); see CVXPY's DPP "
                     "documentation")


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
        single = isinstance(items, (cp.Parameter, cp.Variable,
                                    cp.constraints.constraint.Constraint))
        hint = "; to pass one, wrap it in a list" if single else ""
        raise TypeError(f"{argument} must be a list or tuple of {expected}, got "
                        f"{type(items).__name__}{hint}")
    return list(items)


def _is_symmetric(leaf) -> bool:
    return any(leaf.attributes.get(attr) for attr in _SYMMETRIC_ATTRIBUTES)


def _parameter_lift(parameters, param_prob, chain, quadratic_parameters: bool):
    """Slots of the user's θ and the matrix L with CVXPY's θ̃ = L [θ; 1].

    CVXPY may store a parameter reduced (symmetric → upper triangle, diagonal →
    diagonal): then its block of L selects those entries. In a geometric program the
    DGP→DCP reduction replaces a positive parameter p by a parameter holding log p:
    its slot is marked ``log_space`` (the layer passes log p).
    """
    id_map = chain.compose_param_id_map()
    logged = set()
    for reduction in chain.reductions:
        if isinstance(reduction, Dgp2Dcp):
            logged = set(reduction.param_id_map)
    columns = param_prob.param_id_to_col
    slots, offset = [], 0
    rows, cols = [], []
    for p in parameters:
        size = int(p.size)
        final_ids = [i for i in dict.fromkeys([*id_map.get(p.id, []), p.id]) if i in columns]
        if not final_ids:  # CVXPY evaluated it: its current value would be baked in
            raise ValueError(_NOT_IN_P if quadratic_parameters else
                             f"CVXPY compiled parameter {p.name()!r} to a constant; it "
                             "cannot be an input of the layer")
        if len(final_ids) > 1:
            raise ValueError(f"parameter {p.name()!r} enters the geometric program both "
                             "through its logarithm (as a coefficient) and as itself (e.g. as "
                             "an exponent); use two parameters for the two roles")
        slots.append(ParameterSlot(name=p.name(), shape=tuple(p.shape), offset=offset,
                                   size=size, symmetric=_is_symmetric(p),
                                   log_space=p.id in logged))
        final_id = final_ids[0]
        start = columns[final_id]
        reduced = int(param_prob.param_id_to_size[final_id])
        if reduced == size:
            source = np.arange(size)
        else:
            coded = np.arange(size, dtype=float).reshape(p.shape, order="F")
            source = np.asarray(lower_value(p, coded), dtype=int).ravel()
        rows.append(start + np.arange(reduced))
        cols.append(offset + source)
        offset += size
    total = param_prob.total_param_size + 1
    rows.append(np.array([total - 1]))
    cols.append(np.array([offset]))
    row_index, col_index = np.concatenate(rows), np.concatenate(cols)
    lift = sp.csc_matrix((np.ones(row_index.size), (row_index, col_index)),
                         shape=(total, offset + 1))
    return tuple(slots), lift


def _used_columns(matrix) -> np.ndarray:
    """Columns holding a nonzero (explicit zeros do not count)."""
    matrix = sp.csc_matrix(matrix, copy=True)
    matrix.eliminate_zeros()
    return np.diff(matrix.indptr) > 0


def _pattern_and_map(entry_map: sp.csr_matrix, shape, sign: float = 1.0):
    """Keep the rows of a (column-major) entry map that can be nonzero: pattern + data map."""
    entry_map = sp.csr_matrix(entry_map)
    entry_map.eliminate_zeros()
    nonzero = np.flatnonzero(np.diff(entry_map.indptr))
    rows, cols = nonzero % shape[0], nonzero // shape[0]
    indptr = np.searchsorted(cols, np.arange(shape[1] + 1)).astype(np.int32)
    pattern = SparsePattern(rows=rows.astype(np.int32), cols=cols.astype(np.int32),
                            indptr=indptr, shape=tuple(shape))
    return pattern, sp.csr_matrix(sign * entry_map[nonzero])


def _is_qp_dpp(problem: cp.Problem) -> bool:
    """DPP when ``quad_form(x, P)`` with a parameter P may stay in the objective (CVXPY's
    ``is_dpp(quad_form_dpp="qp")``, which its type annotations do not declare)."""
    return bool(cast(Any, problem).is_dpp(quad_form_dpp="qp"))
