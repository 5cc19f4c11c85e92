"""Benchmark cvxlpgd against the field: cvxpylayers + Moreau, cvxpylayers + diffcp.

Usage::

    python -m benchmarks.run               # the table: 14 minutes on 2 cores at load 7
    python -m benchmarks.run --quick       # smoke run: small sizes, one repetition
    python -m benchmarks.run --scaling     # the scaling study (time per element
                                           # against B and n) and its figure
    python -m benchmarks.run --page        # docs/benchmarks.md's tables from the
                                           # stored results (no measurement)

Per problem, these layers run interleaved in one process:

* **cvxlpgd** with its defaults (``solver="auto"``, ``gradient="lpgd"``);
* **cvxlpgd exact**: ``gradient="exact"`` with its default exact backend
  (``exact_backend="auto"``: from the active set on LPs and QPs, the elements it does
  not determine by Moreau's derivative (QPs) or diffcp's (LPs));
* **cvxlpgd SCS**: ``solver="SCS"`` with LPGD (the QP at B = 512 and the lasso);
* **cvxpylayers + Moreau**: ``cvxpylayers.torch.CvxpyLayer(..., solver="MOREAU")``,
  exact gradients — the reference every ratio divides by;
* **cvxpylayers + diffcp**: cvxpylayers' default, diffcp with SCS at its defaults.

Each layer runs forward + backward on the same batch with the loss ⟨W, x⟩ (W fixed,
standard normal), after one warm-up call (compilation, first-call costs and thread
pools stay out of the times); the layers take turns (A, B, C, A, B, C, …) and every
reported time is a median. Next to every time the report gives the layer's largest
deviation of the forward solution from a reference solve (CVXPY with Clarabel at
1e-12): a time from wrong answers still counts as a time to beat, and the table marks
it. The per-call overhead is measured on a 5-variable QP (µs per call at B = 1, µs per
element at B = 1024). Traced peak memory is the peak of Python and NumPy allocations
during one forward + backward call (``tracemalloc``, a separate pass).

Every run writes its raw output — machine, commit, command, every repetition's times —
as JSON (``benchmarks/results/benchmarks.json`` for the table,
``benchmarks/results/scaling.json`` for the scaling study; ``--json`` elsewhere), and
prints the report rendered from that JSON by :mod:`benchmarks.report`, the code that
also writes docs/benchmarks.md's tables (``--page``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from benchmarks import page, problems, report, scaling
from benchmarks.libraries import LARGE_BATCH, available_baseline, libraries_for
from benchmarks.measure import (
    PREVIOUS_PEAK_MIB,
    auto_sweep,
    measure,
    overhead,
    previous_engine_peak,
)
from benchmarks.problems import Case
from benchmarks.results_io import (
    QUICK_JSON,
    RESULTS,
    SCALING_FIGURE,
    SCALING_JSON,
    TABLE_JSON,
    provenance,
    write_json,
)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small problems, one repetition, no memory pass",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed forward + backward repetitions (default 7, quick 1; scaling 3, quick 1)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip cvxpylayers (also skipped when it is not installed)",
    )
    parser.add_argument(
        "--previous",
        metavar="DIR",
        default=None,
        help="a checkout of the previous engine (commit e56ebf4) whose "
        "traced peak on the QP B=512 call is measured in this run",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="run the scaling study (time per element against B and n) "
        "instead of the table; stores scaling.json and the figure",
    )
    parser.add_argument(
        "--page",
        action="store_true",
        help="measure nothing: rewrite docs/benchmarks.md's generated "
        "tables (and the scaling figure) from the stored JSON",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="where to store the raw output (default: "
        "benchmarks/results/benchmarks.json, scaling.json for "
        "--scaling, benchmarks-quick.json for --quick)",
    )
    parser.add_argument(
        "--figure",
        metavar="PATH",
        default=None,
        help="where --scaling draws its figure (default "
        "docs/img/benchmark_scaling.png; quick runs draw none unless "
        "given)",
    )
    return parser.parse_args(argv)


def benchmark_cases(quick: bool) -> list[Case]:
    """The benchmark problems (small sizes for ``quick``)."""
    if quick:
        return [
            problems.assignment_lp(size=4, batch_size=8),
            problems.dense_qp(n=10, m=20, batch_size=8),
            problems.dense_qp(n=10, m=20, batch_size=LARGE_BATCH),
            problems.optnet_qp(n=5, m=4, batch_size=4),
            problems.lasso(n=60, m=40, batch_size=1, lam=0.05),
        ]
    return [
        problems.assignment_lp(),
        problems.dense_qp(),
        problems.dense_qp(batch_size=512),
        problems.optnet_qp(),
        problems.lasso(),
    ]


def run_table(args, argv) -> dict:
    """Measure the table; returns its JSON record."""
    repeats = args.repeats or (1 if args.quick else 7)
    baseline = not args.no_baseline and available_baseline()
    record = {
        **provenance(argv),
        "kind": "table",
        "quick": args.quick,
        "repeats": repeats,
        "cases": [],
    }
    for case in benchmark_cases(args.quick):
        print(f"# {case.name} ...", file=sys.stderr, flush=True)
        record["cases"].append(
            measure(
                libraries_for(case, baseline),
                case,
                repeats,
                memory=not args.quick and case.batch_size >= 512,
            )
        )
    print("# per-call overhead ...", file=sys.stderr, flush=True)
    record["overhead"] = overhead(baseline, args.quick)
    previous, source = PREVIOUS_PEAK_MIB, "recorded"
    if args.previous and not args.quick:
        previous, source = previous_engine_peak(args.previous) / 2**20, "measured"
    record["previous_peak_mib"] = {"value": previous, "source": source}
    if not args.quick:
        print("# solver='auto': one problem of growing size ...", file=sys.stderr, flush=True)
        record["auto_sweep"] = auto_sweep(
            ((100, 1), (200, 1), (300, 1), (450, 1), (700, 1), (100, 16), (200, 16)),
            max(3, repeats // 2),
        )
    record["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return record


def main(argv=None) -> int:
    """Run the benchmarks (or rewrite the page), print the report; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.page:
        sections = page.write_page()
        print("\n\n".join(sections.values()))
        return 0
    torch.set_num_threads(1)  # the layers parallelize over the batch themselves
    if args.scaling:
        record = scaling.run(
            provenance(argv),
            quick=args.quick,
            repeats=args.repeats,
            baseline=not args.no_baseline and available_baseline(),
        )
        path = (
            Path(args.json)
            if args.json
            else (RESULTS / "scaling-quick.json" if args.quick else SCALING_JSON)
        )
        write_json(record, path)
        figure = args.figure or (None if args.quick else SCALING_FIGURE)
        if figure is not None:
            scaling.figure(record, Path(figure))
        print(report.scaling_report(record))
        print(f"\n(raw output: {path})", file=sys.stderr)
        return 0
    record = run_table(args, argv)
    path = Path(args.json) if args.json else (QUICK_JSON if args.quick else TABLE_JSON)
    write_json(record, path)
    print(report.table_report(record))
    print(f"\n(raw output: {path})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
