"""The generated blocks of ``docs/experiments.md``, from the stored CSVs.

``python -m examples.analysis --page`` (:mod:`examples.analysis`) regenerates the tables
and verdict lines of the page from ``docs/img/*.csv``, between markers
``<!-- generated:NAME ... -->`` and ``<!-- /generated:NAME -->``; ``--check`` only
compares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from examples.common import read_csv
from examples.paired import (
    Paired,
    brief,
    final_values,
    p_text,
    paired,
    paired_against,
    paired_table,
)
from examples.result_rows import label, methods_in
from examples.summary import markdown_table, summarize

__all__ = ["PAGE", "ROOT", "SUDOKU9_TARGET", "page_blocks", "update_page"]

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "experiments.md"
#: The training MSE of the rule-free guess on the 9×9 run's 16 training boards (the
#: givens, 1/9 on every blank; :meth:`examples.sudoku.train.SudokuTask.givens_baseline_loss`),
#: the target of that run; the CSV does not store it.
SUDOKU9_TARGET = 0.0622
_MARKER = re.compile(
    r"(<!-- generated:(?P<name>[\w-]+) [^\n]*-->\n)(?P<body>.*?)"
    r"(<!-- /generated:(?P=name) -->)",
    re.S,
)


def _shared_blocks(rows: Sequence[dict]) -> list[list[int]]:
    """Markowitz seeds that trained on the same block: equal per-seed targets."""
    by_target: dict[float, list[int]] = {}
    for seed, target in sorted({(int(r["seed"]), float(r["target"])) for r in rows}):
        by_target.setdefault(target, []).append(seed)
    return [seeds for seeds in by_target.values() if len(seeds) > 1]


def _markowitz(rows: Sequence[dict]) -> dict[str, str]:
    target = {int(r["seed"]): float(r["target"]) for r in rows}
    extra = ("heldout_sharpe", "heldout_turnover")
    table = markdown_table(
        summarize(rows, target, extra=extra), target, extra=extra, loss_name="loss"
    )
    columns = [
        ("train_loss", "final training loss", True),
        ("heldout_loss", "final held-out loss", True),
        ("heldout_sharpe", "final held-out Sharpe", False),
        ("heldout_turnover", "held-out turnover / month (lower counts as better)", True),
        ("cpu_time", "training CPU seconds", True),
        ("wall_time", "training wall seconds", True),
    ]
    methods = [m for m in methods_in(rows) if m != "exact"]
    comparisons = paired_against(rows, "exact", columns, methods)
    # Every method against the grid-searched plug-in policy of its seed: on the training
    # block (the target), and held out where the run stored that policy's held-out loss.
    grid_heldout = {
        int(r["seed"]): float(r["grid_heldout"]) for r in rows if r.get("grid_heldout", "") != ""
    }
    for method in methods_in(rows):
        comparisons.append(
            (
                "final training loss vs the seed's grid policy",
                paired(
                    final_values(rows, method, "train_loss"),
                    target,
                    a=label(method),
                    b="grid-searched plug-in",
                ),
            )
        )
        if grid_heldout:
            comparisons.append(
                (
                    "final held-out loss vs the seed's grid policy",
                    paired(
                        final_values(rows, method, "heldout_loss"),
                        grid_heldout,
                        a=label(method),
                        b="grid-searched plug-in",
                    ),
                )
            )
    shared = _shared_blocks(rows)
    drop = {seed for seeds in shared for seed in seeds[1:]}
    if shared:
        groups = "; ".join(" and ".join(map(str, seeds)) for seeds in shared)
        changed = []
        for what, c in comparisons:
            keep = [i for i, k in enumerate(c.keys) if k not in drop]
            reduced = Paired(
                c.a,
                c.b,
                tuple(c.keys[i] for i in keep),
                c.a_values[keep],
                c.b_values[keep],
                c.lower_is_better,
                c.alpha,
            )
            if reduced.winner != c.winner:
                changed.append(
                    f"{c.a} vs {c.b}, {what}: {reduced.verdict}, "
                    f"{reduced.a} better in {reduced.wins_a}/{reduced.n}, "
                    f"p = {p_text(reduced.p_value)}"
                )
        kept = sorted(set(final_values(rows, "exact", "train_loss")) - drop)
        note = (
            f"Seeds {groups} trained on the same block of windows (equal targets), so "
            f"their pairs are not independent. With seed{'s' * (len(drop) > 1)} "
            f"{', '.join(map(str, sorted(drop)))} left out ({len(kept)} pairs, one per "
            "distinct block) "
        )
        note += (
            "every verdict stays the same."
            if not changed
            else "these verdicts change: " + "; ".join(changed) + "."
        )
    else:
        note = "Every seed trained on its own block of windows."
    glance = []
    for method in methods:
        parts = [
            brief(what, c)
            for what, c in comparisons
            if c.a == label(method)
            and c.b == label("exact")
            and not what.startswith(("training wall", "final held-out Sharpe"))
        ]
        glance.append(
            f"* **Markowitz**, {label(method)} against GD over "
            f"{len(target)} seeds: " + "; ".join(parts) + "."
        )
    return {
        "markowitz-table": table,
        "markowitz-paired": paired_table(comparisons) + "\n" + note + "\n",
        "glance-markowitz": "\n".join(glance),
    }


def _sudoku9(rows: Sequence[dict]) -> dict[str, str]:
    extra = ("heldout_board_acc", "heldout_cell_acc")
    table = markdown_table(
        summarize(rows, SUDOKU9_TARGET, extra=extra), SUDOKU9_TARGET, extra=extra, loss_name="MSE"
    )
    columns = [
        ("train_loss", "final training MSE", True),
        ("heldout_loss", "final held-out MSE", True),
        ("heldout_cell_acc", "final held-out cell accuracy", False),
        ("cpu_time", "training CPU seconds", True),
        ("wall_time", "training wall seconds", True),
    ]
    comparisons = paired_against(rows, "exact", columns)
    glance = "; ".join(
        brief(what, c) for what, c in comparisons if not what.startswith("training wall")
    )
    seeds = comparisons[0][1].n
    return {
        "sudoku9-table": table,
        "sudoku9-paired": paired_table(comparisons),
        "glance-sudoku9": f"* **Sudoku 9×9** (reduced), {comparisons[0][1].a} against "
        f"GD over {seeds} seeds: {glance}.",
    }


def page_blocks(img: Path | None = None) -> dict[str, str]:
    """Every generated block of ``docs/experiments.md``, by name, from the stored CSVs.

    Parameters
    ----------
    img : Path, optional
        Where the CSVs are (default ``docs/img``): ``pyepo_shortest_path.csv`` (and,
        when present, ``pyepo_shortest_path_variants.csv`` and ``pyepo_knapsack.csv``;
        :mod:`examples.pyepo_shortest_path.page`), ``markowitz.csv``, ``sudoku9.csv``,
        and, when present, ``sudoku.csv`` and ``lp_portfolio.csv`` with the runs'
        sidecars (:mod:`examples.stored`) and the 4×4 Sudoku side checks
        ``sudoku_lr_scan.csv`` and ``sudoku_gradcheck.csv`` (:mod:`examples.sudoku.checks`).

    Returns
    -------
    dict of str to str
        Markdown per block name.
    """
    img = Path(img) if img is not None else ROOT / "docs" / "img"
    blocks = {}
    from examples.pyepo_shortest_path import page

    blocks.update(page.blocks(img))
    blocks.update(_markowitz(read_csv(img / "markowitz.csv")))
    blocks.update(_sudoku9(read_csv(img / "sudoku9.csv")))
    from examples import stored

    blocks.update(stored.blocks(img))
    from examples.sudoku import checks

    blocks.update(checks.blocks(img))
    return blocks


def update_page(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with the body of every ``generated:NAME`` marker pair replaced by
    ``blocks[NAME]``.

    Raises
    ------
    KeyError
        For a marker whose name has no block, or a block that no marker names.
    """
    seen = set()

    def body(match: re.Match) -> str:
        name = match["name"]
        seen.add(name)
        # Blank lines around the content: Markdown ends an HTML block (the marker) at
        # a blank line, and a table must start a block of its own.
        content = blocks[name].strip("\n")
        return f"{match.group(1)}\n{content}\n\n{match.group(4)}"

    out = _MARKER.sub(body, text)
    missing = set(blocks) - seen
    if missing:
        raise KeyError(f"no marker for the generated blocks {sorted(missing)}")
    return out
