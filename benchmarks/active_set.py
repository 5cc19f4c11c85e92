"""LPGD backward with and without the active-set prediction (cvxlpgd.lpgd.active_set).

Engine level, one forward per case and solver, then backward passes alternately with
``active_set=True`` and ``False`` (the first of each a warm-up); medians of the wall
times, the predicted and re-solved perturbed problems (element × side), and the largest
relative difference of the two data gradients. Not a test: timings on shared machines
are noisy.

    python -m benchmarks.active_set [--repeats 15] [--solvers AUTO CLARABEL SCS]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from benchmarks.problems import Case, assignment_lp, dense_qp, optnet_qp
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.problem.compile import compile_problem


def measure(case: Case, solver: str, repeats: int) -> dict:
    """Median backward times with and without prediction, counts, gradient difference."""
    template = compile_problem(case.problem, case.parameters, case.outputs)
    values = case.values(case.batch_size, 0)
    batched = [v.ndim > len(p.shape) for v, p in zip(values, case.parameters)]
    batch = template.program_data(template.stack_parameters(values, case.batch_size), batched)
    engine = BatchEngine(solver)
    state = engine.forward(template, batch, lpgd_tau=case.tau)
    rng = np.random.default_rng(123)
    weights = [rng.standard_normal((case.batch_size, *slot.shape)) for slot in template.outputs]
    dx, dy = template.output_adjoint(weights, case.batch_size)
    times: dict[bool, list[float]] = {True: [], False: []}
    gradients, counts = {}, (0, 0)
    for k in range(repeats + 1):
        for on in (True, False):
            tic = time.perf_counter()
            result = engine.backward_lpgd(
                state, dx, dy, tau=case.tau, rho=0.0, mode="central", active_set=on
            )
            if k:
                times[on].append(time.perf_counter() - tic)
            gradients[on] = result.gradient
            if on:
                counts = (state.stats.active_set_predicted, state.stats.active_set_resolved)
    difference = max(
        float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
        for a, b in zip(gradients[True].parts(), gradients[False].parts())
        if a is not None
    )
    return {
        "solver": state.solution.solver,
        "on": statistics.median(times[True]),
        "off": statistics.median(times[False]),
        "predicted": counts[0],
        "resolved": counts[1],
        "difference": difference,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--solvers", nargs="+", default=["AUTO", "CLARABEL", "SCS"])
    args = parser.parse_args(argv)
    cases = [assignment_lp(10, 64), dense_qp(50, 100, 64), optnet_qp(20, 15, 32)]
    print(
        f"{'case':<26} {'solver':<9} {'on ms':>8} {'off ms':>8} {'speed-up':>8} "
        f"{'predicted':>9} {'re-solved':>9} {'grad diff':>9}"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases:
            for solver in args.solvers:
                r = measure(case, solver, args.repeats)
                print(
                    f"{case.name:<26} {r['solver']:<9} {1e3 * r['on']:>8.1f} "
                    f"{1e3 * r['off']:>8.1f} {r['off'] / r['on']:>7.2f}x "
                    f"{r['predicted']:>9} {r['resolved']:>9} {r['difference']:>9.1e}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
