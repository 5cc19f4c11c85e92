"""Benchmark cvxlpgd's default path against cvxpylayers + Moreau, its recommended pathway.

Usage::

    python -m benchmarks.run            # full run (about 10 minutes on 2 cores)
    python -m benchmarks.run --quick    # smoke run: small sizes, one repetition

Three layers per problem, interleaved in one run:

* **cvxlpgd** with its defaults (``solver="auto"``) and ``gradient="lpgd"``;
* **cvxlpgd SCS**: the same with ``solver="SCS"`` (the package's per-element path);
* **cvxpylayers + Moreau**: ``cvxpylayers.torch.CvxpyLayer(..., solver="MOREAU")``
  with its exact gradients — the reference time to beat.

Each library runs forward + backward on the same batch with the loss ⟨W, x⟩ (W
fixed, random), after one warm-up call (Moreau's first solve of a new compiled
solver picks its linear solver; compilation and thread pools stay out of the
times); runs are interleaved (A, B, C, A, B, C, …) and every time is a median. Next
to every time the report gives the library's largest deviation of the forward
solution from a reference solve (CVXPY with Clarabel at 1e-10): a time from wrong
answers still counts as a time to beat, and the table marks it. Traced peak memory
is the peak of Python and NumPy allocations during one forward + backward call
(``tracemalloc``, a separate pass; memory inside the solvers' native code is not
seen).
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
import torch

from benchmarks import problems
from benchmarks.problems import Case

#: A deviation from the reference solve above this marks a library's answers as wrong.
WRONG = 1e-4
#: The traced peak of the QP B=512 forward + LPGD backward with the previous engine
#: (commit e56ebf4: SCS on a thread pool), measured by :func:`previous_engine_peak` on
#: the machine of docs/benchmarks.md; used when ``--previous`` names no checkout.
PREVIOUS_PEAK_MIB = 48.2

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
    import os
    import subprocess
    from pathlib import Path

    here = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([checkout, here])}
    result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(batch=batch_size)],
                            capture_output=True, text=True, check=True, env=env,
                            cwd=checkout)
    return int(result.stdout.split()[-1])


@dataclass
class Timing:
    """Per-run times in seconds, the traced peak in bytes, the deviation."""

    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    deviation: float = float("nan")
    solver: str = ""

    def median(self, name: str) -> float:
        values = getattr(self, name)
        return statistics.median(values) if values else float("nan")

    @property
    def total(self) -> float:
        return self.median("forward") + self.median("backward")


class Library:
    """One library's layer for a case: ``run`` times forward and backward once."""

    name: str

    def __init__(self, case: Case):
        self.case = case

    def call(self, tensors):  # pragma: no cover - abstract
        raise NotImplementedError

    def solver(self) -> str:
        return ""

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
    def __init__(self, case: Case, solver: str = "auto"):
        import cvxlpgd

        super().__init__(case)
        self.name = "cvxlpgd" if solver == "auto" else f"cvxlpgd {solver}"
        self.layer = cvxlpgd.CvxpyLayer(case.problem, case.parameters, case.outputs,
                                        tau=case.tau, solver=solver)

    def call(self, tensors):
        return self.layer(*tensors)

    def solver(self) -> str:
        stats = self.layer.solver_stats
        return "" if stats is None else stats.solver


class CvxpylayersMoreau(Library):
    name = "cvxpylayers + Moreau"

    def __init__(self, case: Case):
        from cvxpylayers.torch import CvxpyLayer

        super().__init__(case)
        self.layer = CvxpyLayer(case.problem, parameters=case.parameters,
                                variables=case.outputs, solver="MOREAU")

    def call(self, tensors):
        # cvxpylayers 1.2 converts tensors with np.array(..., copy=False), which NumPy 2
        # answers with a DeprecationWarning on every call: noise, not a result.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="moreau")
            return self.layer(*tensors)

    def solver(self) -> str:
        return "MOREAU"


def available_baseline() -> bool:
    """Whether cvxpylayers and Moreau are installed."""
    try:
        import cvxpylayers.torch  # noqa: F401
        import moreau  # noqa: F401
    except ImportError:
        return False
    return True


# ---- measurements ------------------------------------------------------------------------


def case_inputs(case: Case):
    """The case's parameter tensors and loss weights."""
    tensors = [t.detach() for t in case.tensors(case.batch_size)]
    rng = np.random.default_rng(123)
    weights = [torch.tensor(rng.standard_normal((case.batch_size, *o.shape)))
               for o in case.outputs]
    return tensors, weights


