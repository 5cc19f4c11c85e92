"""Problem families of the differential campaign (:mod:`benchmarks.differential`).

Each family is a parametrized CVXPY problem, the layer outputs to compare (variables
first, then constraint duals) and a generator of random parameter batches
(``numpy.random.default_rng``). The degenerate LPs (assignment, transport, shortest
path) also give their data in the form min cᵀx s.t. Ax = b, Gx ≤ h, with x, the equality
duals and the inequality duals flattened in C order, for the dual optimality check: their
duals are not unique, so they are not compared entry by entry. The comparison of one
element's outputs with the reference's (:func:`deviations`) lives here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

#: Families whose solution map is smooth at random parameters (gradient-checked).
SMOOTH_KINDS = ("QP", "SOCP", "SDP", "exp", "pow")


@dataclass
class Family:
    """One parametrized problem and its random parameters.

    Attributes
    ----------
    name, kind : str
        Name (``--families``) and problem class (LP, QP, SOCP, SDP, exp, pow).
    problem : cvxpy.Problem
    parameters : list of cvxpy.Parameter
        The layer's inputs, all batched.
    outputs : list
        The layer's outputs: the first ``primal`` are variables, the rest constraints
        or dual variables.
    primal : int
    sample : callable
        ``sample(rng, batch) -> list of arrays`` of shape ``(batch, *parameter.shape)``.
    lp_data : callable or None
        For the degenerate LPs: ``lp_data(values) -> (c, A, b, G, h)`` for one element,
        with the outputs after ``primal`` being the equality duals then the inequality
        duals; their duals are checked for optimality instead of compared.
    """

    name: str
    kind: str
    problem: cp.Problem
    parameters: list
    outputs: list
    primal: int
    sample: Callable[[np.random.Generator, int], list[np.ndarray]]
    lp_data: Callable | None = None

    @property
    def smooth(self) -> bool:
        return self.kind in SMOOTH_KINDS

    @property
    def dual_mode(self) -> str:
        return "optimality" if self.lp_data is not None else "compare"


def _row_col_sums(m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-sum and column-sum matrices of an m × n matrix flattened in C order."""
    return np.kron(np.eye(m), np.ones((1, n))), np.kron(np.ones((1, m)), np.eye(n))


def assignment(n: int = 10) -> Family:
    """Assignment LP: min ⟨C, X⟩ s.t. X1 = 1, Xᵀ1 = 1, X ≥ 0; C standard normal."""
    X = cp.Variable((n, n), name="X")
    C = cp.Parameter((n, n), name="C")
    rows, cols, pos = cp.sum(X, axis=1) == 1, cp.sum(X, axis=0) == 1, X >= 0
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(C, X))), [rows, cols, pos])
    R, K = _row_col_sums(n, n)

    def lp_data(values):
        return (
            values[0].ravel(),
            np.vstack([R, K]),
            np.ones(2 * n),
            -np.eye(n * n),
            np.zeros(n * n),
        )

    return Family(
        "assignment",
        "LP",
        problem,
        [C],
        [X, rows, cols, pos],
        1,
        lambda rng, b: [rng.standard_normal((b, n, n))],
        lp_data,
    )


def transport(m: int = 4, n: int = 6) -> Family:
    """Balanced transport LP: min ⟨C, X⟩ s.t. X1 = s, Xᵀ1 = d, X ≥ 0 (C, s, d parameters)."""
    X = cp.Variable((m, n), name="X")
    C = cp.Parameter((m, n), name="C")
    s = cp.Parameter(m, name="s")
    d = cp.Parameter(n, name="d")
    rows, cols, pos = cp.sum(X, axis=1) == s, cp.sum(X, axis=0) == d, X >= 0
    problem = cp.Problem(cp.Minimize(cp.sum(cp.multiply(C, X))), [rows, cols, pos])
    R, K = _row_col_sums(m, n)

    def sample(rng, b):
        supply = rng.uniform(1.0, 2.0, (b, m))
        demand = rng.uniform(0.5, 1.5, (b, n))
        demand *= (supply.sum(1) / demand.sum(1))[:, None]
        return [rng.uniform(0.1, 1.0, (b, m, n)), supply, demand]

    def lp_data(values):
        return (
            values[0].ravel(),
            np.vstack([R, K]),
            np.concatenate(values[1:]),
            -np.eye(m * n),
            np.zeros(m * n),
        )

    return Family("transport", "LP", problem, [C, s, d], [X, rows, cols, pos], 1, sample, lp_data)


