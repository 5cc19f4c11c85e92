"""The benchmark harness runs and reports what it claims (no timing assertions)."""

from pathlib import Path

from benchmarks import run


def test_quick_run_prints_results_deviations_and_targets(capsys):
    assert run.main(["--quick"]) == 0
    report = capsys.readouterr().out
    for heading in ("## Machine", "## Results", "## Targets"):
        assert heading in report
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    libraries = {line.split(" | ")[1] for line in rows}
    assert {"cvxlpgd (MOREAU)", "cvxpylayers + Moreau (MOREAU)", "cvxlpgd SCS (SCS)"} <= libraries
    # Our answers agree with the reference solves (the deviation column).
    for line in rows:
        cells = line.split(" | ")
        if cells[1].startswith("cvxlpgd"):
            assert float(cells[5].split()[0]) < 1e-4, line
    assert "fwd+LPGD / cvxpylayers+Moreau fwd+bwd ≤ 0.5" in report
    assert "lasso" in report and "default / SCS path ≤ 1.05" in report


def test_previous_engine_peak_measures_a_checkout():
    here = str(Path(__file__).resolve().parent.parent)
    peak = run.previous_engine_peak(here, batch_size=8)
    assert 10_000 < peak < 50 * 2**20


def test_cuda_check_says_what_it_could_not_check(capsys):
    from benchmarks import cuda_check

    assert cuda_check.main([]) == 0
    out = capsys.readouterr().out
    # This machine has no GPU; on one that has, the script prints its comparison table.
    assert "nothing to check" in out or "| problem |" in out
