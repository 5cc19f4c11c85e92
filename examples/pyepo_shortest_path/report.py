"""Tables and figure of the PyEPO benchmark (``results.csv`` rows → Markdown, PNG).

Descriptive cells are a mean ± sample standard deviation (ddof = 1) over seeds.
Methods are compared pair by pair on the runs they share — the same degree and seed,
hence the same data and initial model — with :func:`examples.paired.paired` (paired
t-test, two-sided, α = 0.05; wins and the sign test shown beside it):
:func:`paired_regret` for the test regret, :func:`time_comparisons` for the training
time. Time is measured twice per epoch: wall-clock seconds, and the process's CPU
seconds (steadier on a shared machine). LPGD's row is the training of the τ that the
validation scan chose, but the scan trained once per τ: the column "CPU s / epoch, all
trainings" adds those trainings up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples import paired
from examples.pyepo_shortest_path.methods import FAMILIES, LABELS, family_of

__all__ = [
    "all_trainings",
    "paired_lines",
    "paired_regret",
    "regret_table",
    "scan_cost",
    "scan_table",
    "stats",
    "time_comparisons",
    "with_derived",
]

ROOT = Path(__file__).resolve().parents[2]

#: Short names for the verdicts.
SHORT = {
    "lpgd": "LPGD",
    "exact": "exact",
    "spo+": "SPO+",
    "dbb": "DBB",
    "dpo": "DPO",
    "pfyl": "PFYL",
    "2s": "two-stage LS",
    "initial": "the initial model",
    "lpgd_scan": "LPGD's τ scan",
    "lpgd-upper": "LPGD upper",
    "lpgd-lower": "LPGD lower",
    "lpgd-rho": "LPGD ρ>0",
    "lpgd-sol": "LPGD on ‖w − w*‖²",
    "lpgd-deg": "LPGD (τ per degree)",
    "pg": "PG",
    "pg-at-lpgd": "PG (σ = LPGD's τ)",
    "nid": "NID",
    "imle": "I-MLE",
    "aimle": "AI-MLE",
    "nce": "NCE",
    "cmap": "CMAP",
    "ltr": "listwise LTR",
    "ltr-pair": "pairwise LTR",
    "ltr-point": "pointwise LTR",
}

#: Table order; ``lpgd-deg`` and ``pg-at-lpgd`` are derived from the scans
#: (:func:`with_derived`), no training of their own.
ORDER = (
    "initial",
    "lpgd",
    "lpgd-deg",
    "lpgd-upper",
    "lpgd-lower",
    "lpgd-rho",
    "lpgd-sol",
    "exact",
    "spo+",
    "dbb",
    "dpo",
    "pfyl",
    "pg",
    "pg-at-lpgd",
    "nid",
    "imle",
    "aimle",
    "nce",
    "cmap",
    "ltr",
    "ltr-pair",
    "ltr-point",
    "2s",
)
DERIVED = ("lpgd-deg", "pg-at-lpgd")


def _short(method: str) -> str:
    if method.endswith("_scan") and method not in SHORT:
        return f"{SHORT[method[:-5]]}, all trainings"
    return SHORT[method]


def with_derived(rows: Sequence[dict]) -> list[dict]:
    """``rows`` and the rows derived from the scans, without training:

    * ``lpgd-deg`` — LPGD with one τ per degree, the τ whose *mean* validation regret
      over the seeds is lowest (the ``lpgd_tau=…`` row of that τ, per seed);
    * ``pg-at-lpgd`` — PG with σ equal to the τ that LPGD's scan chose for the same
      (degree, seed) (the ``pg_sigma=…`` row of that σ).
    """
    rows = [r for r in rows if r["method"] not in DERIVED]
    out = list(rows)
    scan = [r for r in rows if str(r["method"]).startswith("lpgd_tau=")]
    for degree in sorted({int(r["degree"]) for r in scan}):
        here = [r for r in scan if int(r["degree"]) == degree]
        taus = sorted({float(r["tau"]) for r in here})
        best = min(
            taus,
            key=lambda t: np.mean([float(r["val_regret"]) for r in here if float(r["tau"]) == t]),
        )
        out += [{**r, "method": "lpgd-deg"} for r in here if float(r["tau"]) == best]
    pg = {
        (int(r["degree"]), int(r["seed"]), float(r["tau"])): r
        for r in rows
        if str(r["method"]).startswith("pg_sigma=")
    }
    for r in rows:
        key = (int(r["degree"]), int(r["seed"]), float(r["tau"] or "nan"))
        if r["method"] == "lpgd" and key in pg:
            out.append({**pg[key], "method": "pg-at-lpgd"})
    return out


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else np.nan


def stats(rows: Sequence[dict], method: str, degree: int, column: str) -> tuple[float, float, int]:
    """Mean, sample std (ddof = 1) and count of ``column`` over the seeds of one cell."""
    values = [
        float(r[column])
        for r in rows
        if r["method"] == method and int(r["degree"]) == degree and r.get(column, "") != ""
    ]
    values = [v for v in values if np.isfinite(v)]
    return (*_mean_std(values), len(values))


def _pm(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _methods(rows: Sequence[dict]) -> list[str]:
    present = {r["method"] for r in rows}
    return [m for m in ORDER if m in present]


def _degrees(rows: Sequence[dict]) -> list[int]:
    return sorted({int(r["degree"]) for r in rows})


def _all_runs(rows: Sequence[dict], method: str, column: str) -> tuple[float, float]:
    """Mean and sample std of ``column`` over every run (degree and seed) of a method."""
    return _mean_std(
        [float(r[column]) for r in rows if r["method"] == method and r.get(column, "") != ""]
    )


def _per_run(rows: Sequence[dict], method: str, column: str) -> dict:
    """``{(degree, seed): value}`` of one method (``"<method>_scan"``:
    :func:`all_trainings`)."""
    if method.endswith("_scan"):
        return all_trainings(rows, method[:-5], column)
    return paired.final_values(rows, method, column, by=("degree", "seed"))


def scan_cost(
    rows: Sequence[dict], column: str = "cpu_seconds_per_epoch", family: str = "lpgd"
) -> dict:
    """``{(degree, seed): Σ over τ}`` of ``column``: what a scanned method's validation
    scan cost, per epoch, for one reported row (one training per τ; empty without a
    scan)."""
    total: dict = {}
    for row in rows:
        name = str(row["method"])
        if "_" in name and family_of(name) == family and row.get(column, "") != "":
            key = (int(row["degree"]), int(row["seed"]))
            total[key] = total.get(key, 0.0) + float(row[column])
    return total


def all_trainings(rows: Sequence[dict], method: str, column: str = "cpu_seconds_per_epoch") -> dict:
    """``{(degree, seed): value}``: ``column`` summed over every training that one
    reported row of ``method`` needs — a scanned method's whole scan, LPGD's scan for
    ``lpgd-deg``, PG's training plus LPGD's scan for ``pg-at-lpgd`` (its σ is LPGD's
    choice), else the row's own training."""
    if method in FAMILIES:
        return scan_cost(rows, column, method)
    if method == "lpgd-deg":
        return scan_cost(rows, column, "lpgd")
    own = paired.final_values(rows, method, column, by=("degree", "seed"))
    if method == "pg-at-lpgd":
        lpgd = scan_cost(rows, column, "lpgd")
        return {k: v + lpgd[k] for k, v in own.items() if k in lpgd}
    return own


