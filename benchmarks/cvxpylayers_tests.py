"""Run cvxpylayers' own PyTorch tests against cvxlpgd, with only the import changed.

The script copies cvxpylayers' PyTorch test files from a cvxpylayers source tree into a
temporary folder, points ``from cvxpylayers.torch import CvxpyLayer`` at a shim whose
``CvxpyLayer`` is :class:`cvxlpgd.CvxpyLayer` with the mode's gradient options injected
(every argument the tests pass, ``solver="MOREAU"`` included, is kept), runs pytest on the
copies once per mode and prints, per mode and file, how many tests were collected, passed,
failed, errored and skipped, then every failing test id with the first line of its error and
the tests that fail under cvxlpgd but pass under cvxpylayers.

Modes
-----
``cvxpylayers``
    The files as they are (the reference count).
``exact``
    ``gradient="exact"``, every other cvxlpgd default.
``lpgd``
    ``gradient="lpgd", tau=1e-5``.

In every mode, also the reference, JAX/MLX imports are made to skip the test that uses them
rather than the whole module when JAX is not installed (``test_moreau.py`` asks for JAX at
module level). Raw pytest output and the junit xml go to
``benchmarks/results/cvxpylayers_tests_<mode>.{txt,xml}``. Nothing is downloaded.

Run it as::

    python benchmarks/cvxpylayers_tests.py --checkout /tmp/cvxpylayers-src \\
        --mode cvxpylayers exact lpgd                 # the PyTorch files
    python benchmarks/cvxpylayers_tests.py --checkout /tmp/cvxpylayers-src \\
        --front jax --mode cvxpylayers exact lpgd     # test_jax.py, test_dual_variables_jax.py
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

#: Per front end: the test files, and the module the layer is imported from there.
FRONTS = {
    "torch": (
        (
            "test_torch.py",
            "test_dual_variables.py",
            "test_readme_examples.py",
            "test_moreau.py",
            "test_moreau_dual_variables.py",
        ),
        "cvxlpgd",
    ),
    "jax": (("test_jax.py", "test_dual_variables_jax.py"), "cvxlpgd.jax"),
}
MODES = {
    "cvxpylayers": None,
    "exact": {"gradient": "exact"},
    "lpgd": {"gradient": "lpgd", "tau": 1e-5},
}
RESULTS = Path(__file__).resolve().parent / "results"

SHIM = '''"""cvxlpgd's CvxpyLayer with the gradient options of this run injected."""
import {module} as front

OPTIONS = {options!r}


class CvxpyLayer(front.CvxpyLayer):
    def __init__(self, problem, parameters, variables, *args, **kwargs):
        super().__init__(problem, parameters, variables, *args, **{{**OPTIONS, **kwargs}})
'''
LAZY = '''"""A module stand-in that skips the test touching it when the module is missing."""
import importlib

import pytest


class Lazy:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith(("_", "pytest")):  # pytest probes module members while collecting
            raise AttributeError(attr)
        try:
            module = importlib.import_module(self._name)
        except ImportError:
            pytest.skip(f"{self._name} is not installed")
        return getattr(module, attr)
