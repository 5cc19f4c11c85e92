"""PyEPO's shortest-path benchmark: the LP matches PyEPO's oracle, and a --quick run learns.

The quick run trains every method for two epochs on 128 instances and checks what
would be false if training did not work: LPGD's test regret falls well below the
initial model's on every seed, the exact gradient of the LP is (almost always) zero,
the reported LPGD row is the τ with the lowest validation regret, and the two-stage
fit is near the noise floor.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from examples import common

pytest.importorskip("pyepo")
pytest.importorskip("ortools")


def test_cvxpy_lp_matches_pyepo_oracle():
    """The CVXPY flow LP on PyEPO's arcs has PyEPO's optimal value and path."""
    from examples.pyepo_shortest_path.problem import make_splits, oracle, shortest_path_lp

    optmodel = oracle()
    splits = make_splits(optmodel, degree=2, seed=3, n_train=8, n_val=1, n_test=1)
    problem, cost, flow = shortest_path_lp(optmodel.arcs, 25)
    assert problem.is_dpp() and flow.shape == (40,)
    for _x, c, w_star, z_star in splits.train:
        cost.value = c.numpy().astype(float)
        problem.solve(solver="CLARABEL")
        assert problem.value == pytest.approx(float(z_star), rel=1e-6)
        # Continuous costs: the shortest path is unique, so the LP's vertex is PyEPO's.
        np.testing.assert_allclose(flow.value, w_star.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="arcs must join nodes"):
        shortest_path_lp([(0, 30)], 25)


def test_pyepo_quick_run_learns(tmp_path):
    from examples.pyepo_shortest_path import train

    out = tmp_path / "pyepo"
    result = train.main(
        [
            "--quick",
            "--out",
            str(out),
            "--no-progress",
            "--seeds",
            "0",
            "1",
            "--taus",
            "1",
            "10",
            "--n-train",
            "128",
            "--n-val",
            "64",
            "--n-test",
            "128",
        ]
    )
    rows = common.read_csv(out / "results.csv")
    png = out / "regret.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "summary.md").read_text() == result["summary"]
    for label in (
        "PyEPO SPO+",
        "PyEPO DBB",
        "PyEPO DPO",
        "PyEPO PFYL",
        "two-stage LS",
        "cvxlpgd exact",
        "LPGD's τ scan",
    ):
        assert label in result["summary"]
    for seed in (0, 1):
        by = {r["method"]: r for r in rows if r["seed"] == seed}
        assert set(by) >= {
            "initial",
            "lpgd",
            "lpgd_tau=1",
            "lpgd_tau=10",
            "exact",
            "spo+",
            "dbb",
            "dpo",
            "pfyl",
            "2s",
        }
        assert all(
            0 <= r["test_regret"] < 5 and math.isfinite(r["val_regret"]) for r in by.values()
        )
        initial = by["initial"]["test_regret"]
        # LPGD learns: its test regret drops well below the initial model's ...
        assert by["lpgd"]["test_regret"] < 0.85 * initial
        # ... and it is the scanned τ with the lowest validation regret.
        scan = [by["lpgd_tau=1"], by["lpgd_tau=10"]]
        chosen = min(scan, key=lambda r: r["val_regret"])
        assert by["lpgd"]["tau"] == chosen["tau"]
        assert by["lpgd"]["test_regret"] == chosen["test_regret"]
        # The LP's derivative is zero almost everywhere: the typical exact gradient is
        # round-off, many orders below LPGD's.
        assert by["exact"]["median_grad_norm"] < 1e-4 * by["lpgd"]["median_grad_norm"]
        # SPO+ learns too, and least squares is close to the noise floor at degree 4.
        assert by["spo+"]["test_regret"] < 0.85 * initial
        assert by["2s"]["test_regret"] < 0.2
        assert by["2s"]["epochs"] == 0 and by["spo+"]["epochs"] == 2


def test_pyepo_roster_tiny_run(tmp_path):
    """PyEPO's I-MLE, AI-MLE, NCE, CMAP and the three LTR losses run in the shared loop
    (the pool losses get the training set) and score a finite regret (a few seconds)."""
    from examples.pyepo_shortest_path import train

    out = tmp_path / "roster"
    roster = ["imle", "aimle", "nce", "cmap", "ltr", "ltr-pair", "ltr-point"]
    result = train.main(
        ["--quick", "--out", str(out), "--no-progress", "--seeds", "0", "--methods", *roster]
        + ["--n-train", "32", "--n-val", "16", "--n-test", "16", "--epochs", "1"]
    )
    rows = {r["method"]: r for r in common.read_csv(out / "results.csv")}
    assert set(rows) == {"initial", *roster}
    for name in roster:
        assert rows[name]["epochs"] == 1 and 0 <= rows[name]["test_regret"] < 5
        assert math.isfinite(rows[name]["last_epoch_loss"])
    labels = ("I-MLE", "AI-MLE", "NCE", "CMAP", "listwise LTR", "pairwise LTR", "pointwise LTR")
    for label in (f"PyEPO {name}" for name in labels):
        assert label in result["summary"]
