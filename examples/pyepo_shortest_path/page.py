"""The PyEPO blocks of docs/experiments.md, generated from the stored CSVs.

:func:`blocks` returns every PyEPO block by name for :func:`examples.experiments_page.page_blocks`:

* ``pyepo-*`` — the shortest-path run stored in ``pyepo_shortest_path.csv``;
* ``sp-new-*`` — the shortest-path rerun on today's engine with PG, NID, LPGD's
  variants, the exact gradient and the rest of PyEPO's roster (:data:`ROSTER`)
  (``pyepo_shortest_path_variants.csv``). PyEPO's own methods of the stored run (SPO+,
  DBB, DPO, PFYL) and two-stage do not depend on cvxlpgd, so their rows from the stored
  run (same data, initial model and minibatch order per degree and seed) are paired
  with the new rows; their time is not (another run, another machine load). The exact
  rows, the variants at degrees 1 and 4 and the roster come from later runs on the same
  draws (:func:`extend`);
* ``knapsack-*`` — the knapsack run (``pyepo_knapsack.csv``).

Every verdict is :func:`examples.paired.paired` (paired t-test, α = 0.05).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples import experiments_page, paired
from examples.common import read_csv, write_csv
from examples.pyepo_shortest_path import figure, report

__all__ = [
    "ENGINE_FREE",
    "ROSTER",
    "VARIANTS",
    "blocks",
    "extend",
    "replace",
    "glance",
    "knapsack_blocks",
    "main",
    "merged_variant_rows",
    "rerun_check",
    "store",
    "variant_blocks",
]

#: Methods whose rows do not depend on cvxlpgd (PyEPO's, and the closed form).
ENGINE_FREE = ("spo+", "dbb", "dpo", "pfyl", "2s")
#: The rest of PyEPO's roster (I-MLE, AI-MLE, NCE, CMAP, the three LTR losses),
#: compared with LPGD on the same draws.
ROSTER = ("imle", "aimle", "nce", "cmap", "ltr", "ltr-pair", "ltr-point")
#: LPGD's variants, each compared with LPGD (central, regret, ρ = 0, τ per run).
VARIANTS = ("lpgd-deg", "lpgd-upper", "lpgd-lower", "lpgd-rho", "lpgd-sol")


def glance(
    rows: Sequence[dict], name: str, method: str = "lpgd", others: Sequence[str] | None = None
) -> str:
    """One summary bullet: ``method`` against each other method over all runs."""
    overall = [
        report._compare(rows, method, other, "test_regret")
        for other in (others if others is not None else report._others(rows, method))
    ]
    text = "; ".join(paired.brief(f"vs {c.b}", c) for c in overall)
    return (
        f"* **{name}**, {report._short(method)}'s test regret over the {overall[0].n} "
        f"(degree, seed) runs: {text}."
    )


def _stored(img: Path) -> list[dict]:
    return read_csv(img / "pyepo_shortest_path.csv")


def merged_variant_rows(img: Path) -> list[dict]:
    """The rerun's rows (with the derived ``lpgd-deg``, ``pg-at-lpgd``) and the stored
    run's engine-free rows on the same (degree, seed) draws."""
    new = read_csv(img / "pyepo_shortest_path_variants.csv")
    keys = {(int(r["degree"]), int(r["seed"])) for r in new}
    old = [
        r
        for r in _stored(img)
        if r["method"] in ENGINE_FREE and (int(r["degree"]), int(r["seed"])) in keys
    ]
    return report.with_derived(new) + old


def rerun_check(img: Path) -> str:
    """Today's LPGD against the stored run's LPGD on the same draws: a sentence."""
    new = {
        k: v
        for k, v in paired.final_values(
            read_csv(img / "pyepo_shortest_path_variants.csv"),
            "lpgd",
            "test_regret",
            by=("degree", "seed"),
        ).items()
    }
    old = paired.final_values(_stored(img), "lpgd", "test_regret", by=("degree", "seed"))
    shared = sorted(set(new) & set(old))
    diffs = np.array([new[k] - old[k] for k in shared])
    same_tau = sum(
        1
        for r in read_csv(img / "pyepo_shortest_path_variants.csv")
        if r["method"] == "lpgd"
        for o in _stored(img)
        if o["method"] == "lpgd"
        and (o["degree"], o["seed"]) == (r["degree"], r["seed"])
        and float(o["tau"]) == float(r["tau"])
    )
    c = paired.paired(new, old, a="LPGD today", b="LPGD stored")
    return (
        f"Today's LPGD against the stored run's on the same {len(shared)} (degree, seed) "
        f"draws: the same τ chosen in {same_tau} of {len(shared)}; test regret differs by "
        f"{paired.number_text(float(np.mean(diffs)))} on average (largest |difference| "
        f"{paired.number_text(float(np.max(np.abs(diffs))))}); {c.verdict}, paired t p = "
        f"{paired.p_text(c.p_value)}.\n"
    )


