"""Analysis of the experiments' results: curves, summaries, paired verdicts, the page.

From the rows that :mod:`examples.common` records, per method and seed:

* ``curves.png`` — training loss against iterations and against wall time, plus a
  held-out panel, one curve per method (mean ± sample std band over seeds);
* ``summary.md`` / ``summary.csv`` — per method, mean ± sample std over seeds of the
  iterations and seconds needed to reach a target training loss, and of the final
  training and held-out losses; per criterion the best method and the methods whose
  paired difference from it is not significant (:func:`examples.summary.verdict`); and
  each LPGD method paired against GD (:func:`examples.paired.paired_against`).

**Paired comparisons** (:func:`examples.paired.paired`; the test and the verdict rule
are described there). ``python -m examples.analysis --page`` regenerates the tables and
verdict lines of ``docs/experiments.md`` from the stored CSVs (``docs/img/*.csv``),
between markers ``<!-- generated:NAME ... -->`` and ``<!-- /generated:NAME -->``
(:mod:`examples.experiments_page`); ``--check`` only compares (exit status 1 when the
page differs from what the CSVs give).

This module is the command line and the shared entry: the experiments' scripts call
:func:`finish` and friends from here; the code lives in :mod:`examples.result_rows`,
:mod:`examples.curves_plot`, :mod:`examples.summary`, :mod:`examples.paired` and
:mod:`examples.experiments_page`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.curves_plot import plot_curves
from examples.experiments_page import PAGE, page_blocks, update_page
from examples.paired import (
    ALPHA,
    Paired,
    final_values,
    paired,
    paired_against,
    paired_table,
)
from examples.summary import (
    finish,
    gd_improvement_target,
    markdown_table,
    summarize,
    verdict,
    write_summary,
)

__all__ = [
    "ALPHA",
    "Paired",
    "final_values",
    "finish",
    "gd_improvement_target",
    "main",
    "markdown_table",
    "page_blocks",
    "paired",
    "paired_against",
    "paired_table",
    "plot_curves",
    "summarize",
    "update_page",
    "verdict",
    "write_summary",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m examples.analysis --page [--check]``: regenerate (or check) the
    generated blocks of ``docs/experiments.md`` from ``docs/img/*.csv``.

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        0, or 1 when ``--check`` finds the page out of date.
    """
    parser = argparse.ArgumentParser(
        prog="python -m examples.analysis", description=main.__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--page", action="store_true", help="rewrite the generated blocks of docs/experiments.md"
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare the page with what the CSVs give"
    )
    parser.add_argument("--path", type=Path, default=PAGE, help="the page")
    args = parser.parse_args(argv)
    if not (args.page or args.check):
        parser.error("give --page or --check")
    text = args.path.read_text(encoding="utf-8")
    fresh = update_page(text, page_blocks())
    if args.check:
        if fresh != text:
            print(
                f"{args.path}: generated blocks are out of date; run "
                "python -m examples.analysis --page",
                file=sys.stderr,
            )
            return 1
        return 0
    args.path.write_text(fresh, encoding="utf-8")
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
