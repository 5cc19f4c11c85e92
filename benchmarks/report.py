"""The benchmark's tables, rendered from a run's stored JSON (:mod:`benchmarks.run`).

The same functions print a run's report and write docs/benchmarks.md's tables, so the
page shows what the stored file holds: ``python -m benchmarks.run --page`` replaces
every block between

    <!-- generated: NAME (python -m benchmarks.run --page) -->
    ...
    <!-- end generated: NAME -->

with :func:`benchmarks.page.page_sections`' block of that name (:mod:`benchmarks.page`;
tests/test_benchmarks.py checks that the page and the stored JSON agree).
"""

from __future__ import annotations

import statistics

#: A deviation from the reference above this marks a library's answers as wrong.
WRONG = 1e-4
#: The answers' target: every cvxlpgd row within this of CVXPY + Clarabel.
ANSWERS = 1e-5
#: Targets of issue 16 on forward + backward against cvxpylayers + Moreau, by family.
RATIO_TARGETS = {"optnet": 0.5, "assignment": 0.6, "qp": 0.25}
#: LPGD backward over its own forward on the lasso.
LASSO_BACKWARD_TARGET = 0.5
#: cvxlpgd exact over cvxpylayers + Moreau (exact), every problem.
EXACT_TARGET = 1.0
REFERENCE = "cvxpylayers + Moreau"


# ---- numbers ----------------------------------------------------------------------------


def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def total(row: dict) -> float:
    """Median forward + median backward, seconds."""
    return median(row["forward_s"]) + median(row["backward_s"])


def ms(seconds: float) -> str:
    value = seconds * 1e3
    if value != value:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def us(seconds: float) -> str:
    value = seconds * 1e6
    return "n/a" if value != value else f"{value:,.0f}".replace(",", " ")


def label(row: dict) -> str:
    return f"{row['library']} ({row['solver']})" if row.get("solver") else row["library"]


def _rows(case: dict) -> dict[str, dict]:
    return {row["library"]: row for row in case["rows"]}


# ---- the table's sections ---------------------------------------------------------------