def grid_incidence(k: int) -> np.ndarray:
    """Node-edge incidence matrix of the k × k grid with both directions of each edge."""
    edges = []
    for i in range(k):
        for j in range(k):
            if j + 1 < k:
                edges += [(i * k + j, i * k + j + 1), (i * k + j + 1, i * k + j)]
            if i + 1 < k:
                edges += [(i * k + j, (i + 1) * k + j), ((i + 1) * k + j, i * k + j)]
    B = np.zeros((k * k, len(edges)))
    for e, (u, v) in enumerate(edges):
        B[u, e], B[v, e] = 1.0, -1.0
    return B


def shortest_path(k: int = 4) -> Family:
    """Shortest path from corner to corner of a k × k grid as an LP: min cᵀx s.t.
    Bx = e_s − e_t (flow conservation), 0 ≤ x ≤ 1; costs uniform in [0.1, 1]."""
    B = grid_incidence(k)
    nodes, edges = B.shape
    supply = np.zeros(nodes)
    supply[0], supply[-1] = 1.0, -1.0
    x = cp.Variable(edges, name="x")
    c = cp.Parameter(edges, name="c")
    flow, lower, upper = B @ x == supply, x >= 0, x <= 1
    problem = cp.Problem(cp.Minimize(c @ x), [flow, lower, upper])

    def lp_data(values):
        return (
            values[0],
            B,
            supply,
            np.vstack([-np.eye(edges), np.eye(edges)]),
            np.concatenate([np.zeros(edges), np.ones(edges)]),
        )

    return Family(
        "shortest_path",
        "LP",
        problem,
        [c],
        [x, flow, lower, upper],
        1,
        lambda rng, b: [rng.uniform(0.1, 1.0, (b, edges))],
        lp_data,
    )


def box_lp(n: int = 15, m: int = 20) -> Family:
    """Random box LP: min cᵀx s.t. Gx ≤ h, −1 ≤ x ≤ 1 (G fixed; c, h parameters).

    Generic vertices are nondegenerate: its duals are unique and compared.
    """
    G = np.random.default_rng(11).standard_normal((m, n))
    x = cp.Variable(n, name="x")
    c = cp.Parameter(n, name="c")
    h = cp.Parameter(m, name="h")
    ineq, lower, upper = G @ x <= h, x >= -1, x <= 1
    problem = cp.Problem(cp.Minimize(c @ x), [ineq, lower, upper])

    def sample(rng, b):
        x0 = rng.uniform(-0.5, 0.5, (b, n))
        return [rng.standard_normal((b, n)), x0 @ G.T + rng.uniform(0.05, 1.0, (b, m))]

    return Family("box_lp", "LP", problem, [c, h], [x, ineq, lower, upper], 1, sample)


def _feasible_point(rng, A, b, shape):
    """Random points projected onto {x : Ax = b}."""
    x0 = rng.standard_normal(shape)
    return x0 - (x0 @ A.T - b) @ np.linalg.pinv(A).T


def qp(n: int = 20, m: int = 30, p: int = 5) -> Family:
    """QP: min ½xᵀPx + qᵀx s.t. Gx ≤ h, Ax = b (P ≻ 0, G, A, b fixed; q, h parameters)."""
    rng = np.random.default_rng(12)
    F = rng.standard_normal((n, n)) / np.sqrt(n)
    G, A, b = rng.standard_normal((m, n)), rng.standard_normal((p, n)), rng.standard_normal(p)
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q")
    h = cp.Parameter(m, name="h")
    ineq, eq = G @ x <= h, A @ x == b
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(F @ x) + 0.05 * cp.sum_squares(x) + q @ x), [ineq, eq]
    )

    def sample(r, batch):
        x0 = _feasible_point(r, A, b, (batch, n))
        return [3.0 * r.standard_normal((batch, n)), x0 @ G.T + r.uniform(0.1, 1.0, (batch, m))]

    return Family("qp", "QP", problem, [q, h], [x, ineq, eq], 1, sample)


