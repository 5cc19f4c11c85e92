"""Differential correctness campaign: the default layer against CVXPY + Clarabel, tight.

Usage::

    python -m benchmarks.differential                 # 21 248 elements (~20 min, 2 cores)
    python -m benchmarks.differential --scale 0.1 --families qp,socp --seed 3

The families (:mod:`benchmarks.differential_families`): degenerate LPs (10 × 10
assignment, balanced transport, shortest path on a 4 × 4 grid), random box LPs, QPs,
OptNet-style QPs (G batched in the constraint matrix), an SOCP, a 4 × 4 SDP (max-cut
relaxation), exponential cones (entropy maximization, logistic regression) and power
cones. Every batch (B = 64) goes through the default layer
``cvxlpgd.CvxpyLayer(problem, parameters, [variables, constraint duals])`` (``solver=
"auto"``), forward and backward of a random linear loss, batches alternating between
``gradient="lpgd"`` (default τ) and ``gradient="exact"`` (the power-cone family uses
``exact_backend="moreau"``: diffcp has no power cones). Plus the regression batch: the
assignment LP with ``C = default_rng(0).standard_normal((64, 10, 10))``, once with each
gradient.

Measured per family:

* **reference-unsolved**: elements the reference does not solve; they are skipped. The
  reference is CVXPY + Clarabel at tolerances 1e-12, its "almost solved" accepted (it then
  meets 1e-9), else SCS to 1e-10. (Clarabel's "optimal" at 1e-10 is only ~1e-5 accurate
  in x on SOCPs and SDPs with linear objectives, flat to second order along the boundary.)
* **SolverErrors**: batches whose forward or backward pass raised ``cvxlpgd.SolverError``
  at an index the reference solves (the batch is then not compared).
* **fallbacks**: elements whose answering solver (``solver_stats.forward[i].solver``)
  differs from the call's solver (``solver_stats.solver``), by solver; then the same for
  the LPGD re-solves (``solver_stats.backward``).
* **max dev x**: ‖x − x_ref‖∞ / max(1, ‖x_ref‖∞) over the variables.
* **max dev duals**: the same over the constraint duals where they are unique (QP, SOCP,
  SDP, exp, pow, box LP). For the degenerate LPs (assignment, transport, shortest path)
  whose duals are not unique, the *dual optimality gap* instead: the largest of dual
  infeasibility ‖c + Aᵀν + Gᵀλ‖∞ / max(1, ‖c‖∞), max(0, −min λ) / max(1, ‖c‖∞), and
  |−bᵀν − hᵀλ − p_ref| / max(1, |p_ref|).
* **silent > 1e-4**: elements whose deviation (x or duals) exceeds 1e-4 in a batch that
  raised no warning (ZeroGradientWarning, about τ, and Deprecation/FutureWarnings do not
  count as warnings here).
* **grad rel err**: on a few elements of exact batches of the smooth families (QP, SOCP,
  SDP, exp, pow; not the LPs, whose solution map is piecewise constant), the layer's
  gradient g of the random linear loss along a random parameter direction against central
  differences fd of the reference's solution map at steps 1e-5, 1e-4 and 1e-3 relative
  (the reference's own 1e-8 accuracy makes the smallest noisy on curved cones); the
  largest over elements of the best |g − fd| / max(|g|, |fd|, 1e-6).
* **layer s**: seconds in the layer (forward + backward), references excluded.

Targets (verdict line): 0 SolverErrors where CVXPY solves, max deviation ≤ 1e-5, 0 silent
deviations > 1e-4. The report goes to stdout and ``--out`` (default
``benchmarks/results/differential.txt``), the raw numbers to the JSON next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks import differential_families as fams
from benchmarks.differential_campaign import BATCH, BATCHES, DEFAULT_OUT, run_campaign
from benchmarks.differential_report import failures_text, table, verdict


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.differential",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help=f"multiplies the batches per family ({BATCHES} of {BATCH})",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--families",
        default=",".join(fams.FAMILIES),
        help="comma-separated, from: " + ", ".join(fams.FAMILIES),
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="report path (the JSON goes next to it)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the campaign, print and save the report; 0 when the targets are met, else 1."""
    args = parse_args(argv)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    unknown = set(names) - set(fams.FAMILIES)
    if unknown:
        raise SystemExit(f"unknown families {sorted(unknown)}; known: {list(fams.FAMILIES)}")
    torch.set_num_threads(1)
    tic = time.perf_counter()
    results = run_campaign(
        names, args.scale, args.seed, log=lambda m: print(m, file=sys.stderr, flush=True)
    )
    seconds = time.perf_counter() - tic
    ok, line = verdict(results)
    report = "\n".join(
        [
            f"# Differential campaign (seed {args.seed}, scale {args.scale}, "
            f"{sum(s['elements'] for s in results)} elements, {seconds:.0f} s)",
            "",
            table(results),
            "",
            line,
            "",
            "## Failures (worst per family)",
            "",
            failures_text(results),
        ]
    )
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "seed": args.seed,
                "scale": args.scale,
                "seconds": seconds,
                "ok": ok,
                "families": results,
            },
            indent=1,
            default=float,
        )
        + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
