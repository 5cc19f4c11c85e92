"""Compile a DPP CVXPY problem once into a parametrized cone program.

CVXPY's ``ParamConeProg`` stores the problem data as affine functions of the stacked
parameter vector. With θ the user's parameters flattened column-major and
concatenated in the order they were given, and θ̃ = [θ; 1],

    c = T_c θ̃,      b = T_b θ̃,      A.data = T_A θ̃,      P.data = T_P θ̃

in SCS form (``Ax + s = b``, ``s ∈ K``) with fixed sparsity patterns for A and P
(P stored full symmetric: both triangles). For a batch, Θ̃ has one column per
element and every map is one sparse × dense product. The parameter gradient is the
adjoint:

    dθ̃ = T_cᵀ dc + T_bᵀ db + T_Aᵀ dA.data + T_Pᵀ dP.data.

Requested outputs are linear read-outs ``R x`` (variables) or ``R y`` (constraint
duals), with R unpacking CVXPY's reduced storage (symmetric variables, svec PSD
duals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
from cvxpy.reductions.cvx_attr2constr import lower_value, recover_value_for_leaf

from cvxlpgd.cones import ConeDims, svec_size, svec_unpack_matrix

try:  # CVXPY ≥ 1.4 lowers PSD constraints to SvecPSD
    from cvxpy.constraints.psd import SvecPSD
except ImportError:  # pragma: no cover - depends on the CVXPY version
    SvecPSD = PSD

_SYMMETRIC_ATTRIBUTES = ("symmetric", "PSD", "NSD")
# Order of the cones in the solver's y vector (SCS convention).
_CONE_ORDER = (Zero, NonNeg, SOC, PSD, SvecPSD, ExpCone, PowCone3D)


@dataclass(frozen=True)
class ParameterSlot:
    """Where one user parameter lives in the stacked vector θ.

    Attributes
    ----------
    name : str
        The parameter's name.
    shape : tuple of int
        Its shape (without batch dimension).
    offset : int
        First index of its entries in θ.
    size : int
        Number of entries (flattened column-major).
    symmetric : bool
        Declared symmetric, PSD or NSD: its gradient is symmetrized.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    symmetric: bool


@dataclass(frozen=True)
class OutputSlot:
    """How one requested output is read from the solution: ``value = readout @ x`` (or y).

    Attributes
    ----------
    name : str
        The variable's name, or ``dual(<constraint>)``.
    shape : tuple of int
        The output's shape (without batch dimension).
    source : str
        ``"primal"`` (reads x) or ``"dual"`` (reads y).
    readout : scipy.sparse.csr_matrix
        R, with the output flattened column-major equal to ``R @ x`` (or ``R @ y``).
    """

    name: str
    shape: tuple[int, ...]
    source: str  # "primal" (reads x) or "dual" (reads y)
    readout: sp.csr_matrix