def optnet(n: int = 10, m: int = 15, p: int = 3) -> Family:
    """OptNet-style QP: min ½‖x‖² + qᵀx s.t. Gx ≤ h, Ax = b with G, q, h parameters
    (G batched in the constraint matrix; A, b fixed)."""
    rng = np.random.default_rng(13)
    A, b = rng.standard_normal((p, n)), rng.standard_normal(p)
    x = cp.Variable(n, name="x")
    q = cp.Parameter(n, name="q")
    G = cp.Parameter((m, n), name="G")
    h = cp.Parameter(m, name="h")
    ineq, eq = G @ x <= h, A @ x == b
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [ineq, eq])

    def sample(r, batch):
        Gv = r.standard_normal((batch, m, n))
        x0 = _feasible_point(r, A, b, (batch, n))
        hv = np.einsum("bmn,bn->bm", Gv, x0) + r.uniform(0.1, 1.0, (batch, m))
        return [3.0 * r.standard_normal((batch, n)), Gv, hv]

    return Family("optnet", "QP", problem, [q, G, h], [x, ineq, eq], 1, sample)


def socp(n: int = 10, k: int = 3) -> Family:
    """SOCP: min cᵀx s.t. ‖Ax + b‖₂ ≤ 1, Gx ≤ h (A, G fixed; c, b, h parameters)."""
    rng = np.random.default_rng(14)
    A = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    G = rng.standard_normal((k, n))
    x = cp.Variable(n, name="x")
    c = cp.Parameter(n, name="c")
    b = cp.Parameter(n, name="b")
    h = cp.Parameter(k, name="h")
    soc, lin = cp.SOC(cp.Constant(1.0), A @ x + b), G @ x <= h
    problem = cp.Problem(cp.Minimize(c @ x), [soc, lin])

    def sample(r, batch):
        direction = r.standard_normal((batch, n))
        radius = r.uniform(0.0, 0.7, (batch, 1))
        return [
            r.standard_normal((batch, n)),
            radius * direction / np.linalg.norm(direction, axis=1, keepdims=True),
            r.uniform(0.05, 0.5, (batch, k)),
        ]

    return Family(
        "socp",
        "SOCP",
        problem,
        [c, b, h],
        [x, soc.dual_variables[0], soc.dual_variables[1], lin],
        1,
        sample,
    )


def sdp(n: int = 4) -> Family:
    """SDP (max-cut relaxation): min ⟨C, X⟩ s.t. diag(X) = 1, X ⪰ 0; C symmetric normal."""
    X = cp.Variable((n, n), symmetric=True, name="X")
    C = cp.Parameter((n, n), name="C")
    diag, psd = cp.diag(X) == 1, X >> 0
    problem = cp.Problem(cp.Minimize(cp.trace(C @ X)), [diag, psd])

    def sample(r, batch):
        M = r.standard_normal((batch, n, n))
        return [(M + M.transpose(0, 2, 1)) / 2]

    return Family("sdp", "SDP", problem, [C], [X, diag, psd], 1, sample)


def entropy(n: int = 15, m: int = 5) -> Family:
    """Entropy maximization (exponential cone): max cᵀx + Σ entr(x) s.t. 1ᵀx = 1, Gx ≤ h."""
    G = np.random.default_rng(15).standard_normal((m, n))
    x = cp.Variable(n, name="x")
    c = cp.Parameter(n, name="c")
    h = cp.Parameter(m, name="h")
    eq, ineq = cp.sum(x) == 1, G @ x <= h
    problem = cp.Problem(cp.Maximize(c @ x + cp.sum(cp.entr(x))), [eq, ineq])

    def sample(r, batch):
        return [r.standard_normal((batch, n)), G.sum(1) / n + r.uniform(-0.05, 0.2, (batch, m))]

    return Family("entropy", "exp", problem, [c, h], [x, eq, ineq], 1, sample)