def regret_table(rows: Sequence[dict]) -> str:
    """Methods × degrees: test normalized regret (mean ± sample std over seeds; bold: the
    lowest mean), then wall and CPU seconds per training epoch over all runs, and the CPU
    seconds per epoch of every training the row needs (LPGD: its τ scan)."""
    degrees = _degrees(rows)
    head = [
        "method",
        *[f"deg {d}" for d in degrees],
        "wall s / epoch",
        "CPU s / epoch",
        "CPU s / epoch, all trainings",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in _methods(rows):
        cells = [LABELS[method]]
        best = {d: _best(rows, d) for d in degrees}
        for d in degrees:
            text = _pm(*stats(rows, method, d, "test_regret")[:2])
            cells.append(f"**{text}**" if method == best[d] else text)
        if method in ("initial", "2s"):
            cells += ["—", "—", "—"]
        else:
            cpu = _pm(*_all_runs(rows, method, "cpu_seconds_per_epoch"), 2)
            total = all_trainings(rows, method)
            cells += [
                _pm(*_all_runs(rows, method, "seconds_per_epoch"), 2),
                cpu,
                _pm(*_mean_std(list(total.values())), 2) if total else cpu,
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scan_table(rows: Sequence[dict], families: Sequence[str] = ("lpgd",)) -> str:
    """The τ scans of ``families``: validation and test regret per τ (σ for PG) and
    degree, and how often that τ was chosen."""
    degrees = _degrees(rows)
    head = ["method", "τ / σ", *[f"deg {d}: val / test (chosen)" for d in degrees], "CPU s / epoch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family in families:
        prefix = f"{family}_{FAMILIES[family]}="
        taus = sorted({float(r["tau"]) for r in rows if str(r["method"]).startswith(prefix)})
        lines += [_scan_line(rows, family, f"{prefix}{tau:g}", tau, degrees) for tau in taus]
    return "\n".join(lines) + "\n"


def _scan_line(rows, family, name, tau, degrees) -> str:
    cells = [SHORT[family], f"{tau:g}"]
    for d in degrees:
        chosen = sum(
            1
            for r in rows
            if r["method"] == family and int(r["degree"]) == d and float(r["tau"]) == tau
        )
        seeds = sum(1 for r in rows if r["method"] == name and int(r["degree"]) == d)
        cells.append(
            f"{_pm(*stats(rows, name, d, 'val_regret')[:2])} / "
            f"{_pm(*stats(rows, name, d, 'test_regret')[:2])} ({chosen}/{seeds})"
        )
    cells.append(_pm(*_all_runs(rows, name, "cpu_seconds_per_epoch"), 2))
    return "| " + " | ".join(cells) + " |"


def _best(rows: Sequence[dict], degree: int) -> str | None:
    """The method with the lowest mean test regret at ``degree`` (None without rows)."""
    cells = {m: stats(rows, m, degree, "test_regret")[0] for m in _methods(rows) if m != "initial"}
    cells = {m: mean for m, mean in cells.items() if np.isfinite(mean)}
    return min(cells, key=cells.get) if cells else None


def _compare(
    rows: Sequence[dict], a: str, b: str, column: str, degree: int | None = None
) -> paired.Paired:
    """``a`` against ``b`` on ``column``, paired over seeds at one degree or over every
    (degree, seed) run."""

    def values(method):
        per_run = _per_run(rows, method, column)
        return {k: v for k, v in per_run.items() if degree is None or k[0] == degree}

    return paired.paired(values(a), values(b), a=_short(a), b=_short(b))


def _others(rows: Sequence[dict], method: str = "lpgd") -> list[str]:
    return [
        m
        for m in (*_methods(rows)[1:], "initial")
        if m != method and m in {r["method"] for r in rows}
    ]


def paired_regret(
    rows: Sequence[dict], method: str = "lpgd", others: Sequence[str] | None = None
) -> str:
    """``method`` (LPGD) against every other method on test regret: per degree (pairs:
    the seeds) and over all (degree, seed) runs, as a Markdown table
    (:func:`examples.paired.paired_table`)."""
    comparisons = []
    for other in others if others is not None else _others(rows, method):
        for degree in (*_degrees(rows), None):
            where = "all degrees" if degree is None else f"degree {degree}"
            comparisons.append((where, _compare(rows, method, other, "test_regret", degree)))
    return paired.paired_table(comparisons, what="test regret at")


def paired_lines(
    rows: Sequence[dict], method: str = "lpgd", others: Sequence[str] | None = None
) -> str:
    """One line per method ``method`` is compared with on test regret: the verdict over
    all runs, then per degree (:func:`paired_regret` has LPGD's numbers)."""
    lines = []
    for other in others if others is not None else _others(rows, method):
        overall = _compare(rows, method, other, "test_regret")
        per_degree: dict[str, list[str]] = {}
        for d in _degrees(rows):
            c = _compare(rows, method, other, "test_regret", d)
            per_degree.setdefault(c.winner or "no significant difference", []).append(str(d))
        parts = [
            f"{name if name == 'no significant difference' else name + ' better'} at "
            f"degree{'s' * (len(ds) > 1)} {', '.join(ds)}"
            for name, ds in per_degree.items()
        ]
        verdict = f"**{overall.verdict}**" if overall.winner else overall.verdict
        seeds = len({r["seed"] for r in rows})
        lines.append(
            f"* {_short(method)} vs {_short(other)}: over all {overall.n} runs, "
            f"{verdict}; {_short(method)} lower in {overall.wins_a} of {overall.n}, "
            "paired t p = "
            f"{paired.p_text(overall.p_value)}. Per degree ({seeds} seeds each): "
            + "; ".join(parts)
            + "."
        )
    return "\n".join(lines) + "\n"


def time_comparisons(
    rows: Sequence[dict], methods: Sequence[str] = ("lpgd",), others: Sequence[str] | None = None
) -> str:
    """Seconds per training epoch, each of ``methods`` (the chosen τ's training, and
    every training it needs: :func:`all_trainings`) against each trained PyEPO method
    and the exact gradient, paired over all (degree, seed) runs, in CPU and in wall
    seconds."""
    present = {r["method"] for r in rows}
    if others is None:
        others = ("spo+", "dbb", "dpo", "pfyl", "pg", "nid", "exact")
    others = [m for m in others if m in present or m.removesuffix("_scan") in present]
    comparisons = []
    for column, unit in (
        ("cpu_seconds_per_epoch", "CPU s / epoch"),
        ("seconds_per_epoch", "wall s / epoch"),
    ):
        for a in [x for m in methods for x in (m, f"{m}_scan")]:
            if a.endswith("_scan") and all_trainings(rows, a[:-5], column) == paired.final_values(
                rows, a[:-5], column, by=("degree", "seed")
            ):
                continue
            for other in others:
                if other != a:
                    comparisons.append((unit, _compare(rows, a, other, column)))
    return paired.paired_table(comparisons, what="measure (lower is better)")
