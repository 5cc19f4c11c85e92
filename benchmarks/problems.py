"""The benchmark problems: parametrized CVXPY problems with seeded batches of values.

Each builder returns a :class:`Case`: the problem, its parameters (layer inputs, in
order), the outputs, and a function ``values(batch_size, seed)`` giving one list of
NumPy arrays per call (batched arrays carry a leading batch dimension, shared ones
do not), so cvxlpgd and cvxpylayers receive identical data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import numpy as np


@dataclass
class Case:
    """One benchmark problem."""

    name: str
    problem: cp.Problem
    parameters: list
    outputs: list
    values: Callable[[int, int], list[np.ndarray]]
    batch_size: int
    shared_structure: bool
    tau: float
    #: The builder's family (``"assignment"``, ``"qp"``, ``"optnet"``, ``"lasso"``,
    #: ``"sparse_qp"``): what the benchmark's targets refer to, at any size.
    family: str = ""

    def tensors(self, batch_size: int | None = None, seed: int = 0):
        """The parameter values as float64 torch tensors (requires_grad set)."""
        import torch

        return [
            torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for v in self.values(batch_size or self.batch_size, seed)
        ]


def assignment_lp(size: int = 10, batch_size: int = 64) -> Case:
    """Assignment LP: min ⟨C, X⟩ s.t. X1 = 1, Xᵀ1 = 1, X ≥ 0; costs C batched.

    A and b are constant: the whole batch shares one factorization.
    """
    X = cp.Variable((size, size), name="X")
    C = cp.Parameter((size, size), name="C")
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(C, X))),
        [cp.sum(X, axis=1) == 1, cp.sum(X, axis=0) == 1, X >= 0],
    )

    def values(batch, seed):
        rng = np.random.default_rng(seed)
        return [rng.uniform(0.0, 1.0, (batch, size, size))]

    return Case(
        f"assignment LP {size}x{size}",
        problem,
        [C],
        [X],
        values,
        batch_size,
        shared_structure=True,
        tau=0.1,
        family="assignment",
    )


def dense_qp(n: int = 50, m: int = 100, batch_size: int = 64) -> Case:
    """QP: min ½‖x‖²_Q + qᵀx s.t. Gx ≤ h, with Q ≻ 0 and G fixed, q and h batched."""
    rng = np.random.default_rng(1)
    F = rng.standard_normal((n, n)) / np.sqrt(n)
    G = rng.standard_normal((m, n))
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q")
    h = cp.Parameter(m, name="h")
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(F @ x) + 0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h]
    )

    def values(batch, seed):
        r = np.random.default_rng(seed)
        x0 = r.standard_normal((batch, n))
        # h = G x0 + slack keeps every element strictly feasible; q pushes the
        # optimum against a number of the constraints.
        return [r.standard_normal((batch, n)) * 3.0, x0 @ G.T + r.uniform(0.1, 1.0, (batch, m))]

    return Case(
        f"QP n={n} m={m} B={batch_size}",
        problem,
        [q, h],
        [x],
        values,
        batch_size,
        shared_structure=True,
        tau=0.01,
        family="qp",
    )


def optnet_qp(n: int = 20, m: int = 15, batch_size: int = 32) -> Case:
    """OptNet-style QP: min ½‖x‖² + qᵀx s.t. Gx ≤ h with G, q, h all batched.

    G is a parameter of the constraint matrix: every element has its own A and needs
    its own factorization.
    """
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q")
    G = cp.Parameter((m, n), name="G")
    h = cp.Parameter(m, name="h")
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h])

    def values(batch, seed):
        r = np.random.default_rng(seed)
        Gv = r.standard_normal((batch, m, n))
        x0 = r.standard_normal((batch, n))
        hv = np.einsum("bmn,bn->bm", Gv, x0) + r.uniform(0.1, 1.0, (batch, m))
        return [r.standard_normal((batch, n)) * 3.0, Gv, hv]

    return Case(
        f"OptNet QP n={n} m={m} B={batch_size}",
        problem,
        [q, G, h],
        [x],
        values,
        batch_size,
        shared_structure=False,
        tau=0.01,
        family="optnet",
    )


def lasso(n: int = 1000, m: int = 600, batch_size: int = 1, lam: float = 0.5) -> Case:
    """Lasso: min ‖Dx − y‖² + λ‖x‖₁ with a fixed dense D (m × n) and the data y a parameter."""
    rng = np.random.default_rng(2)
    D = rng.standard_normal((m, n)) / np.sqrt(m)
    x_true = np.where(rng.uniform(size=n) < 0.05, rng.standard_normal(n), 0.0)
    x = cp.Variable(n, name="x")
    y = cp.Parameter(m, name="y")
    problem = cp.Problem(cp.Minimize(cp.sum_squares(D @ x - y) + lam * cp.norm1(x)))

    def values(batch, seed):
        r = np.random.default_rng(seed)
        return [(D @ x_true)[None] + 0.05 * r.standard_normal((batch, m))]

    return Case(
        f"lasso n={n} m={m} B={batch_size}",
        problem,
        [y],
        [x],
        values,
        batch_size,
        shared_structure=True,
        tau=0.01,
        family="lasso",
    )


def sparse_qp(n: int = 100, batch_size: int = 16) -> Case:
    """QP family for the size sweep: min ½xᵀPx + qᵀx s.t. Gx ≤ h, −1 ≤ x ≤ 1, with P
    tridiagonal (2 on the diagonal, −½ beside it: eigenvalues in [1, 3]) and G sparse
    (m = n/2 rows, 3 entries each), both fixed; q and h batched.

    The stored entries grow linearly with n (n = 2000: about 9 000 in P and G).
    """
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    m = max(n // 2, 1)
    P = sp.diags(
        [-0.5 * np.ones(n - 1), 2.0 * np.ones(n), -0.5 * np.ones(n - 1)], [-1, 0, 1], format="csc"
    )
    rows = np.repeat(np.arange(m), 3)
    cols = rng.integers(0, n, 3 * m)
    G = sp.csc_matrix((rng.standard_normal(3 * m), (rows, cols)), shape=(m, n))
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q")
    h = cp.Parameter(m, name="h")
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), [G @ x <= h, x >= -1, x <= 1]
    )

    def values(batch, seed):
        r = np.random.default_rng(seed)
        x0 = r.uniform(-0.5, 0.5, (batch, n))
        return [r.standard_normal((batch, n)) * 3.0, (G @ x0.T).T + r.uniform(0.1, 1.0, (batch, m))]

    return Case(
        f"sparse QP n={n} m={m} B={batch_size}",
        problem,
        [q, h],
        [x],
        values,
        batch_size,
        shared_structure=True,
        tau=0.01,
        family="sparse_qp",
    )
