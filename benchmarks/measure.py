"""Measurements of the benchmark (see :mod:`benchmarks.run`): interleaved timed
forward + backward calls against a tight reference solve, the per-call overhead, the
``solver="auto"`` sweep, and the traced peak of another checkout's engine.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc

import cvxpy as cp
import numpy as np
import torch

from benchmarks import problems
from benchmarks.libraries import (
    Cvxlpgd,
    CvxpylayersMoreau,
    Library,
)
from benchmarks.problems import Case
from benchmarks.results_io import ROOT

#: The traced peak of the QP B=512 forward + LPGD backward with the previous engine
#: (commit e56ebf4: SCS on a thread pool), measured by :func:`previous_engine_peak` on
#: the machine of docs/benchmarks.md; used when ``--previous`` names no checkout.
PREVIOUS_PEAK_MIB = 48.2
#: The reference's tolerances (CVXPY + Clarabel); 1e-10 left the size sweep's QP at
#: n = 2000 4e-5 from a 1e-12 solve (and from SCS at 1e-10).
REFERENCE_TOLERANCE = 1e-12

_PEAK_SCRIPT = """
import gc, sys, tracemalloc, warnings
import numpy as np, torch
warnings.simplefilter("ignore")
import cvxlpgd
from benchmarks import problems
case = problems.dense_qp(batch_size={batch})
layer = cvxlpgd.CvxpyLayer(case.problem, case.parameters, case.outputs, tau=case.tau)
tensors = [t.detach() for t in case.tensors()]
W = torch.tensor(np.random.default_rng(123).standard_normal((case.batch_size, 50)))
def run():
    inputs = [t.clone().requires_grad_(True) for t in tensors]
    (x,) = layer(*inputs)
    (W * x).sum().backward()
