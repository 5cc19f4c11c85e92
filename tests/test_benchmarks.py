"""The benchmark harness runs, stores what it measured, and the page shows the stored run
(no timing assertions)."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import measure, page, report, results_io, run, scaling

LIBRARIES = {
    "cvxlpgd",
    "cvxlpgd exact",
    "cvxlpgd SCS",
    "cvxpylayers + Moreau",
    "cvxpylayers + diffcp",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "quick.json"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run.main(["--quick", "--json", str(path)]) == 0
    return out.getvalue(), json.loads(path.read_text()), path


def test_quick_run_prints_results_ratios_targets_and_overhead(quick_run):
    text = quick_run[0]
    for heading in (
        "## Machine",
        "## Results",
        "## Ratios to cvxpylayers + Moreau",
        "## Targets",
        "## Per-call overhead",
    ):
        assert heading in text
    rows = [
        line.split(" | ")
        for line in text.split("## Results")[1].split("## Ratios")[0].splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    assert {cells[1].split(" (")[0] for cells in rows} == LIBRARIES
    for cells in rows:  # our answers agree with the reference solves (the deviation column)
        if cells[1].startswith("cvxlpgd"):
            assert float(cells[5].split()[0]) < 1e-4, cells
    for target in (
        "OptNet QP n=5 m=4 B=4: cvxlpgd (LPGD) / cvxpylayers + Moreau",
        "lasso n=60 m=40 B=1: LPGD backward / its own forward",
        "cvxlpgd exact / cvxpylayers + Moreau",
        "cvxlpgd's answers, max deviation",
    ):
        assert target in text


def test_a_run_stores_its_raw_output(quick_run):
    _, record, path = quick_run
    assert record["schema"] == results_io.SCHEMA and record["kind"] == "table"
    assert record["command"] == f"python -m benchmarks.run --quick --json {path}"
    assert len(record["commit"]) == 40 and isinstance(record["dirty"], bool)
    machine = record["machine"]
    assert machine["cpus"] >= 1 and machine["torch_threads"] == 1 and machine["versions"]
    assert len(record["cases"]) == 5
    for case in record["cases"]:
        for row in case["rows"]:
            assert len(row["forward_s"]) == len(row["backward_s"]) == record["repeats"]
            assert row["deviation"] >= 0
    assert {r["batch_size"] for r in record["overhead"]["rows"]} == {1, 1024}
    # The printed report is the rendering of the stored record.
    assert report.results_table(record) in quick_run[0]


def test_the_page_shows_the_stored_runs():
    """docs/benchmarks.md's generated blocks are what `python -m benchmarks.run --page`
    renders from benchmarks/results/benchmarks.json and scaling.json."""
    shown = page.blocks(page.PAGE.read_text(encoding="utf-8"))
    expected = page.stored_sections()
    assert set(expected) <= set(shown)
    for name, body in expected.items():
        assert shown[name] == body, name
    stored = results_io.load(results_io.TABLE_JSON)
    assert stored is not None and not stored["quick"]
    assert results_io.SCALING_FIGURE.exists()


def test_replacing_blocks_keeps_the_rest_of_the_page():
    text = (
        "intro\n"
        + page._BEGIN.format(name="a")
        + "\nold\n"
        + page._END.format(name="a")
        + "\nmiddle\n"
        + page._BEGIN.format(name="b")
        + "\nkept\n"
        + page._END.format(name="b")
        + "\nend\n"
    )
    new = page.replace_blocks(text, {"a": "| new |"})
    assert page.blocks(new) == {"a": "| new |", "b": "kept"}
    assert new.startswith("intro\n") and "\nmiddle\n" in new and new.endswith("\nend\n")


def _row(library, forward, backward, deviation=1e-8, gradient="lpgd"):
    return {
        "library": library,
        "gradient": gradient,
        "solver": "",
        "forward_s": [forward],
        "backward_s": [backward],
        "deviation": deviation,
        "peak_bytes": None,
    }


def test_targets_are_judged_against_the_issue_limits():
    record = {
        "cases": [
            {
                "name": "OptNet QP",
                "family": "optnet",
                "rows": [
                    _row("cvxlpgd", 1.0, 1.0),
                    _row("cvxlpgd exact", 2.0, 2.0, gradient="exact"),
                    _row("cvxpylayers + Moreau", 2.0, 2.0, gradient="exact"),
                ],
            },
            {
                "name": "lasso",
                "family": "lasso",
                "rows": [
                    _row("cvxlpgd", 1.0, 0.6, deviation=2e-5),
                    _row("cvxpylayers + Moreau", 5.0, 2.0, gradient="exact"),
                ],
            },
        ]
    }
    verdicts = {
        name: (round(value, 6), value <= limit) for name, value, limit in report.target_rows(record)
    }
    assert verdicts["OptNet QP: cvxlpgd (LPGD) / cvxpylayers + Moreau"] == (0.5, True)
    assert verdicts["OptNet QP: cvxlpgd exact / cvxpylayers + Moreau"] == (1.0, True)
    assert verdicts["lasso: LPGD backward / its own forward"] == (0.6, False)
    assert verdicts["lasso: cvxlpgd's answers, max deviation"] == (2e-5, False)
    assert "| **no** |" in report.targets_table(record)


def test_scaling_tables_and_figure_render_from_a_record(tmp_path):
    points = [
        {
            "library": lib,
            "batch_size": b,
            key: v,
            "forward_s": [1e-3 * b],
            "backward_s": [1e-3 * b],
            "deviation": 1e-9,
        }
        for lib in ("cvxlpgd", "cvxpylayers + Moreau")
        for key, v, b in (("batch_size", 1, 1), ("batch_size", 8, 8))
    ]
    sizes = [{**p, "n": p["batch_size"] * 10, "batch_size": 2} for p in points]
    record = {
        "batch": points,
        "size": sizes,
        "batch_problem": "QP",
        "size_problem": "QP",
        "command": "python -m benchmarks.run --scaling",
        "commit": "0" * 40,
        "dirty": False,
        "date": "today",
        "repeats": 1,
        "machine": {
            "cpu": "cpu",
            "cpus": 1,
            "python": "3",
            "system": "Linux",
            "versions": {},
            "torch_threads": 1,
        },
    }
    table = report.scaling_table(record, "batch")
    assert table.splitlines()[2] == "| 1 | 2 000 | 2 000 |"
    assert report.scaling_table(record, "size").splitlines()[2].startswith("| 10 |")
    scaling.figure(record, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


def test_previous_engine_peak_measures_a_checkout():
    here = str(Path(__file__).resolve().parent.parent)
    peak = measure.previous_engine_peak(here, batch_size=8)
    assert 10_000 < peak < 50 * 2**20


def test_cuda_check_says_what_it_could_not_check(capsys):
    from benchmarks import cuda_check

    assert cuda_check.main([]) == 0
    out = capsys.readouterr().out
    # This machine has no GPU; on one that has, the script prints its comparison table.
    assert "nothing to check" in out or "| problem |" in out


def test_stored_exact_accuracy_supports_the_page():
    """docs/benchmarks.md#exact-accuracy: on every QP family the active set's derivative
    is closer to the finite differences than Moreau's, at the median and the maximum."""
    from benchmarks import exact_accuracy

    record = results_io.load(exact_accuracy.JSON)
    assert record is not None
    by = {(r["family"], r["backend"]): r for r in record["rows"]}
    qp_families = {family for family, backend in by if backend == "moreau"}
    assert len(qp_families) == 3
    for family in qp_families:
        ours, theirs = by[(family, "active-set")], by[(family, "moreau")]
        assert ours["median"] < theirs["median"] and ours["max"] < theirs["max"], family


def test_free_backward_column_is_the_forward_over_the_reference_total():
    """The targets table's "with a free backward" column: the layer's forward median over
    the reference's forward + backward medians, recomputed from a stored case."""
    record = results_io.load(results_io.TABLE_JSON)
    assert record is not None
    floors = report.forward_floors(record)
    case = record["cases"][0]
    rows = {r["library"]: r for r in case["rows"]}
    reference = rows[report.REFERENCE]
    expected = np.median(rows["cvxlpgd"]["forward_s"]) / (
        np.median(reference["forward_s"]) + np.median(reference["backward_s"])
    )
    name = f"{case['name']}: cvxlpgd (LPGD) / cvxpylayers + Moreau"
    assert abs(floors[name] - expected) < 1e-12
    assert floors[name] < dict((n, v) for n, v, _ in report.target_rows(record))[name]