'''
REWRITES = (  # (pattern, replacement, applies in cvxpylayers mode too)
    (
        r"^(\s*)from cvxpylayers\.(?:torch|jax) import CvxpyLayer\b",
        r"\1from _cvxlpgd_shim import CvxpyLayer",
        False,
    ),
    (
        r'^(\w+) = pytest\.importorskip\("((?:jax|mlx)[\w.]*)"\)',
        r'\1 = __import__("_lazy").Lazy("\2")',
        True,
    ),
    (
        r"^(\s+)from (cvxpylayers\.(?:jax|mlx)) import (\w+) as (\w+)",
        r'\1\4 = pytest.importorskip("\2").\3',
        True,
    ),
    (
        r"^(\s+)from (cvxpylayers\.(?:jax|mlx)) import (\w+)\s*$",
        r'\1\3 = pytest.importorskip("\2").\3',
        True,
    ),
)


def locate(checkout: Path, names: tuple[str, ...]) -> list[Path]:
    """The test files in the checkout, preferring those under a ``tests`` folder."""
    found = []
    for name in names:
        hits = sorted(checkout.rglob(name), key=lambda p: ("tests" not in p.parts, len(p.parts)))
        if not hits:
            sys.exit(f"{name} not found under {checkout}")
        found.append(hits[0])
    return found


def prepare(files: list[Path], mode: str, folder: Path, module: str) -> None:
    """Write the rewritten copies, the shim and a pytest.ini into ``folder``."""
    for path in files:
        text = path.read_text()
        for pattern, replacement, always in REWRITES:
            if always or MODES[mode] is not None:
                text = re.sub(pattern, replacement, text, flags=re.M)
        (folder / path.name).write_text(text)
    (folder / "_cvxlpgd_shim.py").write_text(SHIM.format(options=MODES[mode], module=module))
    (folder / "_lazy.py").write_text(LAZY)
    (folder / "pytest.ini").write_text("[pytest]\n")


def result_stem(front: str, mode: str) -> str:
    """``cvxpylayers_tests_<mode>`` (torch) or ``cvxpylayers_tests_jax_<mode>``."""
    return f"cvxpylayers_tests_{'' if front == 'torch' else front + '_'}{mode}"


def run(files: list[Path], mode: str, timeout: float, front: str = "torch") -> Path:
    """Run pytest on the rewritten copies; return the junit xml's path."""
    RESULTS.mkdir(exist_ok=True)
    xml, txt = (RESULTS / f"{result_stem(front, mode)}.{ext}" for ext in ("xml", "txt"))
    with tempfile.TemporaryDirectory(prefix=f"{result_stem(front, mode)}_") as tmp:
        prepare(files, mode, Path(tmp), FRONTS[front][1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, os.environ.get("PYTHONPATH", "")])}
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfE",
            f"--junitxml={xml}",
            "-o",
            "junit_family=xunit1",
            *(p.name for p in files),
        ]
        print(f"[{mode}] {' '.join(cmd)}  (cwd {tmp})", flush=True)
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
            )
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = f"TIMEOUT after {timeout}s\n{exc.stdout or ''}"
    txt.write_text(out)
    return xml


def parse(xml: Path) -> tuple[dict[str, list[int]], dict[str, str], set[str]]:
    """Counts per file, first error line per failing test id, and the passing test ids."""
    counts: dict[str, list[int]] = {}
    failing, passing = {}, set()
    for case in ET.parse(xml).iter("testcase"):
        module = case.get("classname", "").split(".")[0] or case.get("name", "")
        parts = case.get("classname", "").split(".")[1:] + [case.get("name", "")]
        test_id = f"{module}.py::" + "::".join(parts)
        row = counts.setdefault(f"{module}.py", [0, 0, 0, 0, 0])
        row[0] += 1
        outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            row[1] += 1
            passing.add(test_id)
        elif outcome.tag == "skipped":
            row[4] += 1
        else:
            row[2 if outcome.tag == "failure" else 3] += 1
            lines = (outcome.get("message") or outcome.text or "").strip().splitlines()
            failing[test_id] = lines[0][:160] if lines else ""
    return counts, failing, passing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkout",
        type=Path,
        required=True,
        help="a cvxpylayers source tree (e.g. a work tree of its git repository)",
    )
    parser.add_argument("--mode", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument(
        "--front",
        choices=list(FRONTS),
        default="torch",
        help="which layer's tests: cvxpylayers' PyTorch or JAX files",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pytest run")
    args = parser.parse_args()
    files = locate(args.checkout.resolve(), FRONTS[args.front][0])
    results = {mode: parse(run(files, mode, args.timeout, args.front)) for mode in args.mode}
    print(
        f"\n{'mode':<12} {'file':<32} {'collected':>9} {'passed':>7} {'failed':>7} "
        f"{'errors':>7} {'skipped':>8}"
    )
    for mode, (counts, _, _) in results.items():
        total = [sum(col) for col in zip(*counts.values())] or [0] * 5
        for name, row in [*counts.items(), ("total", total)]:
            print(
                f"{mode:<12} {name:<32} "
                + " ".join(f"{n:>{w}}" for n, w in zip(row, (9, 7, 7, 7, 8)))
            )
    stored = RESULTS / f"{result_stem(args.front, 'cvxpylayers')}.xml"
    reference = results.get("cvxpylayers") or (parse(stored) if stored.exists() else None)
    for mode, (_, failing, _) in results.items():
        print(f"\n[{mode}] failing tests ({len(failing)}):")
        for test_id, line in failing.items():
            new = reference is not None and mode != "cvxpylayers" and test_id in reference[2]
            print(f"  {'NEW ' if new else ''}{test_id}: {line}")
    if reference is not None:
        print("\nNEW: passes in cvxpylayers mode, fails here.")


if __name__ == "__main__":
    main()
