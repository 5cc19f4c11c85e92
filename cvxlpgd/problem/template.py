"""A compiled problem: the cone program's data as affine maps of the user's parameters.

With θ the user's parameters flattened column-major and concatenated in the order
they were given, and θ̃ = [θ; 1], the program data of one element are

    c = T_c θ̃,      b = T_b θ̃,      A.data = T_A θ̃,      P.data = T_P θ̃

in SCS form (``Ax + s = b``, ``s ∈ K``) with fixed sparsity patterns for A and P
(P stored full symmetric: both triangles). A batch stacks the θ̃ of its elements as
the rows of Θ̃ (B, p + 1), and every map is one sparse × dense product. The
parameter gradient is the adjoint:

    dθ̃ = T_cᵀ dc + T_bᵀ db + T_Aᵀ dA.data + T_Pᵀ dP.data.

Requested outputs are linear read-outs ``R x`` (variables) or ``R y`` (constraint
duals), with R unpacking CVXPY's reduced storage (symmetric variables, svec PSD
duals). Everything here is batch first: row ``i`` of every array is element ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure, SparsePattern


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
    log_space : bool, default False
        θ holds the logarithm of the parameter's value (a positive parameter of a
        geometric program, compiled by CVXPY's DGP→DCP reduction).
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int
    symmetric: bool
    log_space: bool = False


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
    #: Transposes of the maps, built once (every backward pass applies them).
    _transposes: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    #: (matrix name, B) → the batch's entries of a matrix no parameter enters: the same
    #: array object every call, so that solvers see it unchanged and skip their setup.
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def num_parameters(self) -> int:
        """Length of θ (all user parameters, flattened)."""
        return self.c_map.shape[1] - 1

    @property
    def quadratic(self) -> bool:
        """True when the objective carries a quadratic term P."""
        return self.P_pattern is not None

    @property
    def structure(self) -> ProgramStructure:
        """The cone and the patterns of A and P (what a batch solver is built for)."""
        return ProgramStructure(self.cones, self.A_pattern, self.P_pattern)

    # ---- parameters → problem data -------------------------------------------------

    def stack_parameters(self, values: list[np.ndarray], batch_size: int) -> np.ndarray:
        """Θ̃ of shape (B, num_parameters + 1) from per-parameter arrays.

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
            Row ``i`` is element ``i``'s θ (flattened column-major) followed by 1.
        """
        theta = np.empty((batch_size, self.num_parameters + 1))
        for slot, value in zip(self.parameters, values):
            value = np.asarray(value, dtype=float)
            if value.ndim == len(slot.shape):
                value = np.broadcast_to(value, (batch_size, *slot.shape))
            theta[:, slot.offset : slot.offset + slot.size] = _flatten_fortran(value)
        theta[:, -1] = 1.0
        return theta

    def program_data(self, theta: np.ndarray, batched: list[bool] | None = None) -> ProgramBatch:
        """c, b, A.data (and P.data) of every row of Θ̃.

        A and P that depend on no parameter flagged in ``batched`` are evaluated on
        one row and broadcast (a read-only view): the product and the memory then do
        not grow with the batch, and solvers see that the batch shares its matrices.

        Parameters
        ----------
        theta : numpy.ndarray
            Θ̃, (B, num_parameters + 1), from :meth:`stack_parameters`.
        batched : list of bool, optional
            Which parameters carry a batch dimension (default: all).

        Returns
        -------
        ProgramBatch
        """
        B = theta.shape[0]
        varies = (
            dict.fromkeys(("A", "P"), True)
            if batched is None
            else self.depends_on([bool(flag) for flag in batched])
        )

        constant = dict(zip(("A", "P"), (not used for used in self.parametrized_matrices())))

        def evaluate(mapping, name):
            if mapping is None:
                return None
            if constant[name]:
                cached = self._constants.get((name, B))
                if cached is None:
                    if len(self._constants) > 64:
                        self._constants.clear()
                    row = _apply(mapping, theta[:1])
                    row.flags.writeable = False
                    cached = self._constants[(name, B)] = (
                        row if B == 1 else np.broadcast_to(row, (B, mapping.shape[0]))
                    )
                return cached
            if varies[name] or B == 1:
                return _apply(mapping, theta)
            return np.broadcast_to(_apply(mapping, theta[:1]), (B, mapping.shape[0]))

        return ProgramBatch(
            c=_apply(self.c_map, theta),
            b=_apply(self.b_map, theta),
            A_data=evaluate(self.A_map, "A"),
            P_data=evaluate(self.P_map, "P"),
        )

    def parametrized_matrices(self) -> tuple[bool, bool]:
        """Whether any parameter enters A, and P (so that their gradients matter).

        Returns
        -------
        (bool, bool)
        """
        in_A, in_P = (bool(np.any(self.column_usage[name][:-1])) for name in ("A", "P"))
        return in_A, in_P

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
            columns[slot.offset : slot.offset + slot.size] = flag
        return {name: bool(np.any(used & columns)) for name, used in self.column_usage.items()}

    # ---- problem-data gradient → parameter gradient --------------------------------

    def parameter_gradient(
        self,
        dc: np.ndarray,
        db: np.ndarray,
        dA_data: np.ndarray | None,
        dP_data: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Adjoint of :meth:`program_data`, split per parameter.

        ``dθ̃ = T_cᵀ dc + T_bᵀ db + T_Aᵀ dA + T_Pᵀ dP``, one row per batch element.

        Parameters
        ----------
        dc, db : numpy.ndarray
            Gradients in c (B, n) and b (B, m).
        dA_data : numpy.ndarray or None
            Gradient in the stored entries of A (B, nnz_A); None when no parameter
            enters A (see :meth:`parametrized_matrices`).
        dP_data : numpy.ndarray, optional
            Gradient in the stored entries of P (B, nnz_P).

        Returns
        -------
        list of numpy.ndarray
            One array per parameter, of shape ``(B, *slot.shape)``; gradients of
            symmetric parameters are symmetrized (the gradient within symmetric
            matrices).
        """
        dtheta = self._apply_adjoint(self.c_map, dc) + self._apply_adjoint(self.b_map, db)
        if dA_data is not None:
            dtheta += self._apply_adjoint(self.A_map, dA_data)
        if dP_data is not None and self.P_map is not None:
            dtheta += self._apply_adjoint(self.P_map, dP_data)
        grads = []
        for slot in self.parameters:
            grad = _unflatten_fortran(dtheta[:, slot.offset : slot.offset + slot.size], slot.shape)
            if slot.symmetric:
                grad = 0.5 * (grad + np.swapaxes(grad, -1, -2))
            grads.append(grad)
        return grads

    # ---- solution → outputs ----------------------------------------------------------

    def recover_outputs(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Requested outputs, each of shape ``(B, *slot.shape)``, from x (B, n) and y (B, m).

        Parameters
        ----------
        x : numpy.ndarray
            Primal solutions, (B, n).
        y : numpy.ndarray
            Dual solutions, (B, m).

        Returns
        -------
        list of numpy.ndarray
        """
        return [
            _unflatten_fortran(
                _apply(slot.readout, x if slot.source == "primal" else y), slot.shape
            )
            for slot in self.outputs
        ]

    def output_adjoint(
        self, grads: list[np.ndarray | None], batch_size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Adjoint of :meth:`recover_outputs`: incoming dx (B, n) and dy (B, m).

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
        dx = np.zeros((batch_size, self.n))
        dy = np.zeros((batch_size, self.m))
        for slot, grad in zip(self.outputs, grads):
            if grad is None:
                continue
            flat = _flatten_fortran(np.asarray(grad, dtype=float).reshape(batch_size, *slot.shape))
            target = dx if slot.source == "primal" else dy
            target += self._apply_adjoint(slot.readout, flat)
        return dx, dy

    def _apply_adjoint(self, mapping: sp.spmatrix, rows: np.ndarray) -> np.ndarray:
        """The adjoint of ``mapping`` (one of this template's) applied to every row."""
        entry = self._transposes.get(id(mapping))
        if entry is None:
            entry = self._transposes[id(mapping)] = (mapping, sp.csr_matrix(mapping.T))
        return _apply(entry[1], rows)


def _apply(mapping: sp.spmatrix, rows: np.ndarray) -> np.ndarray:
    """``mapping`` applied to every row: ``rows @ mappingᵀ`` as a C-ordered array."""
    return np.ascontiguousarray(np.asarray(mapping @ rows.T).T)


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
