"""The differential campaign's runs (see :mod:`benchmarks.differential` for what is
measured): the reference solve, the layer's batches and the per-family statistics.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from pathlib import Path

import cvxpy as cp
import numpy as np
import torch

import cvxlpgd
from benchmarks import differential_families as fams

BATCH = 64
#: Batches per family at ``--scale 1`` (11 families × 30 × 64 = 21 120 elements).
BATCHES = 30
TARGET = 1e-5
SILENT = 1e-4
GRAD_SAMPLES = 8
#: Warnings that say nothing about the accuracy of a solution.
NOISE = ("ZeroGradientWarning", "DeprecationWarning", "FutureWarning")
#: CVXPY + Clarabel: tolerances 1e-12, its "almost solved" accepted when it meets 1e-9.
#: (At tol 1e-10, Clarabel's "optimal" on SOCPs and SDPs with linear objectives is only
#: ~1e-5 accurate in x: the objective is flat to second order along the boundary.)
REFERENCE = {
    "solver": cp.CLARABEL,
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
    "reduced_tol_gap_abs": 1e-9,
    "reduced_tol_gap_rel": 1e-9,
    "reduced_tol_feas": 1e-9,
    "reduced_tol_ktratio": 1e-7,
}
#: Where Clarabel stops short of that (about 1 SOCP in 10): SCS run to 1e-10.
REFERENCE_SCS = {"solver": cp.SCS, "eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 100_000}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "differential.txt"


# ---- reference ---------------------------------------------------------------------------


def reference_solve(family: fams.Family, values: list[np.ndarray]):
    """``(outputs, optimal value)`` from CVXPY + Clarabel, or None if it does not solve."""
    for p, v in zip(family.parameters, values):
        p.value = v
    for settings, accepted in (
        (REFERENCE, (cp.OPTIMAL, cp.OPTIMAL_INACCURATE)),
        (REFERENCE_SCS, (cp.OPTIMAL,)),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                family.problem.solve(**settings)
            except cp.error.SolverError:
                continue
        if family.problem.status in accepted:
            return [fams.output_value(o) for o in family.outputs], float(family.problem.value)
    return None


# ---- layer -------------------------------------------------------------------------------


def make_layer(family: fams.Family) -> cvxlpgd.CvxpyLayer:
    """The default layer (power cones: Moreau's exact derivative, diffcp has none)."""
    options = {"exact_backend": "moreau"} if family.kind == "pow" else {}
    return cvxlpgd.CvxpyLayer(
        family.problem, parameters=family.parameters, variables=family.outputs, **options
    )


def run_batch(layer, values: list[np.ndarray], gradient: str, rng) -> dict:
    """Forward + backward of a random linear loss on one batch.

    Returns a dict: ``outputs`` (per element, the flattened outputs) or ``error`` with
    ``stage`` and ``index``, ``warnings`` (category names), ``solvers`` (per element),
    ``stats_solver``, and for exact batches ``grads`` and ``weights``.
    """
    tensors = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    result = {"gradient": gradient, "warnings": [], "error": None}
    tic = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage = "forward"
        try:
            outputs = layer(*tensors, gradient=gradient)
            weights = [torch.tensor(rng.standard_normal(o.shape)) for o in outputs]
            stage = "backward"
            sum((w * o).sum() for w, o in zip(weights, outputs)).backward()
        except cvxlpgd.SolverError as error:
            match = re.search(r"batch index (\d+)", str(error))
            result.update(
                error=str(error), stage=stage, index=int(match.group(1)) if match else None
            )
    result["seconds"] = time.perf_counter() - tic
    result["warnings"] = sorted({type(w.message).__name__ for w in caught})
    result["messages"] = sorted(
        {str(w.message)[:300] for w in caught if type(w.message).__name__ not in NOISE}
    )
    stats = layer.solver_stats
    if stats is not None and (result["error"] is None or stage == "backward"):
        result["stats_solver"] = stats.solver
        result["solvers"] = [getattr(r, "solver", stats.solver) for r in stats.forward]
        result["backward_solvers"] = [
            getattr(r, "solver", stats.solver) for sides in stats.backward for r in sides.values()
        ]
    if result["error"] is None or stage == "backward":
        B = values[0].shape[0]
        result["outputs"] = [[o[i].detach().numpy().ravel() for o in outputs] for i in range(B)]
        if result["error"] is None and gradient == "exact":
            result["grads"] = [t.grad.numpy() for t in tensors]
            result["weights"] = [w.numpy() for w in weights]
    return result


def gradient_check(family: fams.Family, values, grads, weights, rng) -> float:
    """Relative error of ⟨∇loss, d⟩ against central differences of the reference map.

    Differences at steps 1e-5, 1e-4 and 1e-3 (relative to the parameters' size): the
    reference's own accuracy (1e-8 to 1e-10) makes the smallest step noisy on curved
    cones, the largest carries truncation error; the best agreement is returned, as a
    fraction of ‖∇loss‖·‖d‖.
    """
    direction = [rng.standard_normal(v.shape) for v in values]
    size = max(max(1.0, np.abs(v).max()) for v in values)
    unit = size / max(np.abs(d).max() for d in direction)
    w = [np.ravel(x) for x in weights]

    def loss(step):
        solved = reference_solve(family, [v + step * d for v, d in zip(values, direction)])
        return math.nan if solved is None else float(sum(wk @ ok for wk, ok in zip(w, solved[0])))

    g = float(sum(np.sum(gk * d) for gk, d in zip(grads, direction)))
    # Relative to ‖∇‖·‖d‖ (the largest |⟨∇, d⟩| can be): a direction nearly orthogonal
    # to the gradient would otherwise turn the reference's noise into a large ratio.
    scale = math.sqrt(sum(float(np.sum(np.square(gk))) for gk in grads)) * math.sqrt(
        sum(float(np.sum(np.square(d))) for d in direction)
    )
    errors = []
    for step in (1e-5 * unit, 1e-4 * unit, 1e-3 * unit):
        fd = (loss(step) - loss(-step)) / (2 * step)
        errors.append(abs(g - fd) / max(scale, abs(fd), 1e-6))
    return float(np.nanmin(errors)) if not all(map(math.isnan, errors)) else math.nan


# ---- campaign ----------------------------------------------------------------------------


def new_stats(name: str, family: fams.Family) -> dict:
    return {
        "family": name,
        "kind": family.kind,
        "dual_mode": family.dual_mode,
        "elements": 0,
        "compared": 0,
        "reference_unsolved": 0,
        "solver_errors": 0,
        "excused_errors": 0,
        "fallbacks": {},
        "backward_fallbacks": {},
        "max_dev_x": 0.0,
        "max_dev_dual": 0.0,
        "silent": 0,
        "over_target": 0,
        "grad_rel_err": None,
        "grad_checks": 0,
        "warned_batches": {},
        "failures": [],
        "seconds": 0.0,
        "layer_seconds": 0.0,
    }


def record_batch(stats: dict, family, values, result, batch_no, grad_budget, rng) -> int:
    """Fold one batch's result into ``stats``; returns the gradient checks done."""
    B = values[0].shape[0]
    stats["elements"] += B
    for name in result["warnings"]:
        stats["warned_batches"][name] = stats["warned_batches"].get(name, 0) + 1
    warned = any(name not in NOISE for name in result["warnings"])
    stats_solver = result.get("stats_solver")
    stats["layer_seconds"] += result["seconds"]
    for key, solvers in (
        ("fallbacks", result.get("solvers", [])),
        ("backward_fallbacks", result.get("backward_solvers", [])),
    ):
        for solver in solvers:
            if solver != stats_solver:
                stats[key][solver] = stats[key].get(solver, 0) + 1
    refs = [reference_solve(family, [v[i] for v in values]) for i in range(B)]
    stats["reference_unsolved"] += sum(r is None for r in refs)
    tag = {"batch": batch_no, "gradient": result["gradient"]}
    if result["error"] is not None:
        index = result.get("index")
        if index is not None and refs[index] is None:
            stats["excused_errors"] += 1
        else:
            stats["solver_errors"] += 1
            stats["failures"].append(
                {**tag, "element": index, "stage": result["stage"], "error": result["error"][:300]}
            )
        if "outputs" not in result:
            return 0
    for i, ref in enumerate(refs):
        if ref is None:
            continue
        element = [v[i] for v in values]
        dev_x, dev_dual = fams.deviations(family, element, result["outputs"][i], ref)
        stats["compared"] += 1
        stats["max_dev_x"] = max(stats["max_dev_x"], dev_x)
        stats["max_dev_dual"] = max(stats["max_dev_dual"], dev_dual)
        dev = max(dev_x, dev_dual)
        silent = dev > SILENT and not warned
        stats["silent"] += silent
        if dev > TARGET:
            stats["over_target"] += 1
            solver = result["solvers"][i] if "solvers" in result else None
            stats["failures"].append(
                {
                    **tag,
                    "element": i,
                    "dev_x": dev_x,
                    "dev_dual": dev_dual,
                    "silent": bool(silent),
                    "warned": warned,
                    "solver": solver,
                    "warnings": result["warnings"],
                }
            )
    done = 0
    # The exact path's gradients only: LPGD's at the default τ = 0.1 differ from the
    # derivative by design (O(τ) on curved problems).
    exact = result["gradient"] == "exact"
    if family.smooth and exact and "grads" in result and grad_budget > 0:
        for i in rng.choice(B, size=min(grad_budget, B), replace=False):
            if refs[i] is None:
                continue
            err = gradient_check(
                family,
                [v[i] for v in values],
                [g[i] for g in result["grads"]],
                [w[i] for w in result["weights"]],
                rng,
            )
            done += 1
            if not math.isnan(err):
                stats["grad_rel_err"] = max(stats["grad_rel_err"] or 0.0, err)
    stats["grad_checks"] += done
    return done


def run_family(
    name: str,
    batches: int,
    seed: int,
    batch_size: int = BATCH,
    grad_samples: int = GRAD_SAMPLES,
    fixed: list | None = None,
) -> dict:
    """Run ``batches`` batches of a family (``fixed``: one given batch, both gradients)."""
    family = fams.FAMILIES[name.split(":")[0]]()
    layer = make_layer(family)
    stats = new_stats(name, family)
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    tic = time.perf_counter()
    budget = grad_samples
    for k in range(batches):
        gradient = ("lpgd", "exact")[k % 2]
        values = fixed if fixed is not None else family.sample(rng, batch_size)
        result = run_batch(layer, values, gradient, rng)
        # Spread the gradient checks over the first exact batches: two per batch.
        budget -= record_batch(stats, family, values, result, k, min(2, budget), rng)
    stats["seconds"] = time.perf_counter() - tic
    return trim_failures(stats)


def trim_failures(stats: dict, keep: int = 20) -> dict:
    """Keep the SolverErrors and the ``keep`` largest deviations (the counts stay whole)."""
    errors = [f for f in stats["failures"] if "error" in f]
    worst = sorted(
        (f for f in stats["failures"] if "error" not in f),
        key=lambda f: -max(f["dev_x"], f["dev_dual"]),
    )
    stats["failures"] = errors[:keep] + worst[:keep]
    return stats


def summary_line(s: dict) -> str:
    return (
        f"{s['elements']} elements, {s['solver_errors']} SolverErrors, max dev "
        f"{max(s['max_dev_x'], s['max_dev_dual']):.1e}, {s['silent']} silent, "
        f"{s['seconds']:.0f} s"
    )


def run_campaign(families: list[str], scale: float, seed: int, log=print) -> list[dict]:
    """Every family, plus the regression batch when the assignment family is run."""
    batches = max(1, round(BATCHES * scale))
    results = []
    for name in families:
        log(f"# {name}: {batches} batches of {BATCH} ...")
        results.append(run_family(name, batches, seed))
        log(f"  {summary_line(results[-1])}")
        if name == "assignment":
            log("# assignment:regression (C = default_rng(0), lpgd + exact) ...")
            results.append(
                run_family(
                    "assignment:regression", 2, seed, fixed=fams.regression_assignment_batch()
                )
            )
            log(f"  {summary_line(results[-1])}")
    return results