def variant_blocks(img: Path) -> dict[str, str]:
    """The ``sp-new-*`` blocks."""
    rows = merged_variant_rows(img)
    present = {r["method"] for r in rows}
    variants = [m for m in VARIANTS if m in present]
    rival = [
        m
        for m in ("pg", "pg-at-lpgd", "nid", "spo+", "pfyl", "dbb", "dpo", "exact", "2s")
        if m in present
    ]
    roster = [m for m in ROSTER if m in present]
    lines = report.paired_lines(rows, "lpgd", rival)
    vs_lpgd = "".join(report.paired_lines(rows, v, ["lpgd"]) for v in variants)
    vs_best = "".join(report.paired_lines(rows, v, ["spo+", "pfyl"]) for v in variants)
    families = [f for f in report.FAMILIES if f in present]
    pg_table = report.paired_regret(rows, "pg-at-lpgd", ["lpgd"]) if "pg-at-lpgd" in present else ""
    return {
        "sp-new-regret": report.regret_table(rows),
        "sp-new-lines": lines + "\n" + rerun_check(img),
        "sp-new-pg": pg_table,
        "sp-new-exact": report.paired_lines(rows, "exact", ["initial"])
        if "exact" in present
        else "",
        "sp-new-variants": vs_lpgd + "\nAgainst the best PyEPO methods:\n\n" + vs_best,
        "sp-new-time": report.time_comparisons(rows, ("lpgd",), ("pg", "pg_scan", "nid")),
        "sp-roster-lines": report.paired_lines(rows, "lpgd", roster) if roster else "",
        "sp-roster-best": report.paired_lines(rows, "pfyl", roster) if roster else "",
        "sp-roster-time": report.time_comparisons(rows, ("lpgd",), roster) if roster else "",
        "sp-new-scan": report.scan_table(rows, families),
        "glance-sp-new": glance(
            rows, "PyEPO shortest path, today's engine", "lpgd", rival[:3] + roster + rival[3:]
        )
        + "\n"
        + _variant_glance(rows, variants, "PyEPO shortest path", ("spo+", "pfyl")),
    }


def _standing(rows: Sequence[dict], method: str, others: Sequence[str]) -> str:
    """One generated sentence: ``method`` beats, ties and loses to whom over all runs."""
    comparisons = [report._compare(rows, method, other, "test_regret") for other in others]
    return (
        f"Over the {comparisons[0].n} (degree, seed) draws (paired t, α = 0.05), "
        f"{report._short(method)} {paired.standing(comparisons)}.\n"
    )


def _variant_glance(
    rows: Sequence[dict], variants: Sequence[str], task: str, best: Sequence[str]
) -> str:
    """One bullet: each LPGD variant against LPGD and the ``best`` methods over its runs."""
    parts = []
    for v in variants:
        cs = [report._compare(rows, v, other, "test_regret") for other in ("lpgd", *best)]
        parts.append(f"{report._short(v)} " + ", ".join(paired.brief(f"vs {c.b}", c) for c in cs))
    return (
        f"* **{task}, LPGD's variants** (test regret; k/n: the variant "
        "lower in k of its n runs; τ per degree is derived from LPGD's scan, "
        f"{_trained_degrees(rows, variants)}): " + "; ".join(parts) + "."
    )


def _trained_degrees(rows: Sequence[dict], variants: Sequence[str]) -> str:
    """Where the trained variants ran: at LPGD's degrees, or at which of them."""
    trained = [v for v in variants if v not in report.DERIVED]
    degrees = sorted({int(r["degree"]) for r in rows if r["method"] in trained})
    every = sorted({int(r["degree"]) for r in rows if r["method"] == "lpgd"})
    named = ", ".join(map(str, degrees[:-1])) + f" and {degrees[-1]}" if degrees else "none"
    if degrees == every:
        return f"the trained variants ran at every degree ({named})"
    return f"the trained variants ran at degrees {named} only"