run()
gc.collect(); tracemalloc.start(); run()
print(tracemalloc.get_traced_memory()[1])
"""


def previous_engine_peak(checkout: str, batch_size: int = 512) -> int:
    """Traced peak bytes of the QP call with the package of another checkout.

    Runs the same measurement as this benchmark's memory pass in a subprocess that
    imports ``cvxlpgd`` from ``checkout`` (e.g. ``git worktree add /tmp/old e56ebf4``)
    and the problems from this one.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([checkout, str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT.format(batch=batch_size)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=checkout,
    )
    return int(result.stdout.split()[-1])


def case_inputs(case: Case):
    """The case's parameter tensors and loss weights."""
    tensors = [t.detach() for t in case.tensors(case.batch_size)]
    rng = np.random.default_rng(123)
    weights = [torch.tensor(rng.standard_normal((case.batch_size, *o.shape))) for o in case.outputs]
    return tensors, weights


def reference_solutions(case: Case, tensors, elements: int | None = None) -> list[np.ndarray]:
    """The first ``elements`` elements (all by default) solved by CVXPY with Clarabel
    at :data:`REFERENCE_TOLERANCE` (outputs in order; 1e-10, then Clarabel's defaults,
    where it stops without reaching 1e-12: 3 of the OptNet QP's 32 elements)."""
    batched = [t.dim() > len(p.shape) for t, p in zip(tensors, case.parameters)]
    count = case.batch_size if elements is None else min(elements, case.batch_size)
    out: list[list[np.ndarray]] = [[] for _ in case.outputs]
    for i in range(count):
        for p, t, flag in zip(case.parameters, tensors, batched):
            p.value = (t[i] if flag else t).numpy()
        for tol in (REFERENCE_TOLERANCE, 1e-10, None):  # Clarabel may stall at 1e-12
            settings = (
                {} if tol is None else {"tol_gap_abs": tol, "tol_gap_rel": tol, "tol_feas": tol}
            )
            try:
                case.problem.solve(solver=cp.CLARABEL, **settings)
            except cp.error.SolverError:
                continue
            if case.problem.status == cp.OPTIMAL:
                break
        for k, o in enumerate(case.outputs):
            out[k].append(np.asarray(o.value))
    return [np.stack(values) for values in out]


def deviation(outputs, reference) -> float:
    """Largest absolute deviation of the outputs' first rows from the reference."""
    return max(float(np.abs(o.numpy()[: len(r)] - r).max()) for o, r in zip(outputs, reference))


def measure(
    libraries: list[Library], case: Case, repeats: int, memory: bool, checked: int | None = None
) -> dict:
    """One case: interleaved timings, deviations from the reference (on the first
    ``checked`` elements, default all), traced peaks.

    Returns
    -------
    dict
        The case's JSON record (see :func:`main`).
    """
    tensors, weights = case_inputs(case)
    reference = reference_solutions(case, tensors, checked)
    rows = {
        lib.name: {
            "library": lib.name,
            "gradient": lib.gradient,
            "forward_s": [],
            "backward_s": [],
            "peak_bytes": None,
        }
        for lib in libraries
    }
    for lib in libraries:  # warm-up: first-call costs stay out of the timings
        _, _, outputs = lib.run(tensors, weights)
        rows[lib.name]["deviation"] = deviation(outputs, reference)
        rows[lib.name]["solver"] = lib.solver()
        rows[lib.name]["stats"] = lib.stats()
    for _ in range(repeats):
        for lib in libraries:
            gc.collect()
            forward, backward, _ = lib.run(tensors, weights)
            rows[lib.name]["forward_s"].append(forward)
            rows[lib.name]["backward_s"].append(backward)
    if memory:
        for lib in libraries:
            gc.collect()
            tracemalloc.start()
            lib.run(tensors, weights)
            rows[lib.name]["peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return {
        "name": case.name,
        "family": case.family,
        "batch_size": case.batch_size,
        "tau": case.tau,
        "rows": list(rows.values()),
    }


def overhead(baseline: bool, quick: bool) -> dict:
    """Per-call overhead: µs per call at B = 1 and per element at B = 1024 on a
    5-variable QP, forward + backward, for cvxlpgd (LPGD and exact) and the reference."""
    sizes = ((1, 10 if quick else 200), (1024, 1 if quick else 7))
    out: dict = {"problem": "QP n=5 m=10", "rows": []}
    for batch_size, calls in sizes:
        case = problems.dense_qp(n=5, m=10, batch_size=batch_size)
        libraries: list[Library] = [Cvxlpgd(case), Cvxlpgd(case, gradient="exact")]
        if baseline:
            libraries.append(CvxpylayersMoreau(case))
        tensors, weights = case_inputs(case)
        times: dict[str, tuple[list[float], list[float]]] = {
            lib.name: ([], []) for lib in libraries
        }
        for lib in libraries:
            lib.run(tensors, weights)
        for _ in range(calls):
            for lib in libraries:
                forward, backward, _ = lib.run(tensors, weights)
                times[lib.name][0].append(forward)
                times[lib.name][1].append(backward)
        for lib in libraries:
            out["rows"].append(
                {
                    "library": lib.name,
                    "batch_size": batch_size,
                    "solver": lib.solver(),
                    "forward_s": times[lib.name][0],
                    "backward_s": times[lib.name][1],
                }
            )
    return out


def auto_sweep(sizes, repeats: int) -> list[dict]:
    """Lasso problems of growing size, alone and in a batch: Moreau against SCS.

    The measurements behind ``solver="auto"``'s size rule (:mod:`cvxlpgd.engine.selection`):
    the stored entries of A and P at which SCS overtakes Moreau when one factorization
    serves the batch.
    """
    rows = []
    for n, batch_size in sizes:
        case = problems.lasso(n=n, m=int(0.6 * n), batch_size=batch_size)
        libraries: list[Library] = [Cvxlpgd(case, solver="MOREAU"), Cvxlpgd(case, solver="SCS")]
        record = measure(libraries, case, repeats, memory=False)
        auto = Cvxlpgd(case)
        auto.run(*case_inputs(case))
        template = auto.layer._template(True)
        nonzeros = template.A_pattern.nnz + (template.P_pattern.nnz if template.quadratic else 0)
        times = {row["library"]: row for row in record["rows"]}
        rows.append(
            {
                "n": n,
                "m": int(0.6 * n),
                "batch_size": batch_size,
                "nonzeros": int(nonzeros),
                "auto": auto.solver(),
                "moreau": {k: times["cvxlpgd MOREAU"][k] for k in ("forward_s", "backward_s")},
                "scs": {k: times["cvxlpgd SCS"][k] for k in ("forward_s", "backward_s")},
            }
        )
    return rows
