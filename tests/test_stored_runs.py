"""The stored 4×4 Sudoku and LP portfolio runs (docs/img) and the page they generate.

A verdict of docs/experiments.md recomputed from its CSV with SciPy alone (not the
module's code), the sidecars' provenance, and the sidecar a quick run writes; the 4×4
Sudoku side checks (learning-rate scan, gradient check) recomputed from their CSVs; and
LPGD rerun on today's engine, which every later PyEPO row is paired with; a verdict
of LPGD against a method of PyEPO's roster recomputed from its CSV; the LP portfolio's
exact gradient, zero at every step, as the page says.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from examples import stored

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
PAGE = ROOT / "docs" / "experiments.md"


def _final(rows: list[dict], method: str, column: str) -> dict[int, float]:
    """Per seed, ``column`` at the run's last evaluation."""
    last: dict[int, dict] = {}
    for r in rows:
        seed = int(r["seed"])
        if r["method"] == method and (
            seed not in last or int(r["iteration"]) >= int(last[seed]["iteration"])
        ):
            last[seed] = r
    return {seed: float(r[column]) for seed, r in last.items()}


@pytest.mark.parametrize(
    ("name", "method", "column", "criterion", "higher_is_better"),
    [
        ("lp_portfolio", "lpgd_tau=1", "train_loss", "final training regret", False),
        ("sudoku", "lpgd_tau=10", "heldout_board_acc", "final held-out board accuracy", True),
        ("sudoku", "lpgd_tau=1", "train_loss", "final training MSE", False),
    ],
)
def test_a_verdict_recomputed_from_its_csv_is_the_one_on_the_page(
    name, method, column, criterion, higher_is_better
):
    with (IMG / f"{name}.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    lpgd, gd = _final(rows, method, column), _final(rows, "exact", column)
    seeds = sorted(lpgd)
    assert seeds == sorted(gd) and len(seeds) >= 3
    a, b = np.array([lpgd[s] for s in seeds]), np.array([gd[s] for s in seeds])
    d = a - b
    better = int(np.sum(d > 0 if higher_is_better else d < 0))
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):  # no spread: see Paired
        p = 1.0 if np.all(d == 0) else 0.0
    else:
        p = stats.ttest_rel(a, b).pvalue
    tau = method.split("=")[1]
    if p < 0.05:
        lpgd_wins = d.mean() > 0 if higher_is_better else d.mean() < 0
        expected = f"**{'LPGD τ=' + tau if lpgd_wins else 'GD (exact)'} better**"
    else:
        expected = f"no significant difference ({len(seeds)} pairs)"
    row = next(
        line
        for line in PAGE.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| {criterion} | LPGD τ={tau} | GD (exact) | {len(seeds)} |")
    )
    p_text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    assert f"| {better}/{len(seeds)} | {p_text} |" in row
    assert row.endswith(f"| {expected} |")


@pytest.mark.parametrize("name", ["lp_portfolio", "sudoku", "sudoku9", "markowitz"])
def test_the_stored_runs_record_their_command_and_commit(name):
    record = json.loads((IMG / f"{name}.json").read_text())
    assert record["command"].startswith("python -m examples.")
    assert len(record["git_commit"]) == 40 and isinstance(record["git_dirty"], bool)
    assert f"commit `{record['git_commit'][:10]}`" in PAGE.read_text(encoding="utf-8")
    assert (IMG / f"{name}.png").exists()


def test_a_run_writes_its_sidecar_and_stores_it(tmp_path):
    from examples import lp_portfolio

    out = tmp_path / "lp"
    argv = ["--quick", "--seeds", "0", "--taus", "3", "--out", str(out), "--no-progress"]
    argv += ["--iterations", "5", "--scenarios", "10"]
    paths = lp_portfolio.main(argv)
    record = json.loads(paths["sidecar"].read_text())
    assert record["command"] == "python -m examples.lp_portfolio " + " ".join(argv)
    assert record["git_commit"] and record["cpu_seconds"] >= 0
    kept = stored.store(out, "lp_portfolio", img=tmp_path / "img")
    assert sorted(p.name for p in kept.values()) == [
        "lp_portfolio.csv",
        "lp_portfolio.json",
        "lp_portfolio.png",
    ]
    blocks = stored.lp_blocks(tmp_path / "img")
    assert "| final training regret | LPGD τ=3 | GD (exact) | 1 |" in blocks["lp-paired"]
    assert record["git_commit"][:10] in blocks["lp-provenance"]


