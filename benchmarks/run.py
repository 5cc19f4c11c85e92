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
  (``exact_backend="auto"``: Moreau's derivative for LPs and QPs, diffcp's otherwise);
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
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from datetime import datetime, timezone
from pathlib import Path

import cvxpy as cp
import numpy as np
import torch

from benchmarks import problems
from benchmarks.problems import Case

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
#: Where a full run of the table stores its raw output (the docs' tables come from it).
TABLE_JSON = RESULTS / "benchmarks.json"
#: Where a quick run stores its raw output (not tracked).
QUICK_JSON = RESULTS / "benchmarks-quick.json"
#: Where the scaling study stores its raw output, and its figure.
SCALING_JSON = RESULTS / "scaling.json"
SCALING_FIGURE = ROOT / "docs" / "img" / "benchmark_scaling.png"
#: JSON layout version.
SCHEMA = 1
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


# ---- the layers --------------------------------------------------------------------------


class Library:
    """One library's layer for a case: :meth:`run` times one forward and backward."""

    #: Name in the tables.
    name: str
    #: ``"lpgd"`` or ``"exact"``.
    gradient: str = "exact"

    def __init__(self, case: Case):
        self.case = case

    def call(self, tensors):  # pragma: no cover - abstract
        raise NotImplementedError

    def solver(self) -> str:
        """The solver that answered the last call."""
        return ""

    def stats(self) -> dict | None:
        """Solver statistics of the last call (cvxlpgd's ``solver_stats.summary()``)."""
        return None

    def run(self, tensors, weights) -> tuple[float, float, list[torch.Tensor]]:
        inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
        tic = time.perf_counter()
        outputs = self.call(inputs)
        forward = time.perf_counter() - tic
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        tic = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - tic
        return forward, backward, [o.detach() for o in outputs]


class Cvxlpgd(Library):
    """cvxlpgd's layer; ``gradient="exact"`` uses its default exact backend."""

    def __init__(self, case: Case, solver: str = "auto", gradient: str = "lpgd"):
        import cvxlpgd

        super().__init__(case)
        self.gradient = gradient
        suffix = [] if solver == "auto" else [solver]
        suffix += [] if gradient == "lpgd" else ["exact"]
        self.name = " ".join(["cvxlpgd", *suffix])
        self.layer = cvxlpgd.CvxpyLayer(
            case.problem,
            case.parameters,
            case.outputs,
            tau=case.tau,
            solver=solver,
            gradient=gradient,
        )

    def call(self, tensors):
        return self.layer(*tensors)

    def solver(self) -> str:
        stats = self.layer.solver_stats
        if stats is None:
            return ""
        backend = getattr(stats, "exact_backend", "")
        return f"{stats.solver}, {backend}" if backend else stats.solver

    def stats(self) -> dict | None:
        stats = self.layer.solver_stats
        return (
            None
            if stats is None
            else {k: (float(v) if isinstance(v, float) else v) for k, v in stats.summary().items()}
        )


class _Cvxpylayers(Library):
    solver_name: str | None = None

    def __init__(self, case: Case):
        from cvxpylayers.torch import CvxpyLayer

        super().__init__(case)
        self.layer = CvxpyLayer(
            case.problem,
            parameters=case.parameters,
            variables=case.outputs,
            solver=self.solver_name,
        )

    def call(self, tensors):
        # cvxpylayers 1.2 converts tensors with np.array(..., copy=False), which NumPy 2
        # answers with a DeprecationWarning on every call: noise, not a result.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="moreau")
            warnings.filterwarnings("ignore", category=UserWarning, module="diffcp")
            return self.layer(*tensors)


class CvxpylayersMoreau(_Cvxpylayers):
    name = "cvxpylayers + Moreau"
    solver_name = "MOREAU"

    def solver(self) -> str:
        return "MOREAU"


class CvxpylayersDiffcp(_Cvxpylayers):
    name = "cvxpylayers + diffcp"
    solver_name = None  # cvxpylayers' default: diffcp, which solves with SCS

    def solver(self) -> str:
        return "SCS"


REFERENCE = CvxpylayersMoreau.name
#: Batches this large also run cvxlpgd's SCS path (the QP at B = 512; B = 128 quick).
LARGE_BATCH = 128


def available_baseline() -> bool:
    """Whether cvxpylayers and Moreau are installed."""
    try:
        import cvxpylayers.torch  # noqa: F401
        import moreau  # noqa: F401
    except ImportError:
        return False
    return True


def libraries_for(case: Case, baseline: bool) -> list[Library]:
    """The layers a case is measured with (see the module docstring)."""
    out: list[Library] = [Cvxlpgd(case), Cvxlpgd(case, gradient="exact")]
    if case.batch_size >= LARGE_BATCH or case.family == "lasso":
        out.append(Cvxlpgd(case, solver="SCS"))
    if baseline:
        out += [CvxpylayersMoreau(case), CvxpylayersDiffcp(case)]
    return out


# ---- measurements ------------------------------------------------------------------------


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


# ---- provenance --------------------------------------------------------------------------


def machine_info() -> dict:
    """CPU, core count, load, versions and thread settings."""
    versions = {}
    for module in (
        "cvxlpgd",
        "moreau",
        "cvxpylayers",
        "cvxpy",
        "scs",
        "diffcp",
        "clarabel",
        "torch",
        "numpy",
        "scipy",
    ):
        try:
            versions[module] = str(__import__(module).__version__)
        except (ImportError, AttributeError):
            pass
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.system(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def git_commit() -> dict:
    """The checkout's commit, and whether the package or the benchmarks differ from it."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--", "cvxlpgd", "benchmarks")),
    }


def provenance(argv: list[str]) -> dict:
    """Command, commit, date and machine of a run."""
    return {
        "schema": SCHEMA,
        "command": " ".join(["python -m benchmarks.run", *argv]),
        **git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
    }


def write_json(record: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


# ---- entry point -------------------------------------------------------------------------


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
    from benchmarks import report, scaling

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.page:
        sections = report.write_page()
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
