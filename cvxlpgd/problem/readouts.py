"""Read-outs: how a requested output is read from a solution (x, y) of the cone program.

Each read-out is a sparse matrix R with ``output = R x`` (or ``R y``), the output
flattened column-major as CVXPY stores values.

* A **variable**'s value is a slice of x, unpacked from CVXPY's reduced storage
  (symmetric variables keep their upper triangle).
* The dual of a **PSD** constraint is its block of y in svec storage, unpacked to the
  full symmetric matrix (``X_ii = v_k``, ``X_ij = X_ji = v_k / √2``).
* Every other dual — equalities, inequalities, ``SOC`` (the t part and the X part
  separately: ``con.dual_variables[0]`` and ``[1]``), ``ExpCone``, ``PowCone3D``
  (three parts each), ``PowConeND`` (W and z) — is a *selection* of y: each entry
  of ``con.dual_variables[i]`` is ± one entry of y. (For example, the rows of an SOC
  with cones ``(t_j, X_j)`` hold ``[t_1, X_1, t_2, X_2, …]``, and a ``PowConeND`` of
  dimension > 3 is split by CVXPY into a tree of 3-d power cones whose leaves carry
  the duals of W.) Rather than restate each of CVXPY's conventions, the selection
  is recorded from CVXPY's own dual recovery, which is linear in y: inverted once
  with ``y_k = k + 1`` (every entry names its source and sign) and once with a
  random y, which must be reproduced exactly by the recorded selection. The values
  therefore equal ``dual_value`` by construction.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.constraints import PSD, SOC, ExpCone, NonNeg, PowCone3D, Zero
from cvxpy.constraints.psd import SvecPSD
from cvxpy.reductions.cvx_attr2constr import recover_value_for_leaf

from cvxlpgd.problem.cones import svec_size, svec_unpack_matrix
from cvxlpgd.problem.template import OutputSlot

# Order of the cones in the solver's y vector (SCS convention).
_CONE_ORDER = (Zero, NonNeg, SOC, PSD, SvecPSD, ExpCone, PowCone3D)


def dual_variable_owners(problem: cp.Problem) -> dict[int, tuple[object, int]]:
    """Map the id of every constraint's dual variable to ``(constraint, index)``.

    Parameters
    ----------
    problem : cvxpy.Problem
        The problem whose constraints are searched.

    Returns
    -------
    dict
        ``{con.dual_variables[i].id: (con, i)}``.
    """
    return {
        dual.id: (con, index)
        for con in problem.constraints
        for index, dual in enumerate(con.dual_variables)
    }


def output_slots(items, problem, param_prob, chain, inverse_data) -> tuple[OutputSlot, ...]:
    """The read-outs of ``items`` (variables, constraints, dual variables).

    Parameters
    ----------
    items : sequence
        ``cvxpy.Variable`` (a variable of the problem, or a constraint's dual
        variable) or ``cvxpy`` constraints with a single dual variable.
    problem : cvxpy.Problem
        The problem the items belong to.
    param_prob, chain, inverse_data
        What ``problem.get_problem_data`` returned for it.

    Returns
    -------
    tuple of OutputSlot

    Raises
    ------
    ValueError
        For complex variables, constraints with several dual parts passed whole, and
        duals CVXPY eliminated or recovers other than by a selection of y.
    """
    n, m = int(param_prob.x.size), int(param_prob.constr_size)
    owners = dual_variable_owners(problem)
    probe = None
    slots = []
    for item in items:
        if isinstance(item, cp.Variable) and item.id not in owners:
            slots.append(_primal_slot(item, param_prob, chain, n))
            continue
        con: Any
        index: int | None
        con, index = owners[item.id] if isinstance(item, cp.Variable) else (item, None)
        parts = len(con.dual_variables)
        if index is None and parts != 1:
            raise ValueError(
                f"constraint {con!s:.60} has {parts} dual variables (CVXPY's "
                "dual_value is a list); request each as an output: "
                + ", ".join(f"con.dual_variables[{i}]" for i in range(parts))
            )
        index = 0 if index is None else index
        label = f"dual({con!s:.40})" + (f"[{index}]" if parts > 1 else "")
        dual = con.dual_variables[index]
        if isinstance(con, PSD):
            readout = _psd_readout(con, param_prob, chain, m)
        else:
            probe = probe or _DualRecovery(chain, inverse_data, n, m)
            readout = probe.readout(con, index)
        slots.append(
            OutputSlot(name=label, shape=tuple(dual.shape), source="dual", readout=readout)
        )
    return tuple(slots)


def _primal_slot(item, param_prob, chain, n: int) -> OutputSlot:
    id_map = chain.compose_var_id_map()
    final = id_map.get(item.id, [item.id])
    if len(final) != 1:
        raise ValueError(f"variable {item.name()!r} is complex; complex outputs are not supported")
    final_id = final[0]
    col = param_prob.var_id_to_col[final_id]
    reduced = int(param_prob.id_to_var[final_id].size)
    if reduced == item.size:
        recover = sp.identity(reduced, format="csr")
    else:
        recover = sp.csr_matrix(
            np.column_stack(
                [
                    np.ravel(recover_value_for_leaf(item, e, project=False), order="F")
                    for e in np.eye(reduced)
                ]
            )
        )
    readout = sp.hstack(
        [sp.csr_matrix((item.size, col)), recover, sp.csr_matrix((item.size, n - col - reduced))],
        format="csr",
    )
    return OutputSlot(name=item.name(), shape=tuple(item.shape), source="primal", readout=readout)


def _psd_readout(con, param_prob, chain, m: int) -> sp.csr_matrix:
    """svec block of y → full symmetric matrix (vec column-major)."""
    final_id = chain.compose_constr_id_map().get(con.id, con.id)
    row, canonical = None, None
    offset = 0
    for cone_type in _CONE_ORDER:
        for candidate in param_prob.constr_map.get(cone_type, []):
            if candidate.id == final_id:
                row, canonical = offset, candidate
            if cone_type is PSD:
                offset += svec_size(candidate.shape[0])
            elif cone_type is SOC:
                offset += int(sum(candidate.cone_sizes()))
            elif cone_type in (ExpCone, PowCone3D):
                offset += 3 * int(candidate.num_cones())
            else:
                offset += int(candidate.size)
    if row is None or not isinstance(canonical, (PSD, SvecPSD)):
        raise ValueError(
            f"the dual of constraint {con!s:.60} is not available: CVXPY eliminated or rewrote it"
        )
    order = int(con.shape[0])
    recover = svec_unpack_matrix(order)
    return sp.hstack(
        [
            sp.csr_matrix((recover.shape[0], row)),
            recover,
            sp.csr_matrix((recover.shape[0], m - row - svec_size(order))),
        ],
        format="csr",
    )


class _DualRecovery:
    """CVXPY's dual recovery y ↦ dual values, recorded as a signed selection of y."""

    def __init__(self, chain, inverse_data, n: int, m: int):
        self.m = m
        self.coded = _recover_duals(chain, inverse_data, n, np.arange(1.0, m + 1.0))
        self.check_y = np.random.default_rng(0).standard_normal(m)
        self.checked = _recover_duals(chain, inverse_data, n, self.check_y)

    def readout(self, con, index: int) -> sp.csr_matrix:
        """R (size × m) with ``con.dual_variables[index]`` (flattened F) ``= R y``."""
        if con.id not in self.coded:
            raise ValueError(
                f"the dual of constraint {con!s:.60} is not available: CVXPY "
                "eliminated it while compiling"
            )
        codes = _dual_part(con, self.coded[con.id], index)
        checked = _dual_part(con, self.checked[con.id], index)
        # Entry j of the dual is sign_j · y[source_j] (source −1: constant zero).
        source = np.rint(np.abs(codes)).astype(int) - 1
        sign = np.sign(codes)
        expected = np.where(source >= 0, sign * self.check_y[np.maximum(source, 0)], 0.0)
        if (
            not np.allclose(np.abs(codes), source + 1, rtol=0, atol=1e-9)
            or np.any(source >= self.m)
            or not np.allclose(checked, expected, rtol=1e-12, atol=1e-12)
        ):
            raise ValueError(
                f"the dual of constraint {con!s:.60} ({type(con).__name__}) is "
                "not a selection of the cone program's dual vector; it is not "
                "supported as an output"
            )
        rows = np.flatnonzero(source >= 0)
        return sp.csr_matrix((sign[rows], (rows, source[rows])), shape=(codes.size, self.m))