def reference_solutions(case: Case, tensors) -> list[np.ndarray]:
    """Each element solved by CVXPY with Clarabel at 1e-10 (outputs in order)."""
    batched = [t.dim() > len(p.shape) for t, p in zip(tensors, case.parameters)]
    out = [[] for _ in case.outputs]
    for i in range(case.batch_size):
        for p, t, flag in zip(case.parameters, tensors, batched):
            p.value = (t[i] if flag else t).numpy()
        case.problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10,
                           tol_feas=1e-10)
        for k, o in enumerate(case.outputs):
            out[k].append(np.asarray(o.value))
    return [np.stack(values) for values in out]


def measure(libraries: list[Library], case: Case, repeats: int, memory: bool
            ) -> dict[str, Timing]:
    """Interleaved timings, deviations from the reference, and traced peaks."""
    tensors, weights = case_inputs(case)
    reference = reference_solutions(case, tensors)
    timings = {lib.name: Timing() for lib in libraries}
    for lib in libraries:  # warm-up: first-call costs stay out of the timings
        _, _, outputs = lib.run(tensors, weights)
        timings[lib.name].deviation = max(float(np.abs(o.numpy() - r).max())
                                          for o, r in zip(outputs, reference))
        timings[lib.name].solver = lib.solver()
    for _ in range(repeats):
        for lib in libraries:
            gc.collect()
            forward, backward, _ = lib.run(tensors, weights)
            timings[lib.name].forward.append(forward)
            timings[lib.name].backward.append(backward)
    if memory:
        for lib in libraries:
            gc.collect()
            tracemalloc.start()
            lib.run(tensors, weights)
            timings[lib.name].peak_bytes = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return timings


# ---- report ------------------------------------------------------------------------------


def machine_description() -> str:
    """CPU, core count and versions, as Markdown lines."""
    import os

    versions = []
    for module in ("cvxlpgd", "moreau", "cvxpylayers", "cvxpy", "scs", "diffcp", "torch",
                   "numpy", "scipy"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            pass
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "\n".join([f"- CPU: {cpu}, {os.cpu_count()} CPUs",
                      f"- Python {platform.python_version()} on {platform.system()}",
                      f"- {', '.join(versions)}"])


def ms(seconds: float) -> str:
    return "n/a" if not np.isfinite(seconds) else f"{seconds * 1e3:.1f}"


def mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f}"