def machine_section(record: dict) -> str:
    m = record["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = m.get("load_average")
    after = m.get("load_average_after")
    loads = (
        ""
        if load is None
        else (
            f"; load average {load[0]:.2f} at the start"
            + ("" if after is None else f", {after[0]:.2f} at the end")
        )
    )
    dirty = " (with uncommitted changes)" if record.get("dirty") else ""
    repeats = record.get("repeats")
    rounds = "" if repeats is None else f", medians of {repeats} interleaved rounds"
    return "\n".join(
        [
            f"- `{record['command']}` at commit `{record['commit'][:10]}`{dirty}, "
            f"{record['date']}{rounds}",
            f"- CPU: {m['cpu']}, {m['cpus']} CPUs{loads}; torch threads {m['torch_threads']}",
            f"- Python {m['python']} on {m['system']}; {versions}",
        ]
    )


def results_table(record: dict) -> str:
    """Every case and layer: medians, deviation, traced peak, ratio to the reference."""
    lines = [
        "| problem | library (solver) | forward ms | backward ms | total ms | "
        "max deviation | traced peak MiB | total / reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in record["cases"]:
        rows = _rows(case)
        base = rows.get(REFERENCE)
        for row in case["rows"]:
            ratio = "" if base is None or row is base else f"{total(row) / total(base):.2f}"
            wrong = " **(wrong)**" if row["deviation"] > WRONG else ""
            peak = "" if row.get("peak_bytes") is None else f"{row['peak_bytes'] / 2**20:.1f}"
            lines.append(
                f"| {case['name']} | {label(row)} | {ms(median(row['forward_s']))} | "
                f"{ms(median(row['backward_s']))} | {ms(total(row))} | "
                f"{row['deviation']:.1e}{wrong} | {peak} | {ratio} |"
            )
    return "\n".join(lines)


def ratio_table(record: dict) -> str:
    """Forward + backward over cvxpylayers + Moreau's, per problem and layer."""
    names: list[str] = []
    for case in record["cases"]:
        names += [
            r["library"]
            for r in case["rows"]
            if r["library"] != REFERENCE and r["library"] not in names
        ]
    lines = ["| problem | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for case in record["cases"]:
        rows = _rows(case)
        base = rows.get(REFERENCE)
        cells = []
        for name in names:
            row = rows.get(name)
            cells.append("" if row is None or base is None else f"{total(row) / total(base):.2f}")
        lines.append(f"| {case['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_rows(record: dict) -> list[tuple[str, float, float]]:
    """(target, measured, limit) of issue 16's targets present in the record."""
    out = []
    for case in record["cases"]:
        rows = _rows(case)
        ours, base = rows.get("cvxlpgd"), rows.get(REFERENCE)
        family = case.get("family", "")
        if ours is not None and base is not None and family in RATIO_TARGETS:
            out.append(
                (
                    f"{case['name']}: cvxlpgd (LPGD) / cvxpylayers + Moreau",
                    total(ours) / total(base),
                    RATIO_TARGETS[family],
                )
            )
        if ours is not None and family == "lasso":
            out.append(
                (
                    f"{case['name']}: LPGD backward / its own forward",
                    median(ours["backward_s"]) / median(ours["forward_s"]),
                    LASSO_BACKWARD_TARGET,
                )
            )
        exact = rows.get("cvxlpgd exact")
        if exact is not None and base is not None:
            out.append(
                (
                    f"{case['name']}: cvxlpgd exact / cvxpylayers + Moreau",
                    total(exact) / total(base),
                    EXACT_TARGET,
                )
            )
        ours_rows = [r for r in case["rows"] if r["library"].startswith("cvxlpgd")]
        if ours_rows:
            out.append(
                (
                    f"{case['name']}: cvxlpgd's answers, max deviation",
                    max(r["deviation"] for r in ours_rows),
                    ANSWERS,
                )
            )
    return out


def targets_table(record: dict) -> str:
    """The targets, with the ratio a layer would reach with a free backward pass (its own
    forward over the reference's forward + backward) next to each ratio target."""
    lines = [
        "| target | measured | with a free backward | limit | met |",
        "|---|---:|---:|---:|---|",
    ]
    floors = forward_floors(record)
    for name, value, limit in target_rows(record):
        shown = f"{value:.1e}" if limit < 1e-3 else f"{value:.2f}"
        shown_limit = f"{limit:.0e}" if limit < 1e-3 else f"{limit:.2f}"
        floor = floors.get(name)
        shown_floor = "" if floor is None else f"{floor:.2f}"
        lines.append(
            f"| {name} | {shown} | {shown_floor} | ≤ {shown_limit} | "
            f"{'yes' if value <= limit else '**no**'} |"
        )
    return "\n".join(lines)


def forward_floors(record: dict) -> dict[str, float]:
    """Target name → the layer's own forward time over the reference's forward +
    backward, for the ratio targets (the ratio a backward pass costing nothing reaches)."""
    out = {}
    for case in record["cases"]:
        rows = _rows(case)
        base = rows.get(REFERENCE)
        if base is None:
            continue
        for library, label_text in (
            ("cvxlpgd", "cvxlpgd (LPGD)"),
            ("cvxlpgd exact", "cvxlpgd exact"),
        ):
            row = rows.get(library)
            if row is not None:
                name = f"{case['name']}: {label_text} / cvxpylayers + Moreau"
                out[name] = median(row["forward_s"]) / total(base)
    return out


def lasso_solves_table(record: dict) -> str:
    """Solver iterations of the lasso's cvxlpgd layers (forward, re-solves)."""
    lines = [
        "| problem | library (solver) | forward iterations | re-solve iterations "
        "(both sides) | sides answered by the active set | backward / forward time |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case in record["cases"]:
        if case.get("family") != "lasso":
            continue
        for row in case["rows"]:
            stats = row.get("stats")
            if not stats or row.get("gradient") != "lpgd":
                continue
            lines.append(
                f"| {case['name']} | {label(row)} | {stats['forward_iterations']} | "
                f"{stats['backward_iterations']} | "
                f"{stats.get('backward_predicted', 0)} of "
                f"{stats['backward_solves']} | "
                f"{median(row['backward_s']) / median(row['forward_s']):.2f} |"
            )
    return "\n".join(lines)


def overhead_table(record: dict) -> str:
    """µs per call at B = 1 and per element at B = 1024, forward + backward."""
    data = record.get("overhead")
    if not data:
        return ""
    by = {(r["library"], r["batch_size"]): r for r in data["rows"]}
    names = list(dict.fromkeys(r["library"] for r in data["rows"]))
    lines = [
        f"| {data['problem']}, forward + backward | µs per call, B = 1 | "
        "µs per element, B = 1024 | B = 1 / reference | B = 1024 / reference |",
        "|---|---:|---:|---:|---:|",
    ]
    base1, base_big = by.get((REFERENCE, 1)), by.get((REFERENCE, 1024))
    for name in names:
        one, big = by.get((name, 1)), by.get((name, 1024))
        t1 = total(one) if one else float("nan")
        tb = total(big) / 1024 if big else float("nan")
        r1 = "" if base1 is None or name == REFERENCE else f"{t1 / total(base1):.2f}"
        rb = (
            ""
            if base_big is None or name == REFERENCE
            else (f"{tb / (total(base_big) / 1024):.2f}")
        )
        solver = (one or big or {}).get("solver", "")
        shown = f"{name} ({solver})" if solver else name
        lines.append(f"| {shown} | {us(t1)} | {us(tb)} | {r1} | {rb} |")
    return "\n".join(lines)


def auto_table(record: dict) -> str:
    rows = record.get("auto_sweep")
    if not rows:
        return ""
    lines = [
        "| lasso n × m, B | stored entries of A, P | Moreau ms | SCS ms | Moreau / SCS | "
        "auto picks |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        moreau, scs = total(r["moreau"]), total(r["scs"])
        entries = f"{r['nonzeros']:,}".replace(",", " ")
        lines.append(
            f"| {r['n']} × {r['m']}, {r['batch_size']} | {entries} | {ms(moreau)} | "
            f"{ms(scs)} | {moreau / scs:.2f} | {r['auto']} |"
        )
    return "\n".join(lines)


def table_report(record: dict) -> str:
    """The printed report of a table run."""
    parts = [
        "## Machine",
        "",
        machine_section(record),
        "",
        "## Results",
        "",
        results_table(record),
        "",
        "## Ratios to cvxpylayers + Moreau",
        "",
        ratio_table(record),
        "",
        "## Targets",
        "",
        targets_table(record),
    ]
    if lasso_solves_table(record).count("\n") > 1:
        parts += ["", "## Lasso: solver iterations", "", lasso_solves_table(record)]
    if record.get("overhead"):
        parts += ["", "## Per-call overhead", "", overhead_table(record)]
    if record.get("auto_sweep"):
        parts += ["", '## solver="auto": problems of growing size', "", auto_table(record)]
    return "\n".join(parts)


# ---- scaling -----------------------------------------------------------------------------


def scaling_table(record: dict, sweep: str) -> str:
    """µs per element (forward + backward) against B or n, one column per layer."""
    points = record[sweep]
    key = "batch_size" if sweep == "batch" else "n"
    names = list(dict.fromkeys(p["library"] for p in points))
    values = sorted({p[key] for p in points})
    by = {(p["library"], p[key]): p for p in points}
    head = "B" if sweep == "batch" else "n"
    lines = [
        f"| {head} | " + " | ".join(f"{n} µs / element" for n in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for value in values:
        cells = []
        for name in names:
            p = by.get((name, value))
            if p is None:
                cells.append("")
                continue
            wrong = " (wrong)" if p["deviation"] > WRONG else ""
            cells.append(us(total(p) / p["batch_size"]) + wrong)
        lines.append(f"| {value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_report(record: dict) -> str:
    return "\n".join(
        [
            "## Machine",
            "",
            machine_section(record),
            "",
            f"## Time per element against B ({record['batch_problem']})",
            "",
            scaling_table(record, "batch"),
            "",
            f"## Time per element against n ({record['size_problem']})",
            "",
            scaling_table(record, "size"),
        ]
    )
