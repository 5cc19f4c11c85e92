"""Paired comparisons of the experiments (examples/paired.py) and the page they write
(examples/experiments_page.py, through examples/analysis.py).

* :func:`examples.paired.paired` on synthetic data whose answer is known: the
  direction of the differences, scores where higher is better, pairing by key, the
  degenerate cases, and agreement with SciPy's paired tests.
* The verdicts of docs/experiments.md are what the stored CSVs give: one recomputed
  here from its CSV without the module's code, and every generated block compared with
  a fresh generation.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from examples import analysis, experiments_page, paired
from examples.common import read_csv

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
PAGE = ROOT / "docs" / "experiments.md"


# ------------------------------------------------------------------ synthetic data


def test_a_consistently_lower_method_wins_and_the_direction_is_a_minus_b():
    # LPGD's loss is 0.1 below GD's on every seed, up to small noise. Differences are
    # LPGD − GD < 0; taken the other way round, the verdict would name GD.
    rng = np.random.default_rng(0)
    gd = {seed: 1.0 + rng.normal() for seed in range(6)}
    lpgd = {seed: gd[seed] - 0.1 + 0.01 * rng.normal() for seed in range(6)}
    c = paired.paired(lpgd, gd, a="LPGD", b="GD")
    assert c.n == 6 and c.mean < 0 and c.mean == pytest.approx(-0.1, abs=0.02)
    assert c.wins_a == 6 and c.wins_b == 0
    assert c.winner == "LPGD" and c.verdict == "LPGD better"
    swapped = paired.paired(gd, lpgd, a="GD", b="LPGD")
    assert swapped.mean == pytest.approx(-c.mean) and swapped.wins_a == 0
    assert swapped.verdict == "LPGD better"  # the same method wins, named as B now


def test_higher_is_better_scores_flip_the_sign_rule():
    # Accuracy: A is higher on every seed, so A is better although A − B > 0.
    a = {0: 0.90, 1: 0.80, 2: 0.85, 3: 0.70}
    b = {0: 0.80, 1: 0.71, 2: 0.74, 3: 0.61}
    c = paired.paired(a, b, a="A", b="B", lower_is_better=False)
    assert c.mean > 0 and c.wins_a == 4 and c.verdict == "A better"
    as_loss = paired.paired(a, b, a="A", b="B")  # the same numbers read as losses
    assert as_loss.wins_a == 0 and as_loss.verdict == "B better"


def test_standing_groups_the_verdicts_by_who_wins():
    rng = np.random.default_rng(1)
    base = {seed: 1.0 + rng.normal() for seed in range(8)}

    def shifted(delta):
        return {k: v + delta + 0.01 * rng.normal() for k, v in base.items()}

    noise = {k: v + 0.5 * rng.normal() for k, v in base.items()}
    comparisons = [
        paired.paired(base, shifted(+0.1), a="LPGD", b="X"),  # LPGD lower: beats X
        paired.paired(base, shifted(-0.1), a="LPGD", b="Y"),  # LPGD higher: loses
        paired.paired(base, shifted(+0.2), a="LPGD", b="Z"),
        paired.paired(base, noise, a="LPGD", b="W"),
    ]
    assert [c.winner for c in comparisons[:3]] == ["LPGD", "Y", "LPGD"]
    assert comparisons[3].winner is None
    assert paired.standing(comparisons) == "beats X and Z; ties W; loses to Y"


def test_pairing_beats_overlapping_intervals():
    # The seeds differ a lot (task difficulty), the methods little but consistently:
    # the mean ± std intervals overlap, the paired test sees the difference.
    base = np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    a = dict(enumerate(base + 0.01 + np.array([0.001, -0.001, 0.0, 0.002, -0.002])))
    b = dict(enumerate(base))
    a_values, b_values = np.array(list(a.values())), np.array(list(b.values()))
    assert a_values.mean() - a_values.std(ddof=1) < b_values.mean() + b_values.std(ddof=1)
    c = paired.paired(a, b, a="A", b="B")
    assert c.verdict == "B better" and c.wins_b == 5
    assert c.p_value == pytest.approx(stats.ttest_rel(a_values, b_values).pvalue)


def test_no_difference_and_the_p_values_agree_with_scipy():
    rng = np.random.default_rng(3)
    a = {k: rng.normal() for k in range(8)}
    b = {k: v + rng.normal(scale=0.5) * (-1) ** k for k, v in a.items()}
    c = paired.paired(a, b, a="A", b="B")
    a_values = np.array([a[k] for k in range(8)])
    b_values = np.array([b[k] for k in range(8)])
    assert c.p_value == pytest.approx(stats.ttest_rel(a_values, b_values).pvalue)
    assert c.sign_p == pytest.approx(stats.binomtest(c.wins_a, 8, 0.5).pvalue)
    assert c.std == pytest.approx(np.std(a_values - b_values, ddof=1))
    assert c.p_value >= paired.ALPHA
    assert c.winner is None and c.verdict == "no significant difference (8 pairs)"


def test_pairs_are_matched_by_key_not_by_order():
    a = {(6, 2): 3.0, (1, 0): 1.0, (1, 1): 2.0, (4, 0): np.nan}
    b = {(1, 1): 2.5, (1, 0): 1.5, (6, 2): 3.5, (9, 9): 0.0}
    c = paired.paired(a, b)
    assert c.keys == ((1, 0), (1, 1), (6, 2))  # (4, 0) is NaN, (9, 9) unmatched
    np.testing.assert_array_equal(c.differences, [-0.5, -0.5, -0.5])


def test_degenerate_cases():
    same = paired.paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same.p_value == 1.0 and same.wins_a == same.wins_b == 0
    assert same.verdict == "no significant difference (2 pairs)" and same.sign_p == 1.0
    constant = paired.paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.0, 2: 4.0})
    assert constant.p_value == 0.0 and constant.verdict == "A better"
    one = paired.paired({0: 1.0}, {0: 2.0})
    assert np.isnan(one.p_value) and np.isnan(one.std) and one.winner is None
    assert one.verdict.startswith("too few pairs")


def test_final_values_take_each_runs_last_evaluation():
    rows = [
        {"method": "m", "seed": s, "iteration": i, "loss": 10 * s + i}
        for s in (0, 1)
        for i in (5, 0, 10)
    ]
    rows.append({"method": "other", "seed": 0, "iteration": 20, "loss": -1})
    assert paired.final_values(rows, "m", "loss") == {0: 10.0, 1: 20.0}
    flat = [{"method": "m", "degree": 2.0, "seed": 1, "x": 0.5}]
    assert paired.final_values(flat, "m", "x", by=("degree", "seed")) == {(2, 1): 0.5}


def test_the_summary_verdict_names_only_methods_not_significantly_worse():
    rows = []
    for method, shift in (("exact", 0.3), ("lpgd_tau=1", 0.0), ("lpgd_tau=3", 0.01)):
        for seed, noise in enumerate((0.0, 0.03, -0.03, 0.01)):
            jitter = noise if method == "lpgd_tau=3" else 0.0
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "iteration": 0,
                    "wall_time": 0.0,
                    "train_loss": 2.0 + seed,
                    "heldout_loss": 2.0,
                }
            )
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "iteration": 10,
                    "wall_time": 1.0,
                    "train_loss": 1.0 + seed + shift + jitter,
                    "heldout_loss": 1.0 + shift,
                }
            )
    text = analysis.verdict(analysis.summarize(rows, 0.5))
    final = text.split("lowest final training loss: ")[1].split(";")[0]
    # τ=3 is worse on average but not on every seed (differences 0.01, 0.04, −0.02,
    # 0.02): named; GD is 0.3 worse on every seed: not named.
    assert final.startswith("LPGD τ=1 (not significantly different: LPGD τ=3)")
    assert "GD (exact)" not in final


# ------------------------------------------------------------------ the stored results


def _plain_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_verdict_recomputed_from_its_csv_is_the_one_on_the_page():
    """LPGD against PyEPO's PFYL, test regret over all (degree, seed) runs, computed
    from the CSV with SciPy alone."""
    rows = _plain_csv(IMG / "pyepo_shortest_path.csv")

    def regret(method):
        return {
            (r["degree"], r["seed"]): float(r["test_regret"]) for r in rows if r["method"] == method
        }

    lpgd, pfyl = regret("lpgd"), regret("pfyl")
    keys = sorted(lpgd)
    assert keys == sorted(pfyl) and len(keys) == 12
    a, b = np.array([lpgd[k] for k in keys]), np.array([pfyl[k] for k in keys])
    p = stats.ttest_rel(a, b).pvalue
    lpgd_lower = int(np.sum(a < b))
    assert p < 0.05 and (a - b).mean() > 0 and lpgd_lower == 0  # PFYL better
    page = PAGE.read_text(encoding="utf-8")
    assert f"vs PFYL — **PFYL better** ({lpgd_lower}/12)" in page
    row = next(
        line for line in page.splitlines() if line.startswith("| all degrees | LPGD | PFYL |")
    )
    assert f"| {lpgd_lower}/12 | {p:.3f} |" in row and row.endswith("| **PFYL better** |")


def test_every_generated_block_of_the_page_is_what_the_csvs_give():
    page = PAGE.read_text(encoding="utf-8")
    blocks = analysis.page_blocks()
    assert analysis.update_page(page, blocks) == page, "run: python -m examples.analysis --page"
    for name, content in blocks.items():
        assert f"<!-- generated:{name} " in page
        assert content.strip() in page
    assert analysis.main(["--check"]) == 0


def test_a_block_without_its_marker_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="lost"):
        analysis.update_page("no markers here", {"lost": "text"})
    page = (
        "a\n<!-- generated:x (python -m examples.analysis --page) -->\nold\n"
        "<!-- /generated:x -->\nb\n"
    )
    assert analysis.update_page(page, {"x": "new"}) == (
        "a\n<!-- generated:x (python -m examples.analysis --page) -->\n\nnew\n\n"
        "<!-- /generated:x -->\nb\n"
    )


def test_the_page_says_whether_markowitz_seeds_shared_a_block():
    # The stored run (seeds draw their offsets without replacement) gives every seed its
    # own block: distinct per-seed targets, and the page says so.
    rows = read_csv(IMG / "markowitz.csv")
    assert experiments_page._shared_blocks(rows) == []
    targets = {int(r["seed"]): r["target"] for r in rows}
    assert len(set(targets.values())) == len(targets) == 5
    page = PAGE.read_text(encoding="utf-8")
    assert "Every seed trained on its own block of windows." in page


def test_lpgd_time_includes_its_tau_scan():
    from examples.pyepo_shortest_path import report

    rows = read_csv(IMG / "pyepo_shortest_path.csv")
    scan = report.scan_cost(rows)
    assert len(scan) == 12
    for (degree, seed), total in scan.items():
        per_tau = [
            r["cpu_seconds_per_epoch"]
            for r in rows
            if str(r["method"]).startswith("lpgd_tau=")
            and r["degree"] == degree
            and r["seed"] == seed
        ]
        assert len(per_tau) == 3 and total == pytest.approx(sum(per_tau))
    chosen = paired.final_values(rows, "lpgd", "cpu_seconds_per_epoch", by=("degree", "seed"))
    assert all(scan[k] > 2.5 * chosen[k] for k in scan)
    assert "| CPU s / epoch | LPGD | DBB | 12 |" in PAGE.read_text(encoding="utf-8")
