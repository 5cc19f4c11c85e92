"""Read-outs: how a requested output is read from a solution (x, y) of the cone program.

A variable's value is a slice of x, unpacked from CVXPY's reduced storage
(symmetric variables keep their upper triangle); a constraint's dual is a slice of
y, unpacked from the cone's storage (svec for PSD blocks). Each read-out is a sparse
matrix R with ``output = R x`` (or ``R y``), flattened column-major as CVXPY stores
values.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.constraints import (
    PSD,
    SOC,
    Equality,
    ExpCone,
    Inequality,
    NonNeg,
    NonPos,
    PowCone3D,
    Zero,
)
from cvxpy.reductions.cvx_attr2constr import recover_value_for_leaf

from cvxlpgd.cones import svec_size, svec_unpack_matrix
from cvxlpgd.template import OutputSlot

try:  # CVXPY ≥ 1.4 lowers PSD constraints to SvecPSD
    from cvxpy.constraints.psd import SvecPSD
except ImportError:  # pragma: no cover - depends on the CVXPY version
    SvecPSD = PSD

# Order of the cones in the solver's y vector (SCS convention).
_CONE_ORDER = (Zero, NonNeg, SOC, PSD, SvecPSD, ExpCone, PowCone3D)


def _dual_offsets(param_prob) -> dict[int, tuple[int, object]]:
    """Row offset in y and the constraint object, for every canonical constraint."""
    offsets, row = {}, 0
    for cone_type in _CONE_ORDER:
        for con in param_prob.constr_map.get(cone_type, []):
            offsets[con.id] = (row, con)
            if cone_type is PSD:
                row += svec_size(con.shape[0])
            elif cone_type in (SOC,):
                row += int(sum(con.cone_sizes()))
            elif cone_type in (ExpCone, PowCone3D):
                row += 3 * int(con.num_cones())
            else:
                row += int(con.size)
    return offsets


def output_slot(item, param_prob, chain, n: int, m: int) -> OutputSlot:
    """The read-out of ``item`` (a variable or a constraint) from a compiled problem."""
    if isinstance(item, cp.Variable):
        id_map = chain.compose_var_id_map()
        final = id_map.get(item.id, [item.id])
        if len(final) != 1:
            raise ValueError(f"variable {item.name()!r} is complex; complex outputs are not "
                             "supported")
        final_id = final[0]
        col = param_prob.var_id_to_col[final_id]
        reduced = int(param_prob.id_to_var[final_id].size)
        if reduced == item.size:
            recover = sp.identity(reduced, format="csr")
        else:
            recover = sp.csr_matrix(np.column_stack([
                np.ravel(recover_value_for_leaf(item, e, project=False), order="F")
                for e in np.eye(reduced)]))
        readout = sp.hstack([sp.csr_matrix((item.size, col)), recover,
                             sp.csr_matrix((item.size, n - col - reduced))], format="csr")
        return OutputSlot(name=item.name(), shape=tuple(item.shape), source="primal",
                          readout=readout)

    con_map = chain.compose_constr_id_map()
    final_id = con_map.get(item.id, item.id)
    offsets = _dual_offsets(param_prob)
    if final_id not in offsets:
        raise ValueError(f"the dual of constraint {item!s:.60} is not available: CVXPY "
                         "eliminated or split it")
    row, canonical = offsets[final_id]
    label = f"dual({item!s:.40})"
    if isinstance(item, (Equality, Inequality, Zero, NonNeg, NonPos)) and isinstance(
            canonical, (Zero, NonNeg)) and canonical.size == item.size:
        size = int(item.size)
        recover = sp.identity(size, format="csr")
        shape = tuple(item.shape)
    elif isinstance(item, PSD) and isinstance(canonical, (PSD, SvecPSD)):
        order = int(item.shape[0])
        size = svec_size(order)
        recover = svec_unpack_matrix(order)
        shape = (order, order)
    else:
        raise ValueError(f"the dual of constraint {item!s:.60} ({type(item).__name__}, "
                         f"canonicalized to {type(canonical).__name__}) is not supported as "
                         "an output; duals of equality, inequality and PSD constraints are")
    readout = sp.hstack([sp.csr_matrix((recover.shape[0], row)), recover,
                         sp.csr_matrix((recover.shape[0], m - row - size))], format="csr")
    return OutputSlot(name=label, shape=shape, source="dual", readout=readout)