def results_table(rows: list[tuple[Case, dict[str, Timing]]]) -> str:
    lines = ["| problem | library (solver) | forward ms | backward ms | total ms | "
             "max deviation | traced peak MiB | total / reference |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, timings in rows:
        base = timings.get(CvxpylayersMoreau.name)
        for name, t in timings.items():
            ratio = "" if base is None or name == CvxpylayersMoreau.name else (
                f"{t.total / base.total:.2f}")
            wrong = " **(wrong)**" if t.deviation > WRONG else ""
            label = f"{name} ({t.solver})" if t.solver else name
            lines.append(f"| {case.name} | {label} | {ms(t.median('forward'))} | "
                         f"{ms(t.median('backward'))} | {ms(t.total)} | "
                         f"{t.deviation:.1e}{wrong} | {mib(t.peak_bytes)} | {ratio} |")
    return "\n".join(lines)


def targets(rows: list[tuple[Case, dict[str, Timing]]], previous_mib: float) -> str:
    """The issue's targets with the measured values."""
    out = ["| target | measured | met |", "|---|---:|---|"]

    def add(label, value, limit):
        out.append(f"| {label} | {value:.2f} | {'yes' if value <= limit else 'NO'} |")

    for case, timings in rows:
        ours = timings["cvxlpgd"]
        base = timings.get(CvxpylayersMoreau.name)
        scs = timings.get("cvxlpgd SCS")
        if case.name.startswith("lasso"):
            if scs is not None:
                add(f"{case.name}: default / SCS path ≤ 1.05", ours.total / scs.total, 1.05)
            add(f"{case.name}: LPGD backward / forward ≤ 0.5",
                ours.median("backward") / ours.median("forward"), 0.5)
            continue
        if base is not None:
            add(f"{case.name}: fwd+LPGD / cvxpylayers+Moreau fwd+bwd ≤ 0.5",
                ours.total / base.total, 0.5)
        if case.batch_size >= 512 and scs is not None:
            add(f"{case.name}: default / SCS path ≤ 0.3", ours.total / scs.total, 0.3)
            if ours.peak_bytes is not None:
                add(f"{case.name}: traced peak MiB ≤ previous engine's {previous_mib:.1f}",
                    ours.peak_bytes / 2**20, previous_mib)
    return "\n".join(out)


def auto_sweep(sizes, repeats: int) -> str:
    """Lasso problems of growing size, alone and in a batch: Moreau against SCS.

    The measurements behind ``solver="auto"``'s size rule (:mod:`cvxlpgd.engine.selection`):
    the stored entries of A and P at which SCS overtakes Moreau when one factorization
    serves the batch.
    """
    from cvxlpgd.engine.selection import LARGE_PROBLEM_NONZEROS

    lines = ["| lasso n × m, B | stored entries of A, P | Moreau ms | SCS ms | Moreau / SCS | "
             "auto picks |", "|---|---:|---:|---:|---:|---|"]
    for n, batch_size in sizes:
        case = problems.lasso(n=n, m=int(0.6 * n), batch_size=batch_size)
        libraries = [Cvxlpgd(case, solver="MOREAU"), Cvxlpgd(case, solver="SCS")]
        timings = measure(libraries, case, repeats, memory=False)
        moreau, scs = timings["cvxlpgd MOREAU"], timings["cvxlpgd SCS"]
        auto = Cvxlpgd(case)
        auto.run(*case_inputs(case))
        template = auto.layer._template(True)
        nonzeros = template.A_pattern.nnz + (template.P_pattern.nnz if template.quadratic
                                             else 0)
        lines.append(f"| {n} × {int(0.6 * n)}, {batch_size} | {nonzeros} | {ms(moreau.total)} | "
                     f"{ms(scs.total)} | {moreau.total / scs.total:.2f} | {auto.solver()} |")
    lines.append(f"\n(`solver=\"auto\"` sends problems with ≥ {LARGE_PROBLEM_NONZEROS} "
                 "stored entries to SCS when the batch shares its matrices.)")
    return "\n".join(lines)


# ---- entry point -------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small problems, one repetition, no memory pass")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed forward + backward repetitions (default 7, quick 1)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip cvxpylayers (also skipped when it is not installed)")
    parser.add_argument("--previous", metavar="DIR", default=None,
                        help="a checkout of the previous engine (commit e56ebf4) whose "
                             "traced peak on the QP B=512 call is measured in this run")
    return parser.parse_args(argv)


def benchmark_cases(quick: bool) -> list[Case]:
    """The benchmark problems (small sizes for ``quick``)."""
    if quick:
        return [problems.assignment_lp(size=4, batch_size=8),
                problems.dense_qp(n=10, m=20, batch_size=8),
                problems.dense_qp(n=10, m=20, batch_size=512),
                problems.optnet_qp(n=5, m=4, batch_size=4),
                problems.lasso(n=60, m=40, batch_size=1)]
    return [problems.assignment_lp(), problems.dense_qp(), problems.dense_qp(batch_size=512),
            problems.optnet_qp(), problems.lasso()]


def main(argv=None) -> int:
    """Run the benchmarks and print the Markdown report; returns the exit status."""
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 7)
    baseline = not args.no_baseline and available_baseline()
    torch.set_num_threads(1)  # the layers parallelize over the batch themselves
    rows = []
    for case in benchmark_cases(args.quick):
        print(f"# {case.name} ...", file=sys.stderr, flush=True)
        libraries = [Cvxlpgd(case)]
        if case.batch_size >= 512 or case.name.startswith("lasso"):
            libraries.append(Cvxlpgd(case, solver="SCS"))
        if baseline:
            libraries.append(CvxpylayersMoreau(case))
        rows.append((case, measure(libraries, case, repeats, memory=not args.quick
                                   and case.batch_size >= 512)))
    previous_mib, source = PREVIOUS_PEAK_MIB, "recorded (docs/benchmarks.md)"
    if args.previous and not args.quick:
        previous_mib, source = previous_engine_peak(args.previous) / 2**20, "measured now"
    report = ["## Machine", "", machine_description(),
              f"- previous engine's traced peak, QP B=512: {previous_mib:.1f} MiB ({source})",
              "", f"## Results (medians of {repeats} interleaved runs)", "",
              results_table(rows), "", "## Targets", "", targets(rows, previous_mib)]
    if not args.quick:
        print("# one problem of growing size ...", file=sys.stderr, flush=True)
        report += ["", "## solver=\"auto\": problems of growing size", "",
                   auto_sweep(((100, 1), (200, 1), (300, 1), (450, 1), (700, 1), (100, 16),
                               (200, 16)), max(3, repeats // 2))]
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
