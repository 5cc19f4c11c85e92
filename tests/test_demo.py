"""The README's main job runs and shows what it claims, solver statistics included."""

import warnings

import cvxlpgd
from cvxlpgd.demo import run_demo


def test_demo_lpgd_learns_the_lp_and_both_learn_the_qp():
    lines = []
    with warnings.catch_warnings():
        # The demo's τ are chosen for its problems: no zero-gradient warning may appear.
        warnings.simplefilter("error", cvxlpgd.ZeroGradientWarning)
        runs = {(r.problem, r.gradient): r for r in run_demo(steps=25, print_fn=lines.append)}
    assert "portfolio   lpgd" in "\n".join(lines)
    assert runs["portfolio", "lpgd"].final_loss < -0.99  # all weight on the best asset
    stuck = runs["portfolio", "exact"]
    assert abs(stuck.final_loss - stuck.losses[0]) < 1e-6  # zero gradient: no progress
    for gradient in ("lpgd", "exact"):
        run = runs["projection", gradient]
        assert run.final_loss < 0.5 * run.losses[0]
    assert (
        abs(runs["projection", "lpgd"].final_loss - runs["projection", "exact"].final_loss) < 1e-2
    )


def test_demo_reports_solver_work_per_run():
    lines = []
    runs = {(r.problem, r.gradient): r for r in run_demo(steps=3, print_fn=lines.append)}
    assert "fwd solves" in lines[0] and "bwd solves" in lines[0] and "it/solve" in lines[0]
    for (problem, gradient), run in runs.items():
        batch = 8 if problem == "projection" else 1
        assert run.solver["forward_solves"] == 3 * batch
        if gradient == "lpgd":  # central differences: two re-solves per element and step
            assert run.solver["backward_solves"] == 2 * 3 * batch
            assert run.iterations_per_solve("forward") > 0
            # Answered from the forward's active set (no iterations) or re-solved; the
            # demo's problems are small enough that Moreau re-solves them by default.
            predicted = run.solver["backward_predicted"]
            assert 0 <= predicted <= run.solver["backward_solves"]
            per_solve = run.iterations_per_solve("backward")
            assert (per_solve is None) is (predicted == run.solver["backward_solves"])
            assert per_solve is None or per_solve > 0
        else:  # diffcp's adjoint at the forward solution: no re-solves
            assert run.solver["backward_solves"] == 0
            assert run.iterations_per_solve("forward") > 0
    row = next(line for line in lines if line.startswith("projection  exact"))
    assert row.split()[-2:] == ["0", "-"]
