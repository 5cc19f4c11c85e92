"""Independent references for gradient tests: finite differences of the solution map.

Every evaluation re-solves the problem with CVXPY itself (Clarabel, tight tolerances),
so nothing here shares code with the layer under test.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np

# Tighter than this makes Clarabel stop "inaccurate" on small SOCPs.
TIGHT_CLARABEL = {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9}


def solve_outputs(problem, params, values, outputs):
    for p in params:
        p.value = values[p.name()]
    problem.solve(solver=cp.CLARABEL, **TIGHT_CLARABEL)
    return [np.asarray(o.value if isinstance(o, cp.Variable) else o.dual_value, dtype=float)
            for o in outputs]


def weighted_loss(problem, params, values, outputs, weights):
    """Σ_k ⟨w_k, output_k(θ)⟩ at parameter values θ."""
    outs = solve_outputs(problem, params, values, outputs)
    return float(sum(np.sum(w * o) for w, o in zip(weights, outs)))


def finite_difference_gradient(problem, params, values, outputs, weights, step=1e-4,
                               symmetric=()):
    """Central differences of :func:`weighted_loss` for every entry of every parameter.

    Parameters named in ``symmetric`` are perturbed along E_ij + E_ji (and the result
    halved off the diagonal), which is the gradient within symmetric matrices.
    """
    grads = {}
    for p in params:
        base = np.asarray(values[p.name()], dtype=float)
        grad = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            direction = np.zeros_like(base)
            direction[index] = 1.0
            if p.name() in symmetric:
                direction[index[::-1]] = 1.0
            plus = weighted_loss(problem, params, {**values, p.name(): base + step * direction},
                                 outputs, weights)
            minus = weighted_loss(problem, params, {**values, p.name(): base - step * direction},
                                  outputs, weights)
            value = (plus - minus) / (2 * step)
            if p.name() in symmetric and index[0] != index[1]:
                value /= 2
            grad[index] = value
        grads[p.name()] = grad
    return grads


def relative_error(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