def _rows(name: str) -> list[dict]:
    with (IMG / f"{name}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_sudoku_learning_rate_scan_on_the_page_is_its_csv():
    last: dict[tuple[float, str], dict] = {}
    for r in _rows("sudoku_lr_scan"):
        key = (float(r["lr"]), r["method"])
        if key not in last or int(r["iteration"]) > int(last[key]["iteration"]):
            last[key] = r
    assert {lr for lr, _ in last} == {0.01, 0.03, 0.1}
    assert {int(r["iteration"]) for r in last.values()} == {150}
    gd, lpgd = (float(last[0.03, m]["train_loss"]) for m in ("exact", "lpgd_tau=10"))
    assert f"| 0.03 | {gd:.3g} | {lpgd:.3g} |" in PAGE.read_text(encoding="utf-8")


def test_the_sudoku_gradient_check_on_the_page_is_its_csv():
    rows = _rows("sudoku_gradcheck")
    steps = [int(r["step"]) for r in rows]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 10
    # The central difference along g against ‖g‖, recomputed from the stored columns.
    errors = [abs(float(r["fd_slope_h=1e-06"]) / float(r["exact_norm"]) - 1) for r in rows]
    worst = int(np.argmax(errors))
    cosines = [float(r["cosine_tau=10"]) for r in rows]
    page = PAGE.read_text(encoding="utf-8")
    assert f"h = 1e-06: median {100 * np.median(errors):.2g}%" in page
    assert f"largest {100 * errors[worst]:.2g}% (step {steps[worst]})" in page
    assert f"τ = 10: {min(cosines):.4g}–{max(cosines):.4g}" in page
    record = json.loads((IMG / "sudoku_gradcheck.json").read_text())
    assert record["command"].startswith("python -m examples.sudoku.checks gradient")


def test_lpgd_rerun_on_todays_engine_reproduces_every_stored_lpgd_row():
    """Methods run at later commits (the variants, the roster, exact) are paired with
    LPGD rows from earlier ones; LPGD rerun after all of them gives the stored rows
    on all 12 draws, τ scan included."""
    stored_rows = {
        (r["method"], float(r["degree"]), float(r["seed"])): r
        for r in _rows("pyepo_shortest_path_variants")
        if r["method"].startswith("lpgd") and not r["method"].startswith("lpgd-")
    }
    recheck = [r for r in _rows("pyepo_shortest_path_lpgd_recheck") if r["method"] != "initial"]
    assert len(recheck) == 4 * 12  # lpgd and its three τ, at 4 degrees × 3 seeds
    for r in recheck:
        old = stored_rows[r["method"], float(r["degree"]), float(r["seed"])]
        assert float(old["tau"]) == float(r["tau"])
        assert float(old["test_regret"]) == float(r["test_regret"])
    record = json.loads((IMG / "pyepo_shortest_path_lpgd_recheck.json").read_text())
    variants = json.loads((IMG / "pyepo_shortest_path_variants.json").read_text())
    last_paired = max(run["finished_utc"] for run in variants["runs"])
    for run in record["runs"]:
        assert run["git_dirty_paths"] == [] and run["finished_utc"] > last_paired


@pytest.mark.parametrize(
    ("stored", "method", "short"),
    [
        ("pyepo_shortest_path_variants", "imle", "I-MLE"),
        ("pyepo_shortest_path_variants", "cmap", "CMAP"),
        ("pyepo_shortest_path_variants", "ltr-pair", "pairwise LTR"),
        ("pyepo_knapsack", "aimle", "AI-MLE"),
    ],
)
def test_a_pyepo_roster_verdict_recomputed_from_its_csv_is_the_one_on_the_page(
    stored, method, short
):
    """LPGD against a method of PyEPO's roster added later with ``page --extend`` (on
    the stored draws of the shortest path or the knapsack), from the CSV with SciPy
    alone."""

    def regret(name: str) -> dict:
        return {
            (float(r["degree"]), int(r["seed"])): float(r["test_regret"])
            for r in _rows(stored)
            if r["method"] == name
        }

    lpgd, other = regret("lpgd"), regret(method)
    keys = sorted(other)
    assert keys and set(keys) <= set(lpgd) and len(keys) % 3 == 0  # 3 seeds per degree
    a, b = np.array([lpgd[k] for k in keys]), np.array([other[k] for k in keys])
    p, n = stats.ttest_rel(a, b).pvalue, len(keys)
    if p < 0.05:
        verdict = "**LPGD better**" if (a - b).mean() < 0 else f"**{short} better**"
    else:
        verdict = f"no significant difference ({n} pairs)"
    p_text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    line = (
        f"* LPGD vs {short}: over all {n} runs, {verdict}; LPGD lower in "
        f"{int(np.sum(a < b))} of {n}, paired t p = {p_text}."
    )
    assert line in PAGE.read_text(encoding="utf-8")


def test_the_lp_portfolios_exact_gradient_is_zero_and_gd_does_not_move():
    """docs/experiments.md §4: on the stored LP run every exact gradient norm is 0
    and GD's training regret is the same at every evaluation of each seed."""
    rows = [r for r in _rows("lp_portfolio") if r["method"] == "exact"]
    assert len({r["seed"] for r in rows}) == 3 and len(rows) > 30
    norms = [float(r["grad_norm"]) for r in rows]
    measured = [n for n in norms if np.isfinite(n)]  # the first evaluation has no step
    assert len(measured) >= len(norms) - 3 and max(measured) == 0.0
    for seed in {r["seed"] for r in rows}:
        losses = {float(r["train_loss"]) for r in rows if r["seed"] == seed}
        assert len(losses) == 1
    assert "every gradient norm in\nthis run is exactly 0" in PAGE.read_text(encoding="utf-8")