def logistic(m: int = 20, n: int = 5) -> Family:
    """Logistic regression (exponential cone) with the data a parameter of the constraint
    matrix: min (1/m) Σ log(1 + exp(−(Dw)_i)) + 0.1‖w‖² s.t. −1 ≤ w ≤ 1."""
    w = cp.Variable(n, name="w")
    D = cp.Parameter((m, n), name="D")
    lower, upper = w >= -1, w <= 1
    problem = cp.Problem(
        cp.Minimize(cp.sum(cp.logistic(-D @ w)) / m + 0.1 * cp.sum_squares(w)), [lower, upper]
    )

    def sample(r, batch):
        return [r.standard_normal((batch, m, n)) + 1.5 * r.standard_normal((batch, 1, n))]

    return Family("logistic", "exp", problem, [D], [w, lower, upper], 1, sample)


def power(n: int = 10) -> Family:
    """Power cone: min Σ x_i^1.5 − cᵀx s.t. 1ᵀx ≤ s, x ≥ 0 (``cp.power(x, 1.5,
    approx=False)``: 3-d power cones)."""
    x = cp.Variable(n, name="x")
    c = cp.Parameter(n, name="c")
    s = cp.Parameter(name="s")
    total, pos = cp.sum(x) <= s, x >= 0
    problem = cp.Problem(cp.Minimize(cp.sum(cp.power(x, 1.5, approx=False)) - c @ x), [total, pos])

    def sample(r, batch):
        return [r.standard_normal((batch, n)) + 0.5, r.uniform(0.5, 3.0, batch)]

    return Family("power", "pow", problem, [c, s], [x, total, pos], 1, sample)


# ---- comparison with the reference -------------------------------------------------------


def output_value(output) -> np.ndarray:
    """A CVXPY output's value after a solve (variable, dual variable, or constraint dual)."""
    value = (
        output.dual_value
        if isinstance(output, cp.constraints.constraint.Constraint)
        else output.value
    )
    return np.ravel(np.asarray(value, dtype=float))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖∞ / max(1, ‖b‖∞)."""
    if b.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def dual_optimality_gap(family: Family, values, duals, optimum: float) -> float:
    """Dual infeasibility and relative dual objective gap (degenerate LPs), the largest."""
    c, A, b, G, h = family.lp_data(values)
    y = np.concatenate(duals)
    nu, lam = y[: A.shape[0]], y[A.shape[0] :]
    scale = max(1.0, np.abs(c).max())
    infeasible = max(np.abs(c + A.T @ nu + G.T @ lam).max(), max(0.0, -lam.min())) / scale
    gap = abs(-(b @ nu) - h @ lam - optimum) / max(1.0, abs(optimum))
    return float(max(infeasible, gap))


def deviations(family: Family, values, outputs, reference) -> tuple[float, float]:
    """(x deviation, dual deviation or dual optimality gap) of one element."""
    ref, optimum = reference
    k = family.primal
    dev_x = relative(np.concatenate(outputs[:k]), np.concatenate(ref[:k]))
    if len(outputs) == k:
        return dev_x, 0.0
    if family.dual_mode == "optimality":
        return dev_x, dual_optimality_gap(family, values, outputs[k:], optimum)
    return dev_x, relative(np.concatenate(outputs[k:]), np.concatenate(ref[k:]))


#: Family constructors by name, in report order.
FAMILIES = {
    f.__name__: f
    for f in (
        assignment,
        transport,
        shortest_path,
        box_lp,
        qp,
        optnet,
        socp,
        sdp,
        entropy,
        logistic,
        power,
    )
}


def regression_assignment_batch() -> list[np.ndarray]:
    """The assignment batch that made Moreau report 'failed' (batch index 34)."""
    return [np.random.default_rng(0).standard_normal((64, 10, 10))]