def _recover_duals(chain, inverse_data, n: int, y: np.ndarray) -> dict:
    """The constraints' dual values CVXPY recovers from a solver dual vector y.

    The solver's answer is mocked in the form SCS returns (the chain was built for
    SCS); only y matters here.
    """
    m = y.size
    answer = {
        "x": np.zeros(n),
        "y": y,
        "s": np.zeros(m),
        "info": {"status_val": 1, "solve_time": 0.0, "setup_time": 0.0, "iter": 0, "pobj": 0.0},
    }
    return chain.invert(answer, inverse_data).dual_vars


def _dual_part(con, value, index: int) -> np.ndarray:
    """``con.dual_variables[index]`` for a recovered dual ``value``, flattened column-major.

    CVXPY splits the dual into its parts with ``save_dual_value``; it runs on a copy
    so that the user's constraint keeps its own dual values.
    """
    copy = con.copy()
    copy.save_dual_value(value)
    part = np.ravel(np.asarray(copy.dual_variables[index].value, dtype=float), order="F")
    size = int(con.dual_variables[index].size)
    if part.size != size:  # pragma: no cover - a CVXPY convention we do not know
        raise ValueError(
            f"CVXPY recovered {part.size} values for a dual part of size {size} "
            f"of constraint {con!s:.60}"
        )
    return part
