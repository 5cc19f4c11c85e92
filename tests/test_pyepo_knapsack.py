"""PyEPO's knapsack benchmark and the PyEPO result files (issue 17, items 4–6, 8).

* The integer oracle (OR-Tools' knapsack branch and bound) picks what PyEPO's own
  OR-Tools model (SCIP) picks on random values of both signs.
* The knapsack's LP relaxation in CVXPY has the value of PyEPO's own relaxation, and
  never less than the integer optimum; a tiny run of the shared harness learns and
  writes its rows, figure and provenance sidecar (a few seconds).
* Three knapsack verdicts on docs/experiments.md (LPGD against PFYL, DPO and DBB)
  are recomputed from ``docs/img/pyepo_knapsack.csv`` with SciPy alone.
* The rows derived from the scans (τ per degree; PG at LPGD's τ) and the "all
  trainings" cost are what their definitions say, and every stored PyEPO CSV has a
  sidecar naming the command and commit that produced it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from examples import common

pytest.importorskip("pyepo")
pytest.importorskip("ortools")

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
PAGE = ROOT / "docs" / "experiments.md"


def _block(name: str) -> str:
    page = PAGE.read_text(encoding="utf-8")
    start = page.index(f"<!-- generated:{name} ")
    return page[start : page.index(f"<!-- /generated:{name} -->", start)]


def test_oracle_packs_what_pyepos_scip_model_packs():
    from pyepo.model.ort import knapsackModel

    from examples.pyepo_knapsack.problem import oracle, weights

    for seed in range(5):  # 500 instances, as docs/experiments.md §6 says
        item_weights = weights(seed)
        fast, scip = oracle(item_weights), knapsackModel(item_weights, [20.0, 20.0])
        rng = np.random.default_rng(seed)
        for k in range(100):
            # half the draws centred at 0: negative values must be left out
            values = rng.normal(k % 2, 1.0, 32) * rng.uniform(0.1, 50.0)
            fast.setObj(values)
            scip.setObj(values)
            picked, value = fast.solve()
            reference = np.rint(scip.solve()[0])
            assert np.array_equal(picked, reference), (seed, k)
            assert value == pytest.approx(values @ reference, rel=1e-12, abs=1e-12)
            assert np.all(item_weights @ picked <= 20.0 + 1e-9)


def test_oracle_refuses_weights_it_cannot_count():
    from examples.pyepo_knapsack.oracle import BranchAndBoundKnapsack

    with pytest.raises(ValueError, match="multiples of 1/100"):
        BranchAndBoundKnapsack(np.full((2, 3), 3.001), [20.0, 20.0])
    model = BranchAndBoundKnapsack(np.full((2, 3), 3.0), [20.0, 20.0])
    with pytest.raises(ValueError, match="3 finite numbers"):
        model.setObj([1.0, np.nan, 2.0])


def test_knapsack_lp_is_pyepos_relaxation():
    from pyepo.model.ort import knapsackModel

    from examples.pyepo_knapsack.problem import knapsack_lp, make_splits, oracle, weights

    item_weights = weights(4)
    assert item_weights.shape == (2, 32)
    optmodel = oracle(item_weights)
    relaxed = knapsackModel(item_weights, [20.0, 20.0]).relax()
    splits = make_splits(optmodel, degree=2, seed=4, n_train=4, n_val=1, n_test=1)
    problem, cost, pick = knapsack_lp(item_weights)
    assert problem.is_dpp()
    for _x, c, _w, z_star in splits.train:
        cost.value = c.numpy().astype(float)
        problem.solve(solver="CLARABEL")
        relaxed.setObj(c.numpy())
        _, lp_value = relaxed.solve()
        assert problem.value == pytest.approx(lp_value, rel=1e-6)
        assert problem.value >= float(z_star) - 1e-6  # a relaxation of a maximization
        assert np.all(item_weights @ pick.value <= 20 + 1e-6)


def test_knapsack_tiny_run(tmp_path):
    from examples.pyepo_knapsack import train

    out = tmp_path / "knapsack"
    result = train.main(
        [
            "--quick",
            "--out",
            str(out),
            "--no-progress",
            "--seeds",
            "0",
            "--methods",
            "lpgd",
            "pg",
            "nid",
            "dbb",
            "dpo",
            "2s",
            "--taus",
            "1",
            "--n-train",
            "64",
            "--n-val",
            "16",
            "--n-test",
            "32",
            "--epochs",
            "1",
        ]
    )
    rows = {r["method"]: r for r in common.read_csv(out / "results.csv")}
    assert set(rows) == {
        "initial",
        *("lpgd_tau=1", "lpgd", "pg_sigma=1", "pg", "nid", "dbb", "dpo", "2s"),
    }
    assert all(0 <= r["test_regret"] < 1 for r in rows.values())
    assert rows["lpgd"]["test_regret"] < rows["initial"]["test_regret"]
    assert "PyEPO PG (σ = LPGD's τ)" in result["summary"]
    sidecar = json.loads(result["provenance"].read_text())
    assert sidecar["command"].startswith("python -m ") and len(sidecar["git_commit"]) == 40
    assert sidecar["options"]["n_train"] == 64 and sidecar["experiment"] == "pyepo_knapsack"


@pytest.mark.parametrize(("method", "short"), [("pfyl", "PFYL"), ("dpo", "DPO"), ("dbb", "DBB")])
def test_a_knapsack_verdict_recomputed_from_its_csv_is_the_one_on_the_page(method, short):
    """LPGD against a PyEPO method on knapsack test regret over all (degree, seed)
    runs, from the CSV with SciPy alone, against the page's generated table and
    glance."""
    with (IMG / "pyepo_knapsack.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))

    def regret(method):
        return {
            (r["degree"], r["seed"]): float(r["test_regret"]) for r in rows if r["method"] == method
        }

    lpgd, other = regret("lpgd"), regret(method)
    keys = sorted(lpgd)
    n = len(keys)
    assert keys == sorted(other) and n >= 6 and n % 3 == 0  # 3 seeds per degree
    a, b = np.array([lpgd[k] for k in keys]), np.array([other[k] for k in keys])
    p = stats.ttest_rel(a, b).pvalue
    wins = int(np.sum(a < b))
    verdict = (
        f"no significant difference ({n} pairs)"
        if not p < 0.05
        else "**LPGD better**"
        if (a - b).mean() < 0
        else f"**{short} better**"
    )
    row = next(
        line
        for line in _block("knapsack-paired").splitlines()
        if line.startswith(f"| all degrees | LPGD | {short} |")
    )
    p_text = "< 0.001" if p < 0.001 else f"{p:.3f}"
    assert f"| {wins}/{n} | {p_text} |" in row and row.endswith(f"| {verdict} |")
    brief = verdict if "**" in verdict else "no significant difference"
    assert f"vs {short} — {brief} ({wins}/{n})" in _block("glance-knapsack")


def test_derived_rows_and_their_cost():
    from examples.pyepo_shortest_path import report

    rows = common.read_csv(IMG / "pyepo_knapsack.csv")
    derived = report.with_derived(rows)
    scan = [r for r in rows if str(r["method"]).startswith("lpgd_tau=")]
    for degree in {r["degree"] for r in scan}:
        here = [r for r in scan if r["degree"] == degree]
        means = {
            t: np.mean([r["val_regret"] for r in here if r["tau"] == t])
            for t in {r["tau"] for r in here}
        }
        chosen = [r for r in derived if r["method"] == "lpgd-deg" and r["degree"] == degree]
        assert {r["tau"] for r in chosen} == {min(means, key=means.get)}
    lpgd = {(r["degree"], r["seed"]): r["tau"] for r in rows if r["method"] == "lpgd"}
    pg_at = [r for r in derived if r["method"] == "pg-at-lpgd"]
    assert len(pg_at) == len(lpgd) >= 6
    assert all(r["tau"] == lpgd[(r["degree"], r["seed"])] for r in pg_at)
    total = report.all_trainings(derived, "pg-at-lpgd")
    own = {(r["degree"], r["seed"]): r["cpu_seconds_per_epoch"] for r in pg_at}
    lpgd_scan = report.scan_cost(rows, family="lpgd")
    assert all(total[k] == pytest.approx(own[k] + lpgd_scan[k]) for k in total)
    assert report.all_trainings(derived, "pg") == report.scan_cost(rows, family="pg")


@pytest.mark.parametrize("name", ["pyepo_knapsack", "pyepo_shortest_path_variants"])
def test_stored_results_name_their_command_and_commit(name):
    sidecar = json.loads((IMG / f"{name}.json").read_text())
    assert sidecar["csv"] == f"{name}.csv" and sidecar["runs"]
    for run in sidecar["runs"]:
        assert run["command"].startswith("python -m examples.pyepo_")
        assert len(run["git_commit"]) == 40 and run["options"]["process_cpu_seconds"] > 0


def test_extend_adds_rows_only_on_the_stored_draws(tmp_path, monkeypatch):
    from examples.pyepo_shortest_path import figure, page

    monkeypatch.setattr(figure, "plot", lambda rows, path, title: path)
    stored = [
        {
            "method": "initial",
            "tau": "",
            "seed": 0,
            "degree": 2,
            "test_regret": 0.3,
            "val_regret": 0.2,
        },
        {
            "method": "lpgd",
            "tau": 1.0,
            "seed": 0,
            "degree": 2,
            "test_regret": 0.1,
            "val_regret": 0.1,
        },
    ]
    common.write_csv(stored, tmp_path / "v.csv")
    (tmp_path / "v.json").write_text(json.dumps({"csv": "v.csv", "runs": [{"command": "a"}]}))

    def run(name, initial_regret):
        folder = tmp_path / name
        rows = [
            {**stored[0], "test_regret": initial_regret},
            {
                "method": "exact",
                "tau": "",
                "seed": 0,
                "degree": 2,
                "test_regret": 0.4,
                "val_regret": 0.3,
            },
        ]
        common.write_csv(rows, folder / "results.csv")
        (folder / "results.json").write_text(json.dumps({"command": name}))
        return folder

    with pytest.raises(ValueError, match="not on the stored draw"):
        page.extend([run("other", 0.31)], "v", "t", img=tmp_path)
    page.extend([run("same", 0.3)], "v", "t", img=tmp_path)
    rows = common.read_csv(tmp_path / "v.csv")
    assert [r["method"] for r in rows] == ["initial", "lpgd", "exact"]
    assert [r["command"] for r in json.loads((tmp_path / "v.json").read_text())["runs"]] == [
        "a",
        "same",
    ]
    with pytest.raises(ValueError, match="already stored"):
        page.extend([run("again", 0.3)], "v", "t", img=tmp_path)


def test_replace_swaps_a_methods_rows_and_notes_it(tmp_path, monkeypatch):
    """--replace drops the stored rows of the rerun methods on the draws the run covers,
    adds the new ones (on the stored draws only), and notes the replacement in the
    sidecar entry of the run that produced the old rows."""
    from examples.pyepo_shortest_path import figure, page

    monkeypatch.setattr(figure, "plot", lambda rows, path, title: path)
    base = {"tau": "", "degree": 2, "val_regret": 0.2}
    stored = [
        {**base, "method": "initial", "seed": 0, "test_regret": 0.3},
        {**base, "method": "exact", "seed": 0, "test_regret": 0.4},
        {**base, "method": "initial", "seed": 1, "test_regret": 0.5},
        {**base, "method": "exact", "seed": 1, "test_regret": 0.6},
        {**base, "method": "lpgd", "seed": 0, "test_regret": 0.1},
    ]
    common.write_csv(stored, tmp_path / "v.csv")
    sidecar = {
        "csv": "v.csv",
        "runs": [
            {"command": "old exact", "options": {"methods": ["exact"]}},
            {"command": "lpgd", "options": {"methods": ["lpgd"]}},
        ],
    }
    (tmp_path / "v.json").write_text(json.dumps(sidecar))

    def run(name, initial_regret):
        folder = tmp_path / name
        rows = [
            {**base, "method": "initial", "seed": 0, "test_regret": initial_regret},
            {**base, "method": "exact", "seed": 0, "test_regret": 0.3},
        ]
        common.write_csv(rows, folder / "results.csv")
        (folder / "results.json").write_text(json.dumps({"command": name}))
        return folder

    before = (tmp_path / "v.csv").read_text(), (tmp_path / "v.json").read_text()
    with pytest.raises(ValueError, match="not on the stored draw"):
        page.replace([run("elsewhere", 0.31)], "v", "t", img=tmp_path)
    assert ((tmp_path / "v.csv").read_text(), (tmp_path / "v.json").read_text()) == before
    page.replace([run("new exact", 0.3)], "v", "t", img=tmp_path)
    rows = common.read_csv(tmp_path / "v.csv")
    exact = {r["seed"]: r["test_regret"] for r in rows if r["method"] == "exact"}
    assert exact == {0: 0.3, 1: 0.6}  # seed 0 replaced, seed 1 (not rerun) kept
    assert sum(r["method"] == "lpgd" for r in rows) == 1
    runs = json.loads((tmp_path / "v.json").read_text())["runs"]
    assert [r["command"] for r in runs] == ["old exact", "lpgd", "new exact"]
    assert runs[0]["replaced"] == [{"methods": ["exact"], "by": ["new exact"]}]
    assert "replaced" not in runs[1]


def test_the_knapsacks_exact_model_never_moves():
    """docs/experiments.md §6: the exact gradient is zero at every step of every run,
    so each exact row scores the initial model's regrets."""
    rows = common.read_csv(IMG / "pyepo_knapsack.csv")
    initial = {(r["degree"], r["seed"]): r for r in rows if r["method"] == "initial"}
    exact = [r for r in rows if r["method"] == "exact"]
    assert len(exact) == len(initial) == 12
    assert max(float(r["max_grad_norm"]) for r in exact) == 0.0
    for r in exact:
        start = initial[r["degree"], r["seed"]]
        assert (r["test_regret"], r["val_regret"]) == (start["test_regret"], start["val_regret"])
    assert "the largest gradient norm over the 12 runs is 0" in PAGE.read_text(encoding="utf-8")
