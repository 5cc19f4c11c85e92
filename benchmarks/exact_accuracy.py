"""How exact are the exact derivatives? The active set's against Moreau's and diffcp's.

On the test families of ``tests/test_active_set.py`` (three seeds, batches of 64), six
random strictly complementary elements per family and seed: the directional derivative
of ⟨dx, x*⟩ + ⟨dy, y*⟩ along a random direction of all the data (c, b, A, P), from each
backend's data gradient, against the central finite difference of the solution map
(each side solved by CVXPY + Clarabel at 1e-10, step 1e-4; its own error is about 1e-6
relative, the floor of this table). Error: |predicted − FD| / (1 + |FD|). The other
backend is the layer's own exact path for the family: Moreau's derivative of its
interior-point solve at 1e-10 (QPs), diffcp's adjoint (LPs).

    python -m benchmarks.exact_accuracy     # 1–2 minutes; stores results/exact_accuracy.json
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

from benchmarks.results_io import RESULTS, provenance, write_json
from cvxlpgd.engine.batch import BatchEngine
from cvxlpgd.engine.exact_active_set import exact_from_active_set

JSON = RESULTS / "exact_accuracy.json"
SEEDS = (0, 1, 2)
PER_SEED = 6


def measure() -> list[dict]:
    """One row per family and backend: max and median error, elements compared."""
    # The families and the finite differences are the tests' (run from the repo root).
    from tests.test_active_set import setup
    from tests.test_exact_active_set import DETERMINED, directional_errors

    rows = []
    for family in DETERMINED:
        errors: dict[str, list[float]] = {}
        for seed in SEEDS:
            engine, template, state, dx, dy = setup(family, seed)
            ours, ok = exact_from_active_set(
                state.batch, template.structure, state.solution, dx, dy, state.tolerance
            )
            P = template.structure.P_pattern
            other = "moreau" if P is not None and P.nnz else "diffcp"
            reference_engine = BatchEngine("MOREAU")
            reference = reference_engine.forward(template, state.batch, exact_backend=other)
            gradients = {
                "active-set": ours,
                other: reference_engine.backward_exact(reference, dx, dy),
            }
            picked = np.random.default_rng(seed).choice(np.flatnonzero(ok), PER_SEED, replace=False)
            for name, gradient in gradients.items():
                pairs = directional_errors(
                    template, state, gradient, dx, dy, picked, np.random.default_rng(seed + 7)
                )
                errors.setdefault(name, []).extend(abs(p - fd) / (1 + abs(fd)) for p, fd in pairs)
        for name, values in errors.items():
            rows.append(
                {
                    "family": family,
                    "backend": name,
                    "max": float(np.max(values)),
                    "median": float(np.median(values)),
                    "compared": len(values),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    """Markdown table of :func:`measure`'s rows."""
    lines = [
        "| family | derivative | max error | median error | elements |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['family']} | {r['backend']} | {r['max']:.1e} | {r['median']:.1e} | {r['compared']} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Measure, print the table, store the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = measure()
    command = " ".join(["python -m benchmarks.exact_accuracy", *argv])
    record = {**provenance(argv), "command": command, "rows": rows}
    print(table(rows))
    write_json(record, JSON)
    return record


if __name__ == "__main__":
    main()
