"""The README's main job runs and shows what it claims."""

from cvxlpgd.demo import run_demo


def test_demo_lpgd_learns_the_lp_and_both_learn_the_qp():
    lines = []
    runs = {(r.problem, r.gradient): r for r in run_demo(steps=25, print_fn=lines.append)}
    assert "portfolio   lpgd" in "\n".join(lines)
    assert runs["portfolio", "lpgd"].final_loss < -0.99  # all weight on the best asset
    stuck = runs["portfolio", "exact"]
    assert abs(stuck.final_loss - stuck.losses[0]) < 1e-6  # zero gradient: no progress
    for gradient in ("lpgd", "exact"):
        run = runs["projection", gradient]
        assert run.final_loss < 0.5 * run.losses[0]
    assert abs(runs["projection", "lpgd"].final_loss
               - runs["projection", "exact"].final_loss) < 1e-2
