"""Where the benchmarks keep their raw output, and what every run records with it.

Paths of the stored JSON (:data:`TABLE_JSON`, :data:`SCALING_JSON`, …), a run's
provenance (command, commit, date, machine) and reading / writing the JSON. The other
benchmark modules import from here; this module imports none of them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

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


def load(path: Path) -> dict | None:
    """The JSON stored at ``path``, or None where there is none."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
