"""Exact derivatives of the solution map, for comparison with LPGD.

Two backends, chosen by the layer's ``exact_backend``:

* ``"diffcp"`` (the reference) — diffcp's derivative of the homogeneous self-dual
  embedding, applied at the solution our solver found (any solver: the forward solve
  is the same batched solve as on the LPGD path, so every status is checked the
  same way). With z = (u, v, w) = (x, y − s, 1), the embedding's data matrix

      Q = [[0, Aᵀ, c], [−A, 0, b], [−cᵀ, −bᵀ, 0]]

  and Π the projection onto ℝⁿ × K* × ℝ₊, the residual map's derivative is
  M = (Q − I) DΠ(z) + I. For incoming (dx, dy, ds) the adjoint solves Mᵀ r = dz with

      dz = (dx, DΠ_K*(v)ᵀ(dy + ds) − ds, −(xᵀdx + yᵀdy + sᵀds))

  and returns dA_ij = π_j r_{n+i} − π_{n+i} r_j, db = π_y r_w − π_w r_y,
  dc = π_x r_w − π_w r_x (π = Π(z)). diffcp has no quadratic term (the layer compiles
  the conic-only form for this path) and no power cones.
* ``"moreau"`` — Moreau's own implicit derivative of its interior-point solution
  (``CompiledSolver.backward``): quadratic objectives and every cone Moreau solves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cvxlpgd.engine import diffcp_internals as internals
from cvxlpgd.lpgd.formulas import DataGradient
from cvxlpgd.problem.cones import ConeDims
from cvxlpgd.problem.program import ProgramBatch, ProgramStructure
from cvxlpgd.solvers.parallel import default_workers, run_tasks, split, thread_pool

EXACT_MODES = ("lsqr", "dense", "lsmr")
EXACT_BACKENDS = ("auto", "active-set", "diffcp", "moreau")

#: ``adjoint(dx, dy, ds) → (dA_data, db, dc)`` of one element.
Adjoint = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple]


def validate_exact_options(mode: str, backend: str) -> None:
    """Check the exact-gradient options.

    Parameters
    ----------
    mode : str
        diffcp's mode, one of :data:`EXACT_MODES`.
    backend : str
        One of :data:`EXACT_BACKENDS`.

    Raises
    ------
    ValueError
        For an unknown mode or backend (the message lists the valid ones).
    """
    if mode not in EXACT_MODES:
        raise ValueError(f"exact_mode must be one of {EXACT_MODES}, got {mode!r}")
    if backend not in EXACT_BACKENDS:
        raise ValueError(f"exact_backend must be one of {EXACT_BACKENDS}, got {backend!r}")


def choose_exact_backend(
    template, moreau_usable: bool, settings_elsewhere: bool = False, active_set: bool = True
) -> str:
    """The exact derivative ``exact_backend="auto"`` computes.

    From the active set (:mod:`cvxlpgd.engine.exact_active_set`) on LPs and QPs the
    layer solves in their polyhedral form, unless ``active_set`` is off: the forward
    is the LPGD path's solve, and the derivative one linear system per element, exact
    where the solution is strictly complementary (the elements where it is not go to
    the backend chosen below). Otherwise Moreau's, when Moreau can solve the call and
    diffcp cannot differentiate the problem: a parametrized P (the conic-only form
    cannot hold it) or power cones (diffcp has no derivative for them). Moreau's too for
    a quadratic objective with a constant P — diffcp would differentiate its rewrite
    with second-order cones, which interior-point methods solve less accurately
    (measured: 3e-5 against 1e-7 on a projection whose solution sits at the cone's
    apex) — unless the call's flat settings belong to another solver (cvxpylayers'
    ``{"eps": 1e-10}`` for SCS). diffcp's otherwise (SOCPs, SDPs, exponential cones),
    at the solution of any solver.

    Parameters
    ----------
    template : ConeTemplate
        The problem compiled with P kept.
    moreau_usable : bool
        Whether Moreau is installed and the layer's solver is ``"auto"`` or Moreau.
    settings_elsewhere : bool, default False
        Whether the call's settings route it to another solver than Moreau.
    active_set : bool, default True
        Whether the derivative may come from the active set.

    Returns
    -------
    str
        ``"active-set"``, ``"moreau"`` or ``"diffcp"``.
    """
    structure = template.structure
    quadratic = structure.P_pattern is not None and structure.P_pattern.nnz > 0
    needed = structure.cones.power or (quadratic and template.parametrized_matrices()[1])
    backend = "diffcp"
    if moreau_usable and (needed or (quadratic and not settings_elsewhere)):
        backend = "moreau"
    cones = structure.cones
    polyhedral = cones.size == cones.zero + cones.nonneg
    # A QP on diffcp's path is solved in its conic form, with second-order cones.
    if active_set and polyhedral and (backend == "moreau" or not quadratic):
        return "active-set"
    return backend


def check_diffcp_cones(cones: ConeDims) -> None:
    """Raise when diffcp cannot differentiate over ``cones`` (power cones).

    Parameters
    ----------
    cones : ConeDims
        The cone K.

    Raises
    ------
    ValueError
        Naming the power cones and the alternatives.
    """
    if cones.power:
        raise ValueError(
            f"the exact derivative through diffcp does not cover power cones "
            f"(this problem has {len(cones.power)}); use gradient='lpgd', or "
            "exact_backend='moreau' with solver='MOREAU'"
        )


def adjoint_at_solution(
    A: sp.csc_matrix,
    b: np.ndarray,
    c: np.ndarray,
    cones: ConeDims,
    x: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    *,
    mode: str = "lsqr",
    A_pattern=None,
) -> Adjoint:
    """diffcp's adjoint derivative at a given primal-dual solution (formulas above).

    Parameters
    ----------
    A : scipy.sparse.csc_matrix
        Constraint matrix (m × n).
    b, c : numpy.ndarray
        Right-hand side and cost.
    cones : ConeDims
        The cone K (no power cones: :func:`check_diffcp_cones`).
    x, y, s : numpy.ndarray
        The solution the derivative is taken at.
    mode : str, default "lsqr"
        How Mᵀ r = dz is solved: ``"lsqr"``, ``"lsmr"`` (iterative) or ``"dense"``.
    A_pattern : SparsePattern, optional
        Entries of A on which dA is returned (default: A's stored entries).

    Returns
    -------
    callable
        ``adjoint(dx, dy, ds) → (dA_data, db, dc)``.
    """
    m, n = A.shape
    cone_list, parsed = internals.parse_cones(cones.to_scs())
    u, v, w = x, y - s, np.array([1.0])
    b_col, c_col = b[:, None], c[:, None]
    Q = sp.csc_matrix(sp.bmat([[None, A.T, c_col], [-A, None, b_col], [-c_col.T, -b_col.T, None]]))
    dual_projection = internals.dual_projection_derivative(v, parsed)
    M = internals.residual_derivative(Q, parsed, u, v, w[0], dense=mode == "dense")
    MT = M.T if mode == "dense" else M.transpose()
    pi_z = internals.project_embedding((u, v, w), cone_list)
    if A_pattern is None:
        A = sp.csc_matrix(A)
        rows, cols = A.indices, np.repeat(np.arange(n), np.diff(A.indptr))
    else:
        rows, cols = A_pattern.rows, A_pattern.cols

    def adjoint(dx, dy, ds):
        dz = np.concatenate(
            [dx, dual_projection.rmatvec(dy + ds) - ds, [-(x @ dx + y @ dy + s @ ds)]]
        )
        if not np.any(dz):
            r = np.zeros(dz.size)
        elif mode == "dense":
            r = internals.solve_adjoint_dense(M, MT, dz)
        elif mode == "lsqr":
            r = internals.solve_adjoint_lsqr(MT, dz)
        else:
            operator = spla.LinearOperator((dz.size, dz.size), matvec=MT.matvec, rmatvec=MT.rmatvec)
            r = spla.lsmr(operator, dz, maxiter=10 * dz.size, atol=1e-10, btol=1e-10)[0]
        dA = pi_z[cols] * r[n + rows] - pi_z[n + rows] * r[cols]
        db = pi_z[n : n + m] * r[-1] - pi_z[-1] * r[n : n + m]
        dc = pi_z[:n] * r[-1] - pi_z[-1] * r[:n]
        return dA, db, dc

    return adjoint


@dataclass(frozen=True)
class AdjointTask:
    """Plain, picklable data of one partition's exact backward pass.

    Attributes
    ----------
    structure : ProgramStructure
        Cones and patterns.
    batch : ProgramBatch
        The partition's problems.
    point : tuple of numpy.ndarray
        Their solutions ``(X, Y, S)``.
    dx, dy : numpy.ndarray
        Incoming gradients of the partition.
    mode : str
        diffcp's mode.
    """

    structure: ProgramStructure
    batch: ProgramBatch
    point: tuple
    dx: np.ndarray
    dy: np.ndarray
    mode: str


def adjoint_partition(task: AdjointTask) -> DataGradient:
    """diffcp's adjoint for every element of a partition (rows in order).

    Parameters
    ----------
    task : AdjointTask
        The partition.

    Returns
    -------
    DataGradient
        One row per element; ``dP_data`` is None.
    """
    structure, batch = task.structure, task.batch
    out = DataGradient.zeros(
        ProgramStructure(structure.cones, structure.A_pattern, None), batch.batch_size
    )
    X, Y, S = task.point
    assert out.dA_data is not None
    for j in range(batch.batch_size):
        A, _ = batch.element_matrices(structure, j)
        adjoint = adjoint_at_solution(
            A,
            batch.b[j],
            batch.c[j],
            structure.cones,
            X[j],
            Y[j],
            S[j],
            mode=task.mode,
            A_pattern=structure.A_pattern,
        )
        out.dA_data[j], out.db[j], out.dc[j] = adjoint(
            task.dx[j], task.dy[j], np.zeros_like(task.dy[j])
        )
    return out


def diffcp_gradient(
    structure: ProgramStructure,
    batch: ProgramBatch,
    point: tuple,
    dx: np.ndarray,
    dy: np.ndarray,
    mode: str,
    *,
    executor=None,
    workers: int | None = None,
    partitions: int | None = None,
) -> DataGradient:
    """diffcp's adjoint for every element of a batch, in partitions on an executor.

    Parameters
    ----------
    structure : ProgramStructure
        Cones and patterns.
    batch : ProgramBatch
        The problems.
    point : tuple of numpy.ndarray
        Their solutions ``(X, Y, S)``, from any solver.
    dx, dy : numpy.ndarray
        Incoming gradients (B, n), (B, m).
    mode : str
        diffcp's mode.
    executor : concurrent.futures.Executor, optional
        Where the partitions run (default: the built-in thread pool).
    workers, partitions : int, optional
        Threads of the built-in pool; partitions per worker.

    Returns
    -------
    DataGradient
        One row per element; ``dP_data`` is None.
    """
    parts = split(batch.batch_size, (partitions or default_workers()) * 4)
    tasks = []
    for part in parts:
        rows = slice(part.start, part.stop)
        tasks.append(
            (
                AdjointTask(
                    structure,
                    batch.rows(rows),
                    tuple(a[rows] for a in point),
                    dx[rows],
                    dy[rows],
                    mode,
                ),
            )
        )
    if executor is None:
        single = len(tasks) == 1 or workers == 1
        executor = None if single else thread_pool(workers or default_workers())
    blocks = run_tasks(adjoint_partition, tasks, executor)
    dc, db, dA = (np.concatenate(parts) for parts in zip(*(block.parts()[:3] for block in blocks)))
    return DataGradient(dc, db, dA, dP_data=None)
