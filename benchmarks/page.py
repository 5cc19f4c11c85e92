"""docs/benchmarks.md's generated blocks, rendered from the stored JSON by
:mod:`benchmarks.report` (``python -m benchmarks.run --page``; see :mod:`benchmarks.report`
for the markers).
"""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import exact_accuracy, scaling, scs_resolves
from benchmarks.report import (
    auto_table,
    lasso_solves_table,
    machine_section,
    overhead_table,
    ratio_table,
    results_table,
    scaling_table,
    targets_table,
)
from benchmarks.results_io import RESULTS, ROOT, SCALING_FIGURE, SCALING_JSON, TABLE_JSON, load

PAGE = ROOT / "docs" / "benchmarks.md"

_BEGIN = "<!-- generated: {name} (python -m benchmarks.run --page) -->"
_END = "<!-- end generated: {name} -->"


def page_sections(
    table: dict | None,
    scaling: dict | None,
    resolves: dict | None = None,
    accuracy: dict | None = None,
) -> dict[str, str]:
    """The generated blocks of docs/benchmarks.md, by name."""
    out = {}
    if table is not None:
        out["run"] = machine_section(table)
        out["results"] = results_table(table)
        out["ratios"] = ratio_table(table)
        out["targets"] = targets_table(table)
        out["lasso"] = lasso_solves_table(table)
        out["overhead"] = overhead_table(table)
        if table.get("auto_sweep"):
            out["auto"] = auto_table(table)
    if scaling is not None:
        out["scaling-run"] = machine_section(scaling)
        out["scaling-batch"] = scaling_table(scaling, "batch")
        out["scaling-size"] = scaling_table(scaling, "size")
    if resolves is not None:
        out["scs-resolves-run"] = machine_section(resolves)
        out["scs-resolves"] = scs_resolves.table(resolves)
    if accuracy is not None:
        out["exact-accuracy-run"] = machine_section(accuracy)
        out["exact-accuracy"] = exact_accuracy.table(accuracy["rows"])
    return out


def stored_sections() -> dict[str, str]:
    """:func:`page_sections` of the stored results."""
    return page_sections(
        load(TABLE_JSON),
        load(SCALING_JSON),
        load(RESULTS / "scs_resolves.json"),
        load(exact_accuracy.JSON),
    )


def blocks(text: str) -> dict[str, str]:
    """The generated blocks of a page, by name."""
    pattern = re.compile(
        r"<!-- generated: (\S+) \(python -m benchmarks\.run --page\) -->\n"
        r"(.*?)\n?<!-- end generated: \1 -->",
        re.S,
    )
    return {m.group(1): m.group(2).strip("\n") for m in pattern.finditer(text)}


def replace_blocks(text: str, sections: dict[str, str]) -> str:
    """``text`` with each generated block replaced by its section (blocks without one
    are left as they are)."""
    for name, body in sections.items():
        begin, end = _BEGIN.format(name=name), _END.format(name=name)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        replacement = f"{begin}\n{body}\n{end}"
        text = pattern.sub(lambda _, block=replacement: block, text)
    return text


def write_page(page: Path = PAGE) -> dict[str, str]:
    """Rewrite the page's generated blocks (and the scaling figure) from the stored JSON.

    Returns
    -------
    dict
        The sections written.
    """
    sections = stored_sections()
    page.write_text(replace_blocks(page.read_text(encoding="utf-8"), sections), encoding="utf-8")
    stored = load(SCALING_JSON)
    if stored is not None:
        scaling.figure(stored, SCALING_FIGURE)
    return sections
