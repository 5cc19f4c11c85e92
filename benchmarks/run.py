"""Benchmark cvxlpgd against cvxpylayers: forward, LPGD backward, exact backward, memory.

Usage::

    python -m benchmarks.run            # full run (a few minutes)
    python -m benchmarks.run --quick    # smoke run: small sizes, one repetition

Both libraries solve with SCS and the same SCS settings (:data:`SCS_SETTINGS`:
tolerances, iteration limit, linear solver). cvxlpgd differentiates with its LPGD
(``gradient="lpgd"``) or through diffcp (``gradient="exact"``); cvxpylayers (torch
API, diffcp backend) with diffcp's ``mode="lpgd"`` and the same τ and ρ = 0, or with
diffcp's default ``mode="lsqr"`` (exact). Runs are interleaved (library A, library B,
A, B, …) after a warm-up call each, and every reported time is the median over the
repetitions. The loss is ⟨W, x⟩ with a fixed random W, so every backward pass sees
a generic incoming gradient.

Peak memory is the peak of traced Python and NumPy allocations during one forward +
LPGD backward call (``tracemalloc``; it does not see memory allocated inside the
solvers' C code or by torch), measured in a separate pass so that tracing does not
slow the timed runs.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks import problems
from benchmarks.problems import Case

#: SCS settings given to both libraries. QDLDL is SCS's own sparse LDL solver;
#: naming it keeps both libraries on the same linear solver whatever SCS's automatic
#: choice is on a machine (SCS ≥ 3.3 prefers MKL Pardiso where it is installed).
SCS_SETTINGS = {"eps_abs": 1e-6, "eps_rel": 1e-6, "max_iters": 100_000,
                "linear_solver": "qdldl"}


@dataclass
class Timing:
    """Medians over the repetitions, in seconds, and the traced peak in bytes."""

    forward: list[float] = field(default_factory=list)
    backward_lpgd: list[float] = field(default_factory=list)
    forward_exact: list[float] = field(default_factory=list)
    backward_exact: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    def median(self, name: str) -> float:
        values = getattr(self, name)
        return statistics.median(values) if values else float("nan")

    @property
    def lpgd_total(self) -> float:
        return self.median("forward") + self.median("backward_lpgd")


# ---- the two libraries -------------------------------------------------------------------


class Library:
    """One library's layer for a case: ``call(gradient)`` runs forward and backward."""

    name: str

    def __init__(self, case: Case):
        self.case = case

    def layer_call(self, tensors, gradient: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, tensors, weights, gradient: str) -> tuple[float, float]:
        """Forward and backward wall times of one call."""
        inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
        tic = time.perf_counter()
        outputs = self.layer_call(inputs, gradient)
        forward = time.perf_counter() - tic
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        tic = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - tic
        return forward, backward


class Cvxlpgd(Library):
    name = "cvxlpgd"

    def __init__(self, case: Case, workers: int | None = None):
        import cvxlpgd

        super().__init__(case)
        self.layer = cvxlpgd.CvxpyLayer(case.problem, case.parameters, case.outputs,
                                        tau=case.tau, solver="SCS", solver_args=SCS_SETTINGS,
                                        workers=workers)

    def layer_call(self, tensors, gradient):
        return self.layer(*tensors, gradient=gradient)


class Cvxpylayers(Library):
    name = "cvxpylayers"

    def __init__(self, case: Case):
        from cvxpylayers.torch import CvxpyLayer

        super().__init__(case)
        self.layer = CvxpyLayer(case.problem, parameters=case.parameters,
                                variables=case.outputs)
        # diffcp reads its solver from `solve_method` (default ECOS for these cones)
        # and its LPGD options from `mode` and `derivative_kwargs`; the rest goes to SCS.
        self.args = {
            "lpgd": {"solve_method": "SCS", **SCS_SETTINGS, "mode": "lpgd",
                     "derivative_kwargs": {"tau": case.tau, "rho": 0.0}},
            "exact": {"solve_method": "SCS", **SCS_SETTINGS, "mode": "lsqr"},
        }

    def layer_call(self, tensors, gradient):
        return self.layer(*tensors, solver_args=dict(self.args[gradient]))

    def run(self, tensors, weights, gradient: str) -> tuple[float, float]:
        # cvxpylayers 1.2 converts tensors with np.array(..., copy=False), which NumPy 2
        # answers with a DeprecationWarning on every call: noise, not a result.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module="cvxpylayers")
            return super().run(tensors, weights, gradient)


