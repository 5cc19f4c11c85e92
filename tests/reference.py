"""Independent references for gradient tests: finite differences of the solution map.

Every evaluation re-solves the problem with CVXPY itself (Clarabel, tight tolerances),
so nothing here shares code with the layer under test.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

# Tighter than this makes Clarabel stop "inaccurate" on small SOCPs.
TIGHT_CLARABEL = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}
#: For exponential and power cones, where Clarabel's solutions are accurate to ~1e-6
#: only: finite differences then need SCS run to convergence.
SCS_EXACT = {"solver": cp.SCS, "eps_abs": 1e-12, "eps_rel": 1e-12, "max_iters": 1_000_000}
CLARABEL_EXACT = {"solver": cp.CLARABEL, **TIGHT_CLARABEL}


def solve_outputs(problem, params, values, outputs, solve=None):
    """Outputs (variable values or duals) of a CVXPY solve; ``solve``: ``problem.solve``'s
    keyword arguments (default: Clarabel, tight)."""
    for p in params:
        p.value = values[p.name()]
    problem.solve(**(solve or CLARABEL_EXACT))
    return [
        np.asarray(o.value if isinstance(o, cp.Variable) else o.dual_value, dtype=float)
        for o in outputs
    ]


def weighted_loss(problem, params, values, outputs, weights, solve=None):
    """Σ_k ⟨w_k, output_k(θ)⟩ at parameter values θ."""
    outs = solve_outputs(problem, params, values, outputs, solve)
    return float(sum(np.sum(w * o) for w, o in zip(weights, outs)))


def finite_difference_gradient(
    problem, params, values, outputs, weights, step=1e-4, symmetric=(), solve=None
):
    """Central differences of :func:`weighted_loss` for every entry of every parameter.

    Parameters named in ``symmetric`` are perturbed along E_ij + E_ji (and the result
    halved off the diagonal), which is the gradient within symmetric matrices.
    """
    return central_differences(
        lambda point: weighted_loss(problem, params, point, outputs, weights, solve),
        values,
        [p.name() for p in params],
        step,
        symmetric,
    )


def central_differences(loss, values, names, step=1e-4, symmetric=()):
    """Central differences of ``loss(values) -> float`` in every entry of ``values[name]``.

    Names in ``symmetric`` are perturbed along E_ij + E_ji, as in
    :func:`finite_difference_gradient`.
    """
    grads = {}
    for name in names:
        base = np.asarray(values[name], dtype=float)
        grad = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            direction = np.zeros_like(base)
            direction[index] = 1.0
            if name in symmetric:
                direction[index[::-1]] = 1.0
            plus = loss({**values, name: base + step * direction})
            minus = loss({**values, name: base - step * direction})
            value = (plus - minus) / (2 * step)
            if name in symmetric and index[0] != index[1]:
                value /= 2
            grad[index] = value
        grads[name] = grad
    return grads


def relative_error(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