def knapsack_blocks(img: Path) -> dict[str, str]:
    """The ``knapsack-*`` blocks."""
    rows = report.with_derived(read_csv(img / "pyepo_knapsack.csv"))
    present = {r["method"] for r in rows}
    families = [f for f in report.FAMILIES if f in present]
    variants = [m for m in VARIANTS if m in present]
    roster = [m for m in ROSTER if m in present]
    others = [
        m
        for m in ("pg", "pg-at-lpgd", "nid", "spo+", "dbb", "dpo", "pfyl", "exact", "2s", "initial")
        if m in present
    ]
    best = [m for m in ("spo+", "pfyl") if m in present]
    out = {
        "knapsack-regret": report.regret_table(rows),
        "knapsack-lines": report.paired_lines(rows, "lpgd", others),
        "knapsack-paired": report.paired_regret(rows, "lpgd", others),
        "knapsack-time": report.time_comparisons(
            rows, ("lpgd",), ("spo+", "dbb", "dpo", "pfyl", "pg", "pg_scan", "nid", "exact")
        ),
        "knapsack-scan": report.scan_table(rows, families),
        "glance-knapsack": glance(rows, "PyEPO knapsack", "lpgd", others[:3] + roster + others[3:])
        + "\n"
        + _variant_glance(rows, variants, "PyEPO knapsack", best),
        "knapsack-variants": "".join(report.paired_lines(rows, v, ["lpgd"]) for v in variants)
        + "\nAgainst the best PyEPO methods:\n\n"
        + "".join(report.paired_lines(rows, v, best) for v in variants),
    }
    out["knapsack-verdict"] = _standing(rows, "lpgd", [*others[:3], *roster, *others[3:-1]])
    out["knapsack-roster-lines"] = report.paired_lines(rows, "lpgd", roster) if roster else ""
    out["knapsack-roster-best"] = "".join(report.paired_lines(rows, m, roster) for m in best)
    out["knapsack-roster-time"] = report.time_comparisons(rows, ("lpgd",), roster) if roster else ""
    return out


def blocks(img: Path) -> dict[str, str]:
    """Every PyEPO block of the page, by name."""
    rows = _stored(img)
    out = {
        "pyepo-regret": report.regret_table(rows),
        "pyepo-paired-lines": report.paired_lines(rows),
        "pyepo-exact": report.paired_lines(rows, "exact", ["initial"]),
        "pyepo-paired": report.paired_regret(rows),
        "pyepo-time": report.time_comparisons(rows),
        "pyepo-scan": report.scan_table(rows),
        "glance-pyepo": glance(rows, "PyEPO shortest path"),
    }
    if (img / "pyepo_shortest_path_variants.csv").exists():
        out.update(variant_blocks(img))
    if (img / "pyepo_knapsack.csv").exists():
        out.update(knapsack_blocks(img))
    return out


def store(runs: Sequence[Path], name: str, title: str, img: Path | None = None) -> dict:
    """Keep the rows of one or more runs as ``docs/img/<name>.csv``, with a sidecar
    ``<name>.json`` (each run's command, commit, options and CPU seconds, from its
    ``results.json``) and the figure ``<name>.png`` redrawn from the stored rows.

    Runs must not overlap in (degree, seed, method).
    """
    img = Path(img) if img is not None else experiments_page.ROOT / "docs" / "img"
    rows, sidecars, seen = [], [], set()
    for run in map(Path, runs):
        for row in read_csv(run / "results.csv"):
            key = (row["degree"], row["seed"], row["method"])
            if key in seen:
                raise ValueError(f"{run}: {key} is already in another run")
            seen.add(key)
            rows.append(row)
        sidecars.append(json.loads((run / "results.json").read_text()))
    csv_path = write_csv(rows, img / f"{name}.csv")
    (img / f"{name}.json").write_text(
        json.dumps({"csv": f"{name}.csv", "runs": sidecars}, indent=1, ensure_ascii=False) + "\n"
    )
    png = figure.plot(report.with_derived(rows), img / f"{name}.png", title=title)
    return {"csv": csv_path, "png": png}


