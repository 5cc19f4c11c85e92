"""The command line: ``python -m cvxlpgd {demo,check,bench,experiment}``.

The benchmark and experiment modules are replaced by stand-ins (their own tests run
them): these tests check the dispatch, the argument pass-through and the messages.
"""

import subprocess
import sys
import types

import pytest

from cvxlpgd import __main__ as cli


def fake_module(monkeypatch, name, result=None):
    """Install a stand-in ``name`` whose ``main(argv)`` records its arguments."""
    calls = []
    module = types.ModuleType(name)

    def main(argv=None):
        calls.append(list(argv))
        return result

    module.main = main
    monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_check_prints_versions_solvers_and_threads(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    for name in (
        "cvxlpgd 0.1.0",
        "cvxpy",
        "diffcp",
        "torch",
        "numpy",
        "scipy",
        "scs",
        "clarabel",
        "ecos",
        "moreau",
        "cores:",
        "torch threads:",
    ):
        assert name in out, name
    for solver in ("MOREAU", "SCS", "CLARABEL", "ECOS"):
        assert f"  {solver:<10} ok " in out, solver
    assert "moreau: installed, devices: cpu" in out


def test_check_without_moreau_says_so_and_passes(capsys, monkeypatch):
    import cvxlpgd.solvers

    monkeypatch.setattr(cvxlpgd.solvers, "moreau_available", lambda: False)
    lines = []
    assert cli.run_check(print_fn=lines.append) is True
    assert any(line.startswith("moreau: not installed; solver='auto' uses SCS") for line in lines)
    assert "  MOREAU     absent  not installed (optional)" in lines


def test_solver_check_reports_a_broken_solver(monkeypatch):
    import cvxlpgd.solvers

    def broken(*args, **kwargs):
        raise RuntimeError("library not loaded")

    monkeypatch.setattr(cvxlpgd.solvers, "solve_cone_program", broken)
    ok, detail = cli.solver_check("SCS")
    assert not ok and "RuntimeError: library not loaded" in detail
    assert cli.run_check(print_fn=lambda line: None) is False


def test_demo_prints_the_table_with_solver_statistics(capsys):
    assert cli.main(["demo", "--steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["problem", "gradient", "initial", "loss", "final"]
    assert "fwd solves" in lines[0] and "bwd solves" in lines[0]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:5]}
    assert rows["portfolio", "lpgd"][5:] == [
        "2",
        rows["portfolio", "lpgd"][6],
        "4",
        rows["portfolio", "lpgd"][8],
    ]
    assert rows["projection", "exact"][7:] == ["0", "-"]  # exact: no backward re-solves
    assert cli.main(["demo", "--steps", "0"]) == 2


@pytest.mark.parametrize("name, module", sorted(cli.EXPERIMENTS.items()))
def test_experiment_dispatches_to_the_module_main_with_the_remaining_arguments(
    monkeypatch, name, module
):
    calls = fake_module(monkeypatch, module, result={"loss": 1.0})
    assert cli.main(["experiment", name, "--quick", "--seeds", "0", "1"]) == 0
    assert calls == [["--quick", "--seeds", "0", "1"]]


def test_bench_passes_everything_on_including_help_and_returns_its_status(monkeypatch):
    calls = fake_module(monkeypatch, cli.BENCHMARKS, result=3)
    assert cli.main(["bench", "--quick", "--help"]) == 3
    assert calls == [["--quick", "--help"]]


def test_missing_checkout_module_fails_with_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(cli.EXPERIMENTS, "sudoku", "examples.no_such_experiment_here")
    assert cli.main(["experiment", "sudoku"]) == 2
    err = capsys.readouterr().err
    assert "examples.no_such_experiment_here is not available" in err
    assert "source checkout" in err and "pip install -e ." in err


def test_a_missing_dependency_of_a_checkout_module_is_not_disguised(monkeypatch, tmp_path):
    package = tmp_path / "cvxlpgd_cli_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "run.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed"):
        cli.load_checkout_module("cvxlpgd_cli_probe.run")


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["experiment", "chess"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2
    assert "demo" in capsys.readouterr().err


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "cvxlpgd", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    for command in ("demo", "check", "bench", "experiment"):
        assert command in done.stdout
