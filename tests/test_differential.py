"""A seeded subset of the differential campaign (benchmarks/differential.py) with its
targets: no SolverError where CVXPY solves, deviation ≤ 1e-5 from CVXPY + Clarabel
(tight), no silent deviation > 1e-4; and the assignment batch that made Moreau fail."""

import json

import numpy as np
import pytest

from benchmarks import (
    differential,
    differential_campaign,
    differential_families,
    differential_report,
)

SUBSET = ["box_lp", "qp", "optnet", "socp", "sdp", "entropy", "power"]


def assert_targets(stats):
    failures = differential_report.failures_text([stats])
    assert stats["compared"] > 0, stats
    assert stats["solver_errors"] == 0, failures
    assert max(stats["max_dev_x"], stats["max_dev_dual"]) <= differential_campaign.TARGET, failures
    assert stats["silent"] == 0, failures


@pytest.mark.parametrize("name", SUBSET)
def test_family_meets_the_targets(name):
    # One LPGD and one exact batch of 16 elements.
    stats = differential_campaign.run_family(name, batches=2, seed=0, batch_size=16, grad_samples=0)
    assert stats["elements"] == 32
    assert_targets(stats)


def test_regression_assignment_batch_forward_and_lpgd_backward():
    """C = default_rng(0).standard_normal((64, 10, 10)): Moreau returned 'failed' at batch
    index 34. With the defaults, forward and LPGD backward must not raise, and X must
    match CVXPY + Clarabel to 1e-5."""
    family = differential_families.assignment()
    values = differential_families.regression_assignment_batch()
    layer = differential_campaign.make_layer(family)
    result = differential_campaign.run_batch(layer, values, "lpgd", np.random.default_rng(0))
    assert result["error"] is None, result["error"]
    for i in range(64):
        reference = differential_campaign.reference_solve(family, [values[0][i]])
        assert reference is not None
        dev_x, dual_gap = differential_families.deviations(
            family, [values[0][i]], result["outputs"][i], reference
        )
        assert dev_x <= 1e-5, (i, dev_x, result["solvers"][i])
        assert dual_gap <= 1e-5, (i, dual_gap)


def test_dual_optimality_check_holds_for_the_reference_duals():
    """The degenerate LPs' dual check is zero at CVXPY's own duals (signs and order)."""
    rng = np.random.default_rng(1)
    for make in (
        differential_families.assignment,
        differential_families.transport,
        differential_families.shortest_path,
    ):
        family = make()
        element = [v[0] for v in family.sample(rng, 1)]
        reference = differential_campaign.reference_solve(family, element)
        dev_x, gap = differential_families.deviations(family, element, reference[0], reference)
        assert dev_x == 0.0 and gap <= 1e-8, (family.name, gap)


def test_report_and_json(tmp_path):
    out = tmp_path / "differential.txt"
    differential.main(["--scale", "0.01", "--families", "qp", "--out", str(out)])
    report = out.read_text()
    assert "| family | elements |" in report and "Verdict:" in report
    data = json.loads(out.with_suffix(".json").read_text())
    assert [f["family"] for f in data["families"]] == ["qp"]
    assert data["families"][0]["elements"] == differential_campaign.BATCH