def replace(runs: Sequence[Path], name: str, title: str, img: Path | None = None) -> dict:
    """Rerun methods on the stored draws: as :func:`extend`, after dropping the stored
    rows of the methods the runs hold on the (degree, seed) pairs they cover; each older
    sidecar entry that ran one of those methods notes the replacement and the new runs'
    commands. Nothing is written unless every run is on the stored draws."""
    img = Path(img) if img is not None else experiments_page.ROOT / "docs" / "img"
    new = {
        (r["degree"], r["seed"], r["method"])
        for run in map(Path, runs)
        for r in read_csv(run / "results.csv")
        if r["method"] != "initial"
    }
    rows = [
        r for r in read_csv(img / f"{name}.csv") if (r["degree"], r["seed"], r["method"]) not in new
    ]
    sidecar = json.loads((img / f"{name}.json").read_text())
    commands = [json.loads((Path(run) / "results.json").read_text())["command"] for run in runs]
    methods = sorted({method for _, _, method in new})
    for entry in sidecar["runs"]:
        if set(methods) & set(entry.get("options", {}).get("methods", [])):
            entry.setdefault("replaced", []).append({"methods": methods, "by": commands})
    return _write(*_merged(rows, sidecar, runs), name, title, img)


def extend(runs: Sequence[Path], name: str, title: str, img: Path | None = None) -> dict:
    """Add the rows of more runs to a stored ``docs/img/<name>.csv`` (their sidecars to
    ``<name>.json``) and redraw ``<name>.png``; the stored rows and sidecars are kept as
    they are.

    A new run must be on the same draws as the stored rows: its ``initial`` rows (the
    initial model's regrets, which depend only on the data and the seed) must equal the
    stored ones for every (degree, seed) it covers, and are then dropped. Other rows
    must not overlap the stored ones in (degree, seed, method). Nothing is written
    unless every run passes.
    """
    img = Path(img) if img is not None else experiments_page.ROOT / "docs" / "img"
    rows = read_csv(img / f"{name}.csv")
    sidecar = json.loads((img / f"{name}.json").read_text())
    return _write(*_merged(rows, sidecar, runs), name, title, img)


def _merged(rows: list[dict], sidecar: dict, runs: Sequence[Path]) -> tuple[list, dict]:
    """The stored rows and sidecar with the runs' rows and sidecars added (checked as
    :func:`extend` says; raises before anything is written)."""
    initial = {(r["degree"], r["seed"]): r for r in rows if r["method"] == "initial"}
    seen = {(r["degree"], r["seed"], r["method"]) for r in rows}
    for run in map(Path, runs):
        for row in read_csv(run / "results.csv"):
            key = (row["degree"], row["seed"])
            if row["method"] == "initial":
                stored = initial.get(key)
                if stored is None or any(
                    not np.isclose(row[c], stored[c], rtol=1e-9, atol=0.0)
                    for c in ("test_regret", "val_regret")
                ):
                    raise ValueError(f"{run}: {key} is not on the stored draw")
                continue
            if (*key, row["method"]) in seen:
                raise ValueError(f"{run}: {(*key, row['method'])} is already stored")
            seen.add((*key, row["method"]))
            rows.append(row)
        sidecar["runs"].append(json.loads((run / "results.json").read_text()))
    return rows, sidecar


def _write(rows: list[dict], sidecar: dict, name: str, title: str, img: Path) -> dict:
    csv_path = write_csv(rows, img / f"{name}.csv")
    (img / f"{name}.json").write_text(json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n")
    png = figure.plot(report.with_derived(rows), img / f"{name}.png", title=title)
    return {"csv": csv_path, "png": png}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m examples.pyepo_shortest_path.page NAME TITLE RUN_DIR...``: store runs."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m examples.pyepo_shortest_path.page", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument("name", help="e.g. pyepo_knapsack (docs/img/NAME.csv, .json, .png)")
    parser.add_argument("title", help="figure title")
    parser.add_argument("runs", nargs="+", type=Path, help="output folders of the runs")
    parser.add_argument(
        "--extend",
        action="store_true",
        help="add the runs to the stored NAME.csv/.json (same draws: their initial rows "
        "must equal the stored ones) instead of replacing them",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="like --extend, but first drop the stored rows of the runs' methods on the "
        "draws they cover (a rerun of those methods on today's engine)",
    )
    args = parser.parse_args(argv)
    action = replace if args.replace else extend if args.extend else store
    print(action(args.runs, args.name, args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
