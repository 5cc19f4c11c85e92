"""The paper-reproduction experiments run end to end in --quick mode and say what they claim.

Each experiment's ``main(["--quick", "--out", tmp, ...])`` must write ``results.csv``
(a row per method, seed and evaluation point, finite losses), ``curves.png`` and
``summary.md``. On top, a few assertions that fail if the training were wrong: the
exact gradient of the LP cannot move while LPGD reaches a near-optimal model, and
LPGD's Sudoku and Markowitz training losses decrease.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from examples import analysis, common, result_rows

SEEDS = ["--seeds", "0", "1"]


def _check_outputs(result, out, methods, seeds):
    rows = common.read_csv(out / "results.csv")
    png = out / "curves.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < png.stat().st_size < 300_000
    assert (out / "summary.md").read_text() == result["summary"]
    for method in methods:
        for seed in seeds:
            run = [r for r in rows if r["method"] == method and r["seed"] == seed]
            assert len(run) >= 2, (method, seed)
            iterations = [r["iteration"] for r in run]
            assert iterations[0] == 0 and iterations == sorted(iterations)
            times = [r["wall_time"] for r in run]
            assert times[0] == 0 and all(b >= a for a, b in zip(times, times[1:]))
            assert all(
                math.isfinite(r["train_loss"]) and math.isfinite(r["heldout_loss"]) for r in run
            )
        assert result_rows.label(method) in result["summary"]
    return rows


def _run(rows, method, seed, column="train_loss"):
    run = sorted(
        (r for r in rows if r["method"] == method and r["seed"] == seed),
        key=lambda r: r["iteration"],
    )
    return np.array([r[column] for r in run])


def test_lp_portfolio_exact_stuck_lpgd_learns(tmp_path):
    from examples import lp_portfolio

    out = tmp_path / "lp"
    result = lp_portfolio.main(
        ["--quick", "--out", str(out), "--no-progress", "--taus", "3", "--iterations", "30", *SEEDS]
    )
    rows = _check_outputs(result, out, ["exact", "lpgd_tau=3"], [0, 1])
    for seed in (0, 1):
        exact = _run(rows, "exact", seed)
        lpgd = _run(rows, "lpgd_tau=3", seed)
        assert exact[0] == pytest.approx(lpgd[0])  # same initial model
        # The LP's solution map is piecewise constant: the exact gradient is zero and
        # plain SGD does not move at all.
        np.testing.assert_allclose(exact, exact[0], rtol=1e-6)
        assert np.nanmax(_run(rows, "exact", seed, "grad_norm")) < 1e-5
        # LPGD sees the better vertices: the regret falls to near the optimum (0).
        assert lpgd[-1] < 0.2 * lpgd[0]
        assert lpgd[-1] < 0.5


def test_sudoku_quick(tmp_path):
    from examples.sudoku import train

    out = tmp_path / "sudoku"
    result = train.main(
        ["--quick", "--out", str(out), "--no-progress", "--taus", "1", "10", *SEEDS]
    )
    rows = _check_outputs(result, out, ["exact", "lpgd_tau=1", "lpgd_tau=10"], [0, 1])
    for seed in (0, 1):
        starts = {m: _run(rows, m, seed)[0] for m in ("exact", "lpgd_tau=1", "lpgd_tau=10")}
        assert len({round(v, 10) for v in starts.values()}) == 1  # same initial rules
        for method in ("exact", "lpgd_tau=10"):
            losses = _run(rows, method, seed)
            assert losses[-1] < 0.8 * losses[0]
            assert np.all(np.diff(losses) < 0)  # every epoch improves the training MSE
        accuracy = _run(rows, "lpgd_tau=10", seed, "heldout_cell_acc")
        assert np.all((accuracy >= 0) & (accuracy <= 1))
    # Small τ approaches the exact derivative: after the first epoch the two runs agree.
    first = [r for r in rows if r["iteration"] > 0]
    by = {(r["method"], r["seed"], r["iteration"]): r["train_loss"] for r in first}
    it = min(r["iteration"] for r in first)
    assert by["lpgd_tau=1", 0, it] == pytest.approx(by["exact", 0, it], rel=0.05)


def test_sudoku_side_checks_quick(tmp_path):
    """The learning-rate scan and the gradient check run and render their page blocks."""
    import shutil

    from examples.sudoku import checks

    img = tmp_path / "img"
    img.mkdir()
    argv = ["--quick", "--no-progress", "--out"]
    lr = checks.main(["lr-scan", *argv, str(tmp_path / "lr"), "--iterations", "4"])
    grad = checks.main(["gradient", *argv, str(tmp_path / "g"), "--steps", "2", "--every", "2"])
    for name, paths in ((checks.LR_SCAN, lr), (checks.GRADCHECK, grad)):
        shutil.copyfile(paths["csv"], img / f"{name}.csv")
        shutil.copyfile(paths["sidecar"], img / f"{name}.json")
    rows = common.read_csv(img / f"{checks.GRADCHECK}.csv")
    assert [r["step"] for r in rows] == [0, 2]
    for r in rows:  # small steps of a smooth map: the difference quotient is the norm
        assert abs(r["fd_rel_error_h=1e-06"]) < 0.01 and r["cosine_tau=0.001"] > 0.999
        assert r["cosine_active-set"] > 0.999
    blocks = checks.blocks(img)
    assert "| 0.03 |" in blocks["sudoku-lr"] and "| 0.1 |" in blocks["sudoku-lr"]
    assert "steps 0–2" in blocks["sudoku-gradcheck"]


def test_sudoku_9x9_quick(tmp_path):
    from examples.sudoku import train

    out = tmp_path / "sudoku9"
    result = train.main(
        ["--size", "9", "--quick", "--out", str(out), "--no-progress", "--no-exact", "--seeds", "0"]
    )
    rows = _check_outputs(result, out, ["lpgd_tau=10"], [0])
    losses = _run(rows, "lpgd_tau=10", 0)
    # The random rules' z grows like 1/ε on the givens; one LPGD step of Adam already
    # pulls the MSE down by more than an order of magnitude.
    assert losses[-1] < 0.1 * losses[0]
    assert "the rule-free guess" in result["summary"] and "(the ceiling)" in result["summary"]


def test_markowitz_quick(tmp_path):
    pytest.importorskip("skfolio")
    from examples.markowitz import train

    out = tmp_path / "markowitz"
    result = train.main(["--quick", "--out", str(out), "--no-progress", "--taus", "0.1", *SEEDS])
    rows = _check_outputs(result, out, ["exact", "lpgd_tau=0.1"], [0, 1])
    for seed in (0, 1):
        for method in ("exact", "lpgd_tau=0.1"):
            losses = _run(rows, method, seed)
            assert losses[-1] < losses[0]
            assert np.all(np.isfinite(_run(rows, method, seed, "heldout_sharpe")))
            assert np.all(_run(rows, method, seed, "gamma") > 0)  # softplus keeps it so
            assert np.all(_run(rows, method, seed, "kappa") > 0)
            assert np.all(_run(rows, method, seed, "heldout_turnover") > 0)
        # Every method of a seed starts from the same random policy and has the same
        # target (the seed's grid-searched plug-in policy), which the start is worse than.
        starts = {m: _run(rows, m, seed)[0] for m in ("exact", "lpgd_tau=0.1")}
        assert starts["exact"] == pytest.approx(starts["lpgd_tau=0.1"])
        targets = {float(r["target"]) for r in rows if r["seed"] == seed}
        assert len(targets) == 1 and targets.pop() < starts["exact"]
    # The seed draws the initial policy, not only the minibatch order.
    assert _run(rows, "exact", 0)[0] != pytest.approx(_run(rows, "exact", 1)[0])


def test_summary_target_and_verdict():
    rows = []
    for method, losses in (("exact", [3.0, 2.0, 1.5]), ("lpgd_tau=1", [3.0, 1.0, 0.5])):
        for seed in (0, 1):
            for i, loss in enumerate(losses):
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "iteration": 10 * i,
                        "wall_time": float(i),
                        "train_loss": loss + 0.1 * seed,
                        "heldout_loss": loss,
                    }
                )
    # GD: mean initial 3.05, mean final 1.55; 80% of its improvement is 1.85.
    assert analysis.gd_improvement_target(rows) == pytest.approx(1.85)
    target = 1.6
    summary = {s["method"]: s for s in analysis.summarize(rows, target)}
    assert summary["exact"]["iters_to_target"] == 20 and summary["exact"]["reached"] == 2
    assert summary["lpgd_tau=1"]["iters_to_target"] == 10
    assert summary["lpgd_tau=1"]["seconds_to_target"] == 1.0
    assert summary["lpgd_tau=1"]["final_train"] == pytest.approx(0.55)
    assert "GD wins" not in analysis.verdict(list(summary.values()))
    partial = analysis.markdown_table(analysis.summarize(rows, 0.52), 0.52)
    # One seed reached it: its iteration, with no spread to report (sample std).
    assert "not reached (0/2)" in partial and "| 20 (1/2 seeds) |" in partial
    swapped = [{**r, "method": "lpgd_tau=1" if r["method"] == "exact" else "exact"} for r in rows]
    assert "GD wins" in analysis.verdict(analysis.summarize(swapped, 1.6))
    # A runner-up is named when its paired difference from the winner is not
    # significant (here: higher on one seed, lower on the other)...
    close = rows + [
        {
            **r,
            "method": "lpgd_tau=3",
            "train_loss": r["train_loss"] + (0.05 if r["seed"] else -0.04),
        }
        for r in rows
        if r["method"] == "lpgd_tau=1"
    ]
    text = analysis.verdict(analysis.summarize(close, 1.6))
    assert "lowest final training loss: LPGD τ=1 (not significantly different: LPGD τ=3)" in text
    assert "GD (exact)" not in text.split("lowest final training loss")[1]
    # ...and not when it is worse by the same amount on every seed, however small.
    worse = rows + [
        {**r, "method": "lpgd_tau=3", "train_loss": r["train_loss"] + 0.01}
        for r in rows
        if r["method"] == "lpgd_tau=1"
    ]
    text = analysis.verdict(analysis.summarize(worse, 1.6))
    assert "lowest final training loss: LPGD τ=1;" in text