@dataclass(frozen=True)
class SparsePattern:
    """A fixed CSC sparsity pattern (row indices of the stored entries, column pointers).

    Attributes
    ----------
    rows, cols : numpy.ndarray
        Row and column index of every stored entry, in CSC order.
    indptr : numpy.ndarray
        CSC column pointers.
    shape : tuple of int
        The matrix shape.
    """

    rows: np.ndarray
    cols: np.ndarray
    indptr: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.rows.size)

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The CSC matrix with this pattern holding ``data`` (copied).

        Parameters
        ----------
        data : numpy.ndarray
            One value per stored entry, in pattern order.

        Returns
        -------
        scipy.sparse.csc_matrix
        """
        return sp.csc_matrix((np.array(data, dtype=float), self.rows.copy(), self.indptr.copy()),
                             shape=self.shape)


@dataclass
class ProgramBatch:
    """Cone-program data of a whole batch; column ``i`` of each array is element ``i``.

    Attributes
    ----------
    c : numpy.ndarray
        Costs, (n, B).
    b : numpy.ndarray
        Right-hand sides, (m, B).
    A_data : numpy.ndarray
        Stored entries of A, (nnz_A, B).
    P_data : numpy.ndarray or None
        Stored entries of P, (nnz_P, B), or None without a quadratic term.
    """

    c: np.ndarray  # (n, B)
    b: np.ndarray  # (m, B)
    A_data: np.ndarray  # (nnz_A, B)
    P_data: np.ndarray | None  # (nnz_P, B)

    @property
    def batch_size(self) -> int:
        """Number of elements B."""
        return self.c.shape[1]


@dataclass(frozen=True)
class ConeTemplate:
    """A parametrized cone program in SCS form, affine in the user's parameters.

    Build it with :func:`compile_problem`. With θ̃ = [θ; 1]: ``c = c_map @ θ̃``,
    ``b = b_map @ θ̃``, ``A.data = A_map @ θ̃``, ``P.data = P_map @ θ̃``.

    Attributes
    ----------
    n, m : int
        Number of variables and of constraint rows.
    cones : ConeDims
        The cone K.
    parameters : tuple of ParameterSlot
        The user's parameters, in the layer's order.
    outputs : tuple of OutputSlot
        The requested outputs, in order.
    c_map, b_map : scipy.sparse.csr_matrix
        Affine maps θ̃ ↦ c and θ̃ ↦ b.
    A_pattern : SparsePattern
        Sparsity pattern of A (SCS form, ``Ax + s = b``).
    A_map : scipy.sparse.csr_matrix
        Affine map θ̃ ↦ stored entries of A.
    P_pattern : SparsePattern or None
        Sparsity pattern of P (full symmetric), None without quadratic term.
    P_map : scipy.sparse.csr_matrix or None
        Affine map θ̃ ↦ stored entries of P.
    """

    n: int
    m: int
    cones: ConeDims
    parameters: tuple[ParameterSlot, ...]
    outputs: tuple[OutputSlot, ...]
    c_map: sp.csr_matrix
    b_map: sp.csr_matrix
    A_pattern: SparsePattern
    A_map: sp.csr_matrix
    P_pattern: SparsePattern | None
    P_map: sp.csr_matrix | None
    #: For each of "A", "P", "b", "c": which columns of θ̃ its map uses (computed once,
    #: since scanning the maps costs more than a small call).
    column_usage: dict = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        """Length of θ (all user parameters, flattened)."""
        return self.c_map.shape[1] - 1

    @property
    def quadratic(self) -> bool:
        """True when the objective carries a quadratic term P."""
        return self.P_pattern is not None

    # ---- parameters → problem data -------------------------------------------------

    def stack_parameters(self, values: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Θ̃ of shape (num_parameters + 1, B) from per-parameter arrays.

        Parameters
        ----------
        values : list of numpy.ndarray
            One array per parameter, of shape ``(B, *slot.shape)`` or ``slot.shape``
            (broadcast to every element).
        batch_size : int
            B.

        Returns
        -------
        numpy.ndarray
            Each column is one element's θ (flattened column-major) followed by 1.
        """
        theta = np.empty((self.num_parameters + 1, batch_size))
        for slot, value in zip(self.parameters, values):
            value = np.asarray(value, dtype=float)
            if value.ndim == len(slot.shape):
                value = np.broadcast_to(value, (batch_size, *slot.shape))
            theta[slot.offset:slot.offset + slot.size] = _flatten_fortran(value).T
        theta[-1] = 1.0
        return theta

    def program_data(self, theta: np.ndarray) -> ProgramBatch:
        """Evaluate c, b, A.data (and P.data) for every column of Θ̃.

        Parameters
        ----------
        theta : numpy.ndarray
            Θ̃, (num_parameters + 1, B), from :meth:`stack_parameters`.

        Returns
        -------
        ProgramBatch
        """
        return ProgramBatch(
            c=np.asarray(self.c_map @ theta),
            b=np.asarray(self.b_map @ theta),
            A_data=np.asarray(self.A_map @ theta),
            P_data=None if self.P_map is None else np.asarray(self.P_map @ theta),
        )

    def depends_on(self, batched: list[bool]) -> dict[str, bool]:
        """Which of A, P, b, c vary with the parameters flagged in ``batched``.

        Parameters
        ----------
        batched : list of bool
            One flag per parameter.

        Returns
        -------
        dict
            ``{"A": bool, "P": bool, "b": bool, "c": bool}``.
        """
        columns = np.zeros(self.num_parameters + 1, dtype=bool)
        for slot, flag in zip(self.parameters, batched):
            columns[slot.offset:slot.offset + slot.size] = flag
        return {name: bool(np.any(used & columns)) for name, used in self.column_usage.items()}

    # ---- problem-data gradient → parameter gradient --------------------------------

    def parameter_gradient(self, dc: np.ndarray, db: np.ndarray, dA_data: np.ndarray,
                           dP_data: np.ndarray | None = None) -> list[np.ndarray]:
        """Adjoint of :meth:`program_data`, split per parameter.

        ``dθ̃ = T_cᵀ dc + T_bᵀ db + T_Aᵀ dA + T_Pᵀ dP``; each data gradient has one column
        per batch element.

        Parameters
        ----------
        dc, db, dA_data : numpy.ndarray
            Gradients in c (n, B), b (m, B) and the stored entries of A (nnz_A, B).
        dP_data : numpy.ndarray, optional
            Gradient in the stored entries of P (nnz_P, B).

        Returns
        -------
        list of numpy.ndarray
            One array per parameter, of shape ``(B, *slot.shape)``; gradients of
            symmetric parameters are symmetrized (the gradient within symmetric
            matrices).
        """
        dtheta = self.c_map.T @ dc + self.b_map.T @ db + self.A_map.T @ dA_data
        if dP_data is not None and self.P_map is not None:
            dtheta = dtheta + self.P_map.T @ dP_data
        dtheta = np.asarray(dtheta)
        grads = []
        for slot in self.parameters:
            block = dtheta[slot.offset:slot.offset + slot.size].T
            grad = _unflatten_fortran(block, slot.shape)
            if slot.symmetric:
                grad = 0.5 * (grad + np.swapaxes(grad, -1, -2))
            grads.append(grad)
        return grads

    # ---- solution → outputs ----------------------------------------------------------

    def recover_outputs(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Requested outputs, each of shape ``(B, *slot.shape)``, from x (n, B) and y (m, B).

        Parameters
        ----------
        x : numpy.ndarray
            Primal solutions, (n, B).
        y : numpy.ndarray
            Dual solutions, (m, B).

        Returns
        -------
        list of numpy.ndarray
        """
        return [
            _unflatten_fortran(np.asarray(slot.readout @ (x if slot.source == "primal" else y)).T,
                               slot.shape)
            for slot in self.outputs
        ]

    def output_adjoint(self, grads: list[np.ndarray | None],
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Adjoint of :meth:`recover_outputs`: incoming dx (n, B) and dy (m, B).

        Parameters
        ----------
        grads : list of numpy.ndarray or None
            Gradient of the loss per output, shape ``(B, *slot.shape)``; None stands
            for an output the loss does not depend on.
        batch_size : int
            B.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``dx = Σ Rᵀ grad`` over primal outputs and ``dy`` over dual outputs.
        """
        dx = np.zeros((self.n, batch_size))
        dy = np.zeros((self.m, batch_size))
        for slot, grad in zip(self.outputs, grads):
            if grad is None:
                continue
            flat = _flatten_fortran(np.asarray(grad, dtype=float).reshape(batch_size, *slot.shape))
            target = dx if slot.source == "primal" else dy
            target += slot.readout.T @ flat.T
        return dx, dy


def compile_problem(problem: cp.Problem, parameters, variables, *,
                    quadratic: bool = True) -> ConeTemplate:
    """Compile ``problem`` into a :class:`ConeTemplate`.

    Parameters
    ----------
    problem : cvxpy.Problem
        A DCP problem that follows the DPP rules.
    parameters : sequence of cvxpy.Parameter
        Every parameter of ``problem``, in the order the layer receives them.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        Outputs: a variable yields its value, a constraint its dual.
    quadratic : bool, default True
        Keep a quadratic objective as P (for SCS/Clarabel). With False, CVXPY rewrites
        quadratics as second-order cones (the form diffcp differentiates).

    Returns
    -------
    ConeTemplate

    Raises
    ------
    TypeError
        When ``problem``, a parameter or an output has the wrong type.
    ValueError
        When the problem is not DCP/DPP, a parameter is missing or foreign, or an
        output does not belong to the problem.
    """
    parameters, variables = validate_problem(problem, parameters, variables)
    data, chain, _ = problem.get_problem_data(cp.SCS, solver_opts={"use_quad_obj": quadratic})
    param_prob = data[cp.settings.PARAM_PROB]
    n = int(param_prob.x.size)
    m = int(param_prob.constr_size)

    slots, lift = _parameter_lift(parameters, param_prob, chain)
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
    outputs = tuple(_output_slot(v, param_prob, chain, n, m) for v in variables)
    b_map = sp.csr_matrix(b_map)
    maps = {"A": A_map, "P": P_map, "b": b_map, "c": c_map}
    column_usage = {name: np.zeros(lift.shape[1], dtype=bool) if matrix is None
                    else _used_columns(matrix) for name, matrix in maps.items()}
    return ConeTemplate(n=n, m=m, cones=cones, parameters=slots, outputs=outputs,
                        c_map=c_map, b_map=b_map, A_pattern=A_pattern, A_map=A_map,
                        P_pattern=P_pattern, P_map=P_map, column_usage=column_usage)


def validate_problem(problem, parameters, variables):
    """Check the problem, parameters and outputs; return them as lists.

    Parameters
    ----------
    problem : cvxpy.Problem
        Must be DCP and DPP.
    parameters : sequence of cvxpy.Parameter
        Every parameter of ``problem``, each once.
    variables : sequence of cvxpy.Variable or cvxpy.Constraint
        Outputs, all of ``problem``.

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
    if not problem.is_dcp():
        raise ValueError("problem is not DCP (disciplined convex); cvxlpgd needs a convex "
                         "problem written by the DCP rules")
    if not problem.is_dpp():
        raise ValueError("problem is not DPP (disciplined parametrized): parameters must enter "
                         "affinely, e.g. write quad_form(x, P) as sum_squares(L @ x) with a "
                         "parameter L; see CVXPY's DPP documentation")
    parameters = list(parameters)
    variables = list(variables)
    for p in parameters:
        if not isinstance(p, cp.Parameter):
            raise TypeError(f"parameters must be cvxpy.Parameter objects, got {type(p).__name__}")
    ids = [p.id for p in parameters]
    if len(set(ids)) != len(ids):
        dup = [p.name() for p in parameters if ids.count(p.id) > 1]
        raise ValueError(f"parameter {dup[0]!r} is listed more than once")
    problem_params = {p.id: p for p in problem.parameters()}
    foreign = [p.name() for p in parameters if p.id not in problem_params]
    if foreign:
        raise ValueError(f"parameter {foreign[0]!r} does not appear in the problem")
    missing = [p.name() for i, p in problem_params.items() if i not in set(ids)]
    if missing:
        raise ValueError(f"the problem's parameter(s) {', '.join(map(repr, missing))} are not "
                         "listed in `parameters`; every parameter must be an input of the layer")
    if not variables:
        raise ValueError("`variables` is empty: name at least one variable or constraint to output")
    var_ids = {v.id for v in problem.variables()}
    con_ids = {c.id for c in problem.constraints}
    for v in variables:
        if isinstance(v, cp.Variable):
            if v.id not in var_ids:
                raise ValueError(f"variable {v.name()!r} does not appear in the problem")
        elif isinstance(v, cp.constraints.constraint.Constraint):
            if v.id not in con_ids:
                raise ValueError(f"constraint {v!s:.60} is not one of the problem's constraints")
        else:
            raise TypeError("variables must hold cvxpy.Variable or cvxpy Constraint objects, "
                            f"got {type(v).__name__}")
    return parameters, variables


def _flatten_fortran(values: np.ndarray) -> np.ndarray:
    """(B, *shape) → (B, size), each element flattened column-major as CVXPY does."""
    batch = values.shape[0]
    return np.transpose(values, (0, *range(values.ndim - 1, 0, -1))).reshape(batch, -1)


def _unflatten_fortran(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_flatten_fortran`: (B, size) → (B, *shape)."""
    batch = flat.shape[0]
    reversed_shape = tuple(reversed(shape))
    out = np.asarray(flat).reshape(batch, *reversed_shape)
    return np.transpose(out, (0, *range(out.ndim - 1, 0, -1)))


def _is_symmetric(leaf) -> bool:
    return any(leaf.attributes.get(attr) for attr in _SYMMETRIC_ATTRIBUTES)


def _parameter_lift(parameters, param_prob, chain):
    """Slots of the user's θ and the matrix L with CVXPY's θ̃ = L [θ; 1].

    CVXPY may store a parameter reduced (symmetric → upper triangle, diagonal →
    diagonal): then its block of L selects those entries.
    """
    id_map = chain.compose_param_id_map()
    slots, offset = [], 0
    rows, cols = [], []
    for p in parameters:
        size = int(p.size)
        slots.append(ParameterSlot(name=p.name(), shape=tuple(p.shape), offset=offset,
                                   size=size, symmetric=_is_symmetric(p)))
        final_id = id_map.get(p.id, [p.id])[0]
        if final_id in param_prob.param_id_to_col:
            start = param_prob.param_id_to_col[final_id]
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
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    lift = sp.csc_matrix((np.ones(rows.size), (rows, cols)), shape=(total, offset + 1))
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


def _output_slot(item, param_prob, chain, n: int, m: int) -> OutputSlot:
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
