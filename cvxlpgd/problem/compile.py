"""Compile a DPP CVXPY problem once into a :class:`~cvxlpgd.problem.template.ConeTemplate`.

CVXPY's ``ParamConeProg`` stores the problem data as affine functions of its own
parameter vector; :func:`compile_problem` re-expresses them in the user's θ (the
parameters in the layer's order, each flattened column-major, symmetric ones in
full), turns CVXPY's ``A_cvx x + b ∈ K`` into SCS form ``Ax + s = b`` (A = −A_cvx),
and keeps only the entries of A and P that can be nonzero (fixed patterns).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.cvx_attr2constr import lower_value
from cvxpy.reductions.dgp2dcp.dgp2dcp import Dgp2Dcp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import SparsePattern
from cvxlpgd.problem.readouts import output_slots
from cvxlpgd.problem.template import ConeTemplate, ParameterSlot
from cvxlpgd.problem.validate import (
    CONIC_FORM_REFUSED,
    NOT_IN_P,
    needs_quadratic_form,
    validate_problem,
)

_SYMMETRIC_ATTRIBUTES = ("symmetric", "PSD", "NSD")


def compile_problem(
    problem: cp.Problem, parameters, variables, *, quadratic: bool = True, gp: bool = False
) -> ConeTemplate:
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
        raise ValueError(CONIC_FORM_REFUSED)
    # A fresh Problem object: CVXPY caches the compiled program on the problem, and its
    # cached path evaluates the parameters' values (None before any solve) for DGP.
    fresh = cp.Problem(problem.objective, problem.constraints)
    try:
        data, chain, inverse_data = fresh.get_problem_data(
            cp.SCS, gp=gp, solver_opts={"use_quad_obj": quadratic}
        )
    except Exception as error:
        if quadratic_parameters:  # CVXPY could not keep Q in P (see the message)
            raise ValueError(NOT_IN_P) from error
        raise
    param_prob = data[cp.settings.PARAM_PROB]
    n = int(param_prob.x.size)
    m = int(param_prob.constr_size)

    slots, lift = _parameter_lift(parameters, param_prob, chain, quadratic_parameters)
    c_map = sp.csr_matrix(param_prob.q[:n] @ lift)

    # [A_cvx | b] is stored column-major; CVXPY's constraint is A_cvx x + b ∈ K, so the
    # SCS-form matrix is A = −A_cvx.
    stacked = sp.csr_matrix(param_prob.A @ lift)
    A_entries = stacked[: m * n]
    A_pattern, A_map = _pattern_and_map(A_entries, (m, n), sign=-1.0)
    b_map = stacked[m * n :]

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
        raise ValueError(
            f"the problem compiles to cones this package does not support "
            f"({param_prob.cone_dims}); supported: zero, nonneg, SOC, PSD, exp, "
            "3-d power"
        )
    outputs = output_slots(variables, problem, param_prob, chain, inverse_data)
    b_map = sp.csr_matrix(b_map)
    maps = {"A": A_map, "P": P_map, "b": b_map, "c": c_map}
    column_usage = {
        name: np.zeros(lift.shape[1], dtype=bool) if matrix is None else _used_columns(matrix)
        for name, matrix in maps.items()
    }
    return ConeTemplate(
        n=n,
        m=m,
        cones=cones,
        parameters=slots,
        outputs=outputs,
        c_map=c_map,
        b_map=b_map,
        A_pattern=A_pattern,
        A_map=A_map,
        P_pattern=P_pattern,
        P_map=P_map,
        column_usage=column_usage,
    )


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
            raise ValueError(
                NOT_IN_P
                if quadratic_parameters
                else f"CVXPY compiled parameter {p.name()!r} to a constant; it "
                "cannot be an input of the layer"
            )
        if len(final_ids) > 1:
            raise ValueError(
                f"parameter {p.name()!r} enters the geometric program both "
                "through its logarithm (as a coefficient) and as itself (e.g. as "
                "an exponent); use two parameters for the two roles"
            )
        slots.append(
            ParameterSlot(
                name=p.name(),
                shape=tuple(p.shape),
                offset=offset,
                size=size,
                symmetric=_is_symmetric(p),
                log_space=p.id in logged,
            )
        )
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
    lift = sp.csc_matrix(
        (np.ones(row_index.size), (row_index, col_index)), shape=(total, offset + 1)
    )
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
    pattern = SparsePattern(
        rows=rows.astype(np.int32), cols=cols.astype(np.int32), indptr=indptr, shape=tuple(shape)
    )
    return pattern, sp.csr_matrix(sign * entry_map[nonzero])
