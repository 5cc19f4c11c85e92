"""Scaling study: time per batch element against the batch size B and the problem size n.

``python -m benchmarks.run --scaling`` runs it (``--quick`` for a smoke run), stores
``benchmarks/results/scaling.json`` and draws ``docs/img/benchmark_scaling.png``:

* **against B** (1 … 4096): the QP ``½‖Fx‖² + ½‖x‖² + qᵀx``, ``Gx ≤ h`` of
  :func:`benchmarks.problems.dense_qp` at n = 20, m = 40 (q, h batched);
* **against n** (10 … 2000): the sparse QP family of
  :func:`benchmarks.problems.sparse_qp` (tridiagonal P, m = n/2 sparse rows and a box)
  at B = 8.

Layers: cvxlpgd's default (LPGD), cvxlpgd exact, cvxpylayers + Moreau. Each point is
the median of a few interleaved forward + backward calls after a warm-up call; every
point records its deviation from CVXPY + Clarabel on its first elements.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import problems
from benchmarks.libraries import Cvxlpgd, CvxpylayersMoreau, Library
from benchmarks.measure import measure
from benchmarks.report import WRONG, total

BATCH_SIZES = (1, 4, 16, 64, 256, 1024, 4096)
SIZES = (10, 30, 100, 300, 1000, 2000)
#: Batch size of the sweep over n.
SIZE_BATCH = 8
QUICK_BATCH_SIZES = (1, 8)
QUICK_SIZES = (10, 20)
#: Elements per point compared with the reference solve.
CHECKED = 4


def _point(record_rows: list, key: str, value: int, case, repeats: int, baseline: bool) -> None:
    libraries: list[Library] = [Cvxlpgd(case), Cvxlpgd(case, gradient="exact")]
    if baseline:
        libraries.append(CvxpylayersMoreau(case))
    print(f"# {case.name} ...", file=sys.stderr, flush=True)
    # Deviations from the first CHECKED elements only: a reference solve per element of a
    # batch of 4096 would take longer than the sweep.
    result = measure(libraries, case, repeats, memory=False, checked=CHECKED)
    for row in result["rows"]:
        record_rows.append({key: value, "batch_size": case.batch_size, **row})


def run(
    provenance: dict, quick: bool = False, repeats: int | None = None, baseline: bool = True
) -> dict:
    """Both sweeps; returns the JSON record."""
    repeats = repeats or (1 if quick else 3)
    batch_problem = "QP n=20 m=40" if not quick else "QP n=5 m=10"
    size_problem = f"sparse QP, B={SIZE_BATCH}" if not quick else "sparse QP, B=2"
    record = {
        **provenance,
        "kind": "scaling",
        "quick": quick,
        "repeats": repeats,
        "batch_problem": batch_problem,
        "size_problem": size_problem,
        "batch": [],
        "size": [],
    }
    for batch_size in QUICK_BATCH_SIZES if quick else BATCH_SIZES:
        case = (
            problems.dense_qp(n=5, m=10, batch_size=batch_size)
            if quick
            else problems.dense_qp(n=20, m=40, batch_size=batch_size)
        )
        _point(record["batch"], "batch_size", batch_size, case, repeats, baseline)
    for n in QUICK_SIZES if quick else SIZES:
        case = problems.sparse_qp(n, batch_size=2 if quick else SIZE_BATCH)
        _point(record["size"], "n", n, case, repeats, baseline)
    return record


def figure(record: dict, path: Path) -> None:
    """Log-log figure: µs per element against B (left) and n (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    styles = {
        "cvxlpgd": ("C0", "o", "-"),
        "cvxlpgd exact": ("C0", "s", "--"),
        "cvxpylayers + Moreau": ("C3", "^", "-"),
    }
    for ax, sweep, key, xlabel, title in (
        (axes[0], "batch", "batch_size", "batch size B", record["batch_problem"]),
        (axes[1], "size", "n", "variables n", record["size_problem"]),
    ):
        names = list(dict.fromkeys(p["library"] for p in record[sweep]))
        for name in names:
            points = sorted(
                (p for p in record[sweep] if p["library"] == name), key=lambda p: p[key]
            )
            color, marker, line = styles.get(name, ("C7", "x", ":"))
            xs = [p[key] for p in points]
            ys = [total(p) / p["batch_size"] * 1e6 for p in points]
            ax.plot(xs, ys, color=color, marker=marker, linestyle=line, label=name)
            wrong = [(x, y) for x, y, p in zip(xs, ys, points) if p["deviation"] > WRONG]
            if wrong:
                ax.scatter(
                    *zip(*wrong),
                    s=160,
                    facecolors="none",
                    edgecolors="k",
                    label=f"{name}: answers off by > {WRONG:g}",
                    zorder=3,
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("µs per element, forward + backward")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
