"""Command line: ``python -m cvxlpgd`` (or the ``cvxlpgd`` console script).

Subcommands::

    demo [--steps N]                           train through small layers, LPGD vs exact
    check                                      versions, working solvers, threads/cores
    bench [ARGS...]                            benchmarks.run.main(ARGS)
    experiment {sudoku,markowitz,lp-portfolio,pyepo} [ARGS...]   the experiments

``bench`` and ``experiment`` run code that lives in the source checkout (``benchmarks/``
and ``examples/`` next to the ``cvxlpgd`` package), not in the installed package; they
are imported only when asked for.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

#: ``experiment`` names → module whose ``main(argv)`` runs the experiment.
EXPERIMENTS = {
    "sudoku": "examples.sudoku.train",
    "markowitz": "examples.markowitz.train",
    "lp-portfolio": "examples.lp_portfolio",
    "pyepo": "examples.pyepo_shortest_path.train",
}
#: Module whose ``main(argv)`` runs the benchmarks.
BENCHMARKS = "benchmarks.run"
# Exit status for "the checkout code asked for is not there" (argparse uses 2 as well).
_MISSING = 2


def _checkout_root() -> Path:
    """The directory holding the ``cvxlpgd`` package (the checkout root for ``pip -e``)."""
    return Path(__file__).resolve().parent.parent


def load_checkout_module(name: str):
    """Import ``name`` from the source checkout, adding the checkout root to ``sys.path``.

    Parameters
    ----------
    name : str
        Dotted module name, e.g. ``"benchmarks.run"``.

    Returns
    -------
    module

    Raises
    ------
    ModuleNotFoundError
        When the module (or one of its parent packages) is not in the checkout; the
        message says where it was looked for. A missing dependency *of* the module is
        re-raised unchanged.
    """
    root = str(_checkout_root())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if not _is_the_module(err, name):
            raise
    if root not in sys.path:
        # The benchmarks and examples are not installed with the package: they are
        # importable from the checkout root (what `pip install -e .` leaves in place).
        sys.path.insert(0, root)
        importlib.invalidate_caches()
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            if not _is_the_module(err, name):
                raise
    raise ModuleNotFoundError(
        f"{name} is not available: it is part of the cvxlpgd source checkout, not of the "
        f"installed package, and was looked for as {name.replace('.', '/')}(.py) under "
        f"{root}. Run from a clone of the repository installed with `pip install -e .`.",
        name=name,
    )


def _is_the_module(err: ModuleNotFoundError, name: str) -> bool:
    """True when ``err`` is about ``name`` or one of its parent packages."""
    parts = name.split(".")
    return err.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _run_checkout_main(name: str, argv: list[str]) -> int:
    try:
        module = load_checkout_module(name)
    except ModuleNotFoundError as err:
        if not _is_the_module(err, name):
            raise
        print(f"cvxlpgd: {err}", file=sys.stderr)
        return _MISSING
    main = getattr(module, "main", None)
    if main is None:
        print(f"cvxlpgd: {name} has no main(argv) function", file=sys.stderr)
        return _MISSING
    result = main(argv)
    return result if isinstance(result, int) else 0


# ---- check ------------------------------------------------------------------------------


def _version(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return f"not installed ({err.__class__.__name__})"
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(module_name)
        except Exception:  # noqa: BLE001 - any metadata problem just means "unknown"
            version = "unknown"
    return str(version)


def solver_check(solver: str) -> tuple[bool, str]:
    """Solve a tiny LP with ``solver``: ``minimize x₁ + x₂ s.t. x₁ + x₂ ≥ 1, x ≥ 0``.

    Parameters
    ----------
    solver : str
        A name from :data:`cvxlpgd.SOLVERS`.

    Returns
    -------
    (bool, str)
        Whether the solve returned the optimal value 1, and a short description
        (status, iterations and time, or the error).
    """
    import numpy as np
    import scipy.sparse as sp

    from cvxlpgd.problem.cones import ConeDims
    from cvxlpgd.solvers import solve_cone_program

    # SCS form Ax + s = b, s ≥ 0:  −x₁ − x₂ + s = −1,  −x + s = 0.
    A = sp.csc_matrix(np.array([[-1.0, -1.0], [-1.0, 0.0], [0.0, -1.0]]))
    b = np.array([-1.0, 0.0, 0.0])
    c = np.array([1.0, 1.0])
    tic = time.perf_counter()
    try:
        solution = solve_cone_program(A, b, c, ConeDims(nonneg=3), solver=solver)
    except Exception as err:  # noqa: BLE001 - report any failure, keep checking the others
        return False, f"{type(err).__name__}: {err}"
    elapsed = time.perf_counter() - tic
    ok = solution.ok and abs(float(c @ solution.x) - 1.0) < 1e-4
    return ok, (f"{solution.status}, {solution.iterations} iterations, {1e3 * elapsed:.1f} ms")


def run_check(print_fn=print) -> bool:
    """Print versions, working solvers and parallelism; True when every solver works.

    Parameters
    ----------
    print_fn : callable, default print
        Receives each line.

    Returns
    -------
    bool
        True when every installed solver in :data:`cvxlpgd.SOLVERS` solved the test
        problem (Moreau is optional where it has no wheel; its absence is reported).
    """
    import cvxlpgd
    from cvxlpgd.solvers import SOLVERS, moreau_available
    from cvxlpgd.solvers.moreau_backend import moreau_devices

    print_fn(
        f"cvxlpgd {cvxlpgd.__version__}  (python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()})"
    )
    for name in ("cvxpy", "diffcp", "torch", "numpy", "scipy", "moreau", "scs", "clarabel", "ecos"):
        print_fn(f"  {name:<10} {_version(name)}")
    if moreau_available():
        print_fn(
            f"moreau: installed, devices: {', '.join(moreau_devices())}; "
            "solver='auto' uses it for batches (SCS for one large problem)"
        )
    else:
        print_fn(
            "moreau: not installed; solver='auto' uses SCS (pip install moreau on "
            "Linux x86_64/aarch64 or macOS arm64)"
        )
    print_fn("solvers:")
    all_ok = True
    for solver in SOLVERS:
        if solver == "MOREAU" and not moreau_available():
            print_fn(f"  {solver:<10} {'absent':<7} not installed (optional)")
            continue
        ok, detail = solver_check(solver)
        all_ok &= ok
        print_fn(f"  {solver:<10} {'ok' if ok else 'FAILED':<7} {detail}")
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    print_fn("parallelism:")
    print_fn(
        f"  cores: {os.cpu_count()} (usable by this process: {usable}); a layer "
        f"solves batch elements on {usable} threads unless given workers="
    )
    print_fn(
        f"  torch threads: {torch.get_num_threads()}; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    return all_ok


# ---- entry point ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m cvxlpgd``.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="cvxlpgd",
        description="CVXPY problems as PyTorch layers, differentiated with LPGD or exactly.",
    )
    sub = parser.add_subparsers(dest="command", title="commands")
    sub.required = True
    demo = sub.add_parser(
        "demo", help="train through small layers with LPGD and exact gradients side by side"
    )
    demo.add_argument("--steps", type=int, default=25, help="SGD steps per run (default 25)")
    sub.add_parser("check", help="versions, available solvers, threads and cores")
    bench = sub.add_parser(
        "bench",
        help="run the benchmarks (benchmarks/run.py, source "
        "checkout only); further arguments are passed on",
        add_help=False,
    )
    bench.add_argument("args", nargs=argparse.REMAINDER)
    experiment = sub.add_parser(
        "experiment",
        help="run an experiment of the paper (examples/, "
        "source checkout only); further arguments are passed on",
    )
    experiment.add_argument("name", choices=sorted(EXPERIMENTS))
    experiment.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 when ``check`` found a broken solver, 2 for a
        usage error or a benchmark/experiment module missing from the checkout, or
        whatever the benchmark's or experiment's ``main`` returned.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Everything after `bench` belongs to the benchmark runner, --help included.
        return _run_checkout_main(BENCHMARKS, argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from cvxlpgd.demo import run_demo

        if args.steps < 1:
            print("cvxlpgd: --steps must be at least 1", file=sys.stderr)
            return _MISSING
        run_demo(steps=args.steps)
        return 0
    if args.command == "check":
        return 0 if run_check() else 1
    return _run_checkout_main(EXPERIMENTS[args.name], args.args)


if __name__ == "__main__":
    sys.exit(main())