def available_baseline() -> bool:
    try:
        import cvxpylayers.torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---- measurements ------------------------------------------------------------------------


def loss_weights(case: Case, batch_size: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(123)
    return [torch.tensor(rng.standard_normal((batch_size, *o.shape))) for o in case.outputs]


def case_inputs(case: Case, batch_size: int | None = None, tile: int = 1):
    """Parameter tensors and loss weights of a case; ``tile`` repeats the batch."""
    batch_size = batch_size or case.batch_size
    tensors = [t.detach() for t in case.tensors(batch_size)]
    weights = loss_weights(case, batch_size)
    if tile > 1:
        tensors = [t.repeat(tile, *[1] * len(p.shape)) if t.dim() > len(p.shape) else t
                   for t, p in zip(tensors, case.parameters)]
        weights = [w.repeat(tile, *[1] * (w.dim() - 1)) for w in weights]
    return tensors, weights


def measure(libraries: list[Library], case: Case, batch_size: int, repeats: int,
            exact_repeats: int = 0, memory: bool = True, inputs: dict | None = None
            ) -> dict[str, Timing]:
    """Interleaved timings (and one traced-memory pass) of every library on a case.

    ``repeats`` forward + LPGD backward runs and ``exact_repeats`` forward + exact
    backward runs per library, in rounds: each round runs every library once per
    gradient, so slow drifts of the machine hit all of them alike. ``inputs`` maps a
    library's name to its own ``(tensors, weights)`` (default: the case's batch).
    """
    default = case_inputs(case, batch_size)
    inputs = {lib.name: (inputs or {}).get(lib.name, default) for lib in libraries}
    timings = {lib.name: Timing() for lib in libraries}
    # Warm-up on two elements: first-call costs (compiling the conic form for exact
    # gradients, imports, thread pools) stay out of the timings.
    for lib in libraries:
        tensors, weights = inputs[lib.name]
        small = [t[:2] if t.dim() > len(p.shape) else t
                 for t, p in zip(tensors, case.parameters)]
        for gradient in ("lpgd", "exact") if exact_repeats else ("lpgd",):
            lib.run(small, [w[:2] for w in weights], gradient)
    for round_ in range(max(repeats, exact_repeats)):
        gradients = (["lpgd"] if round_ < repeats else []) + (
            ["exact"] if round_ < exact_repeats else [])
        for gradient in gradients:
            for lib in libraries:
                gc.collect()
                forward, backward = lib.run(*inputs[lib.name], gradient)
                timing = timings[lib.name]
                if gradient == "lpgd":
                    timing.forward.append(forward)
                    timing.backward_lpgd.append(backward)
                else:
                    timing.forward_exact.append(forward)
                    timing.backward_exact.append(backward)
    if memory:
        for lib in libraries:
            gc.collect()
            tracemalloc.start()
            lib.run(*inputs[lib.name], "lpgd")
            timings[lib.name].peak_bytes = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return timings


# ---- report ------------------------------------------------------------------------------


def machine_description() -> str:
    """CPU (lscpu), core count (nproc) and versions, as Markdown lines."""
    def command(*args):
        try:
            return subprocess.run(args, capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return ""

    lscpu = {}
    for line in command("lscpu").splitlines():
        key, _, value = line.partition(":")
        lscpu[key.strip()] = value.strip()
    versions = []
    for module in ("cvxlpgd", "cvxpylayers", "cvxpy", "diffcp", "scs", "torch", "numpy",
                   "scipy"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            pass
    cpu = lscpu.get("Model name", platform.processor() or "unknown CPU")
    return "\n".join([
        f"- CPU: {cpu}, {lscpu.get('CPU(s)', '?')} CPUs "
        f"({lscpu.get('Core(s) per socket', '?')} cores per socket, "
        f"{lscpu.get('Thread(s) per core', '?')} threads per core), "
        f"hypervisor: {lscpu.get('Hypervisor vendor', 'none')}",
        f"- nproc: {command('nproc').strip() or '?'}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- {', '.join(versions)}",
        f"- SCS settings (both libraries): {SCS_SETTINGS}",
    ])


def ms(seconds: float) -> str:
    return "n/a" if not np.isfinite(seconds) else f"{seconds * 1e3:.1f}"


def mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if not (np.isfinite(a) and np.isfinite(b)) or b == 0 else f"{a / b:.2f}"


def main_table(rows: list[tuple[Case, int, dict[str, Timing]]]) -> str:
    lines = ["| problem | library | forward ms | LPGD backward ms | forward + LPGD ms | "
             "exact forward ms | exact backward ms | traced peak MiB | "
             "ratio fwd+LPGD (cvxlpgd / cvxpylayers) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case, _, timings in rows:
        base = timings.get("cvxpylayers")
        for name, t in timings.items():
            r = ratio(t.lpgd_total, base.lpgd_total) if name == "cvxlpgd" and base else ""
            lines.append(
                f"| {case.name} | {name} | {ms(t.median('forward'))} | "
                f"{ms(t.median('backward_lpgd'))} | {ms(t.lpgd_total)} | "
                f"{ms(t.median('forward_exact'))} | {ms(t.median('backward_exact'))} | "
                f"{mib(t.peak_bytes)} | {r} |")
    return "\n".join(lines)


def targets(rows, scaling, workers_rows) -> str:
    """The issue's targets with the measured values."""
    out = ["| target | measured | met |", "|---|---:|---|"]

    def add(label, value, limit, at_most=True):
        ok = value <= limit if at_most else value >= limit
        out.append(f"| {label} | {value:.2f} | {'yes' if ok else 'NO'} |")

    for case, _, timings in rows:
        base = timings.get("cvxpylayers")
        ours = timings["cvxlpgd"]
        if case.name.startswith("lasso"):
            add(f"{case.name}: LPGD backward / own forward ≤ 0.5",
                ours.median("backward_lpgd") / ours.median("forward"), 0.5)
            if base:
                add(f"{case.name}: LPGD backward / cvxpylayers exact backward ≤ 0.2",
                    ours.median("backward_lpgd") / base.median("backward_exact"), 0.2)
        elif base:
            limit = 0.5 if case.shared_structure else 0.8
            add(f"{case.name}: fwd+LPGD / cvxpylayers (diffcp lpgd) ≤ {limit}",
                ours.lpgd_total / base.lpgd_total, limit)
    if scaling:
        (small_name, small), (large_name, large) = scaling
        add(f"QP fwd+LPGD: {large_name} / {small_name} ≤ 8.5",
            large.lpgd_total / small.lpgd_total, 8.5)
    if workers_rows:
        name, one, two = workers_rows
        add(f"{name} fwd+LPGD: 1 worker / 2 workers ≥ 1.6",
            one.lpgd_total / two.lpgd_total, 1.6, at_most=False)
    return "\n".join(out)


def effective_cores(seconds: float = 0.5) -> float:
    """Throughput of two busy processes relative to one (≈ 2 on two real cores)."""
    import multiprocessing as mp

    single = _spin(seconds)
    with mp.get_context("spawn").Pool(2) as pool:
        pair = pool.map(_spin, [seconds, seconds])
    return sum(pair) / single


def solver_thread_speedup() -> float:
    """Two identical SCS solves in two threads against one, in throughput (≈ 2 on two
    free cores): what the machine offers the engine's threads, whose solves run
    without the GIL."""
    import threading

    import scipy.sparse as sp
    import scs

    rng = np.random.default_rng(0)
    m, n = 300, 150
    data = {"A": sp.csc_matrix(rng.standard_normal((m, n))), "P": sp.identity(n, format="csc"),
            "b": rng.standard_normal(m) + 5.0, "c": rng.standard_normal(n)}
    # A fixed amount of work: tolerances no solve meets, a fixed iteration count.
    settings = {"verbose": False, "eps_abs": 1e-15, "eps_rel": 1e-15, "max_iters": 2000,
                "adaptive_scale": False, "acceleration_lookback": 0, "linear_solver": "qdldl"}

    def solver():
        return scs.SCS(dict(data), {"l": m}, **settings)

    one = solver()
    tic = time.perf_counter()
    one.solve(warm_start=False)
    single = time.perf_counter() - tic
    pair = [solver(), solver()]
    threads = [threading.Thread(target=s.solve, kwargs={"warm_start": False}) for s in pair]
    tic = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 2 * single / (time.perf_counter() - tic)


def _spin(seconds: float) -> float:
    count, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        count += 1
    return count / seconds


# ---- entry point -------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small problems, one repetition, no memory pass")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed forward + LPGD backward repetitions (default 9, quick 1)")
    parser.add_argument("--exact-repeats", type=int, default=None,
                        help="timed forward + exact backward repetitions (default 3, quick 1)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip cvxpylayers (also skipped when it is not installed)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the benchmarks and print the Markdown report; returns the exit status."""
    args = parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (1 if quick else 9)
    exact_repeats = args.exact_repeats or (1 if quick else 3)
    baseline = not args.no_baseline and available_baseline()
    torch.set_num_threads(1)  # the layers parallelize over the batch themselves

    if quick:
        cases = [problems.assignment_lp(size=4, batch_size=8),
                 problems.dense_qp(n=10, m=20, batch_size=8),
                 problems.optnet_qp(n=5, m=4, batch_size=4),
                 problems.lasso(n=60, m=40, batch_size=1)]
        large_qp = problems.dense_qp(n=10, m=20, batch_size=16)
    else:
        cases = [problems.assignment_lp(), problems.dense_qp(), problems.optnet_qp(),
                 problems.lasso()]
        large_qp = problems.dense_qp(batch_size=512)
    cases.insert(2, large_qp)

    rows = []
    for case in cases:
        print(f"# {case.name} ...", file=sys.stderr, flush=True)
        libraries = [Cvxlpgd(case)] + ([Cvxpylayers(case)] if baseline else [])
        timings = measure(libraries, case, case.batch_size, repeats, exact_repeats,
                          memory=not quick)
        rows.append((case, case.batch_size, timings))

    # Scaling in B: the small QP batch against the same batch tiled to the large size,
    # so that both solve the same problems (a fresh random batch has its own mix of
    # easy and hard elements: ±10% iterations per element between draws).
    small_qp = cases[1]
    tile = large_qp.batch_size // small_qp.batch_size
    print("# scaling in B ...", file=sys.stderr, flush=True)
    small_lib, large_lib = Cvxlpgd(small_qp), Cvxlpgd(small_qp)
    small_lib.name = f"B={small_qp.batch_size}"
    large_lib.name = f"B={small_qp.batch_size * tile} (the B={small_qp.batch_size} batch x{tile})"
    batch_timings = measure([small_lib, large_lib], small_qp, small_qp.batch_size, repeats,
                            memory=False, inputs={large_lib.name: case_inputs(small_qp,
                                                                              tile=tile)})
    small_t, large_t = batch_timings[small_lib.name], batch_timings[large_lib.name]

    print("# workers 1 vs 2 ...", file=sys.stderr, flush=True)
    workers = []
    for count in (1, 2):
        lib = Cvxlpgd(large_qp, workers=count)
        lib.name = f"{large_qp.name}, workers={count}"
        workers.append(lib)
    worker_timings = measure(workers, large_qp, large_qp.batch_size, repeats, memory=False)
    one, two = (worker_timings[w.name] for w in workers)

    def scaling_row(name, t):
        return (f"| {name} | {ms(t.median('forward'))} | {ms(t.median('backward_lpgd'))} | "
                f"{ms(t.lpgd_total)} |")

    if quick:  # the probes take seconds and start processes: not for a smoke run
        throughput = "- parallel throughput probes: skipped (--quick)"
    else:
        throughput = (f"- measured parallel throughput, two busy Python processes: "
                      f"{effective_cores():.2f}x one; two SCS solves in two threads: "
                      f"{solver_thread_speedup():.2f}x one")
    report = [
        "## Machine", "", machine_description(), throughput, "",
        f"## Results (medians of interleaved runs: {repeats} with LPGD, {exact_repeats} "
        "with exact gradients)", "", main_table(rows), "",
        "## Scaling (cvxlpgd)", "",
        "| configuration | forward ms | LPGD backward ms | forward + LPGD ms |",
        "|---|---:|---:|---:|",
        scaling_row(f"{small_qp.name}", small_t),
        scaling_row(f"{small_qp.name}: {large_lib.name}", large_t),
        scaling_row(workers[0].name, one),
        scaling_row(workers[1].name, two), "",
        "## Targets", "",
        targets(rows, ((small_lib.name, small_t), (large_lib.name, large_t)),
                (large_qp.name, one, two)),
    ]
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
