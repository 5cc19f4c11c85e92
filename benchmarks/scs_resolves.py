"""What SCS's warm-started LPGD re-solves cost against a cold forward, and why.

``python -m benchmarks.scs_resolves`` (about 4 minutes on 2 cores at load 7) solves each problem
with SCS the way the layer's SCS path does — one workspace (one factorization), a cold
forward solve at the layer's tolerance, then the two perturbed problems of a central
LPGD difference (c ± τ·dx, dx standard normal on the variable) warm-started from the
forward solution on the same workspace — and, for comparison, the same re-solves on a
fresh workspace (a new factorization), with looser tolerances, and diffcp's own LPGD
(``diffcp.solve_and_derivative(..., mode="lpgd")``, SCS at the same tolerance). It
reports iterations, SCS's adaptive scale updates (each one refactorizes), and the
gradient's error against LPGD with re-solves by Clarabel at 1e-12; the raw output goes to
``benchmarks/results/scs_resolves.json``, the page's table comes from it.
"""

from __future__ import annotations

import sys
import time

import clarabel
import cvxpy as cp
import numpy as np
import scipy.sparse as sp
import scs

from benchmarks import problems
from cvxlpgd.solvers.scs_backend import scs_settings

#: The layer's SCS settings (eps 1e-7, QDLDL) without verbosity.
SETTINGS = scs_settings({})


def _conic(problem: cp.Problem, variable: cp.Variable):
    """CVXPY's SCS form of ``problem`` and the columns of ``variable``."""
    data, _, _ = problem.get_problem_data(cp.SCS)
    dims = data["dims"]
    cones = {"z": dims.zero, "l": dims.nonneg, "q": list(dims.soc)}
    start = data["param_prob"].var_id_to_col[variable.id]
    P = data.get("P")
    return (
        sp.csc_matrix(data["A"]),
        data["b"],
        data["c"],
        None if P is None else sp.triu(sp.csc_matrix(P)).tocsc(),
        cones,
        slice(start, start + variable.size),
    )


def _clarabel(A, b, c, P, cones):
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    kinds = (
        ([clarabel.ZeroConeT(cones["z"])] if cones["z"] else [])
        + ([clarabel.NonnegativeConeT(cones["l"])] if cones["l"] else [])
        + [clarabel.SecondOrderConeT(q) for q in cones["q"]]
    )
    P = sp.csc_matrix(A.shape[1:] * 2) if P is None else P
    solution = clarabel.DefaultSolver(P, c, A, b, kinds, settings).solve()
    return np.array(solution.x), np.array(solution.z)


def socp_regression(n: int = 300):
    """min ‖Dx − y‖₂ + 0.05‖x‖₁ (a second-order cone), D dense m × n, m = 0.6 n."""
    m = int(0.6 * n)
    rng = np.random.default_rng(5)
    D = rng.standard_normal((m, n)) / np.sqrt(m)
    x = cp.Variable(n, name="x")
    y = cp.Parameter(m, name="y")
    problem = cp.Problem(cp.Minimize(cp.norm2(D @ x - y) + 0.05 * cp.norm1(x)))
    truth = np.where(rng.uniform(size=n) < 0.05, rng.standard_normal(n), 0.0)
    return (
        f"SOCP regression n={n}",
        problem,
        y,
        x,
        lambda seed: D @ truth + 0.05 * (np.random.default_rng(seed).standard_normal(m)),
    )


def lasso(n: int, lam: float = 0.5):
    case = problems.lasso(n=n, m=int(0.6 * n), lam=lam)
    return (
        f"lasso n={n}" + ("" if lam == 0.5 else f" λ={lam}"),
        case.problem,
        case.parameters[0],
        case.outputs[0],
        lambda seed: case.values(1, seed)[0][0],
    )


def measure(problem, parameter, variable, value, tau: float, seed: int) -> dict:
    """One instance: forward, re-solves on the forward's workspace and on fresh ones."""
    parameter.value = value
    A, b, c, P, cones, columns = _conic(problem, variable)
    dx = np.zeros(c.size)
    dx[columns] = np.random.default_rng(100 + seed).standard_normal(columns.stop - columns.start)
    data = {"A": A, "b": b, "c": c} | ({} if P is None else {"P": P})
    reference = [_clarabel(A, b, c + sign * tau * dx, P, cones) for sign in (1, -1)]
    truth = np.concatenate(
        [
            (reference[0][0] - reference[1][0]) / (2 * tau),
            -(reference[0][1] - reference[1][1]) / (2 * tau),
        ]
    )

    def sides(fresh: bool, settings: dict):
        tic = time.perf_counter()
        workspace = scs.SCS(data, cones, **settings)
        forward = workspace.solve(warm_start=False)
        forward_time = time.perf_counter() - tic
        tic = time.perf_counter()
        out = []
        for sign in (1, -1):
            target = scs.SCS(data, cones, **settings) if fresh else workspace
            target.update(c=c + sign * tau * dx)
            out.append(
                target.solve(warm_start=True, x=forward["x"], y=forward["y"], s=forward["s"])
            )
        backward_time = time.perf_counter() - tic
        gradient = np.concatenate(
            [(out[0]["x"] - out[1]["x"]) / (2 * tau), -(out[0]["y"] - out[1]["y"]) / (2 * tau)]
        )
        return {
            "forward_iterations": int(forward["info"]["iter"]),
            "forward_scale_updates": int(forward["info"]["scale_updates"]),
            "iterations": [int(r["info"]["iter"]) for r in out],
            "scale_updates": [int(r["info"]["scale_updates"]) for r in out],
            "forward_s": forward_time,
            "backward_s": backward_time,
            "error": float(np.linalg.norm(gradient - truth) / np.linalg.norm(truth)),
        }

    def diffcp_lpgd():
        """diffcp's own LPGD at the same tolerance: a new SCS workspace per side."""
        import diffcp

        tic = time.perf_counter()
        _, _, _, _, adjoint = diffcp.solve_and_derivative(
            A,
            b,
            c,
            cones,
            P=P,
            mode="lpgd",
            solve_method="SCS",
            **{k: SETTINGS[k] for k in ("eps_abs", "eps_rel", "max_iters")},
        )
        forward_time = time.perf_counter() - tic
        tic = time.perf_counter()
        _, db, dc = adjoint(dx, np.zeros(b.size), np.zeros(b.size), tau=tau, rho=0.0)
        backward_time = time.perf_counter() - tic
        gradient = np.concatenate([dc, db])
        return {
            "forward_s": forward_time,
            "backward_s": backward_time,
            "error": float(np.linalg.norm(gradient - truth) / np.linalg.norm(truth)),
        }

    loose = {**SETTINGS, "eps_abs": 1e-5, "eps_rel": 1e-5}
    return {
        "tau": tau,
        "seed": seed,
        "perturbation": float(tau * np.abs(dx).max()),
        "cost": float(np.abs(c).max()),
        "same": sides(False, SETTINGS),
        "fresh": sides(True, SETTINGS),
        "loose": sides(False, loose),
        "diffcp": diffcp_lpgd(),
    }


def instances():
    """(problem, τ, seeds) measured. (The small lasso's perturbed problems are unbounded
    from τ‖dx‖∞ > λ on: x has directions in the null space of its 40 × 60 D.)"""
    small = lasso(60, lam=0.05)
    return [
        (lasso(1000), 0.01, (0, 1, 2, 3)),
        (lasso(300), 0.01, (0, 1, 2)),
        (small, 0.01, (0,)),
        (small, 0.001, (0,)),
        (socp_regression(300), 0.01, (0, 1, 2)),
    ]


def run(provenance: dict) -> dict:
    rows = []
    for (name, problem, parameter, variable, values), tau, seeds in instances():
        for seed in seeds:
            print(f"# {name}, tau={tau}, seed {seed} ...", file=sys.stderr, flush=True)
            rows.append(
                {"problem": name, **measure(problem, parameter, variable, values(seed), tau, seed)}
            )
    return {**provenance, "kind": "scs_resolves", "rows": rows}


def table(record: dict) -> str:
    """Iterations (scale updates) of the forward and of each side, per instance."""
    lines = [
        "| problem, τ, seed | τ‖dx‖∞ / ‖c‖∞ | forward | re-solves on its workspace | "
        "backward / forward time | fresh workspaces | eps 1e-5 | gradient error: "
        "same / fresh / 1e-5 | diffcp's LPGD: backward time / ours, error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def its(result, key="iterations", updates="scale_updates"):
        return " + ".join(f"{i} ({u})" for i, u in zip(result[key], result[updates]))

    for r in record["rows"]:
        same, fresh, loose = r["same"], r["fresh"], r["loose"]
        lines.append(
            f"| {r['problem']}, {r['tau']:g}, {r['seed']} | {r['perturbation'] / r['cost']:.2f} | "
            f"{same['forward_iterations']} ({same['forward_scale_updates']}) | {its(same)} | "
            f"{same['backward_s'] / same['forward_s']:.2f} | {its(fresh)} | {its(loose)} | "
            f"{same['error']:.0e} / {fresh['error']:.0e} / {loose['error']:.0e} | "
            f"{r['diffcp']['backward_s'] / same['backward_s']:.1f}, "
            f"{r['diffcp']['error']:.0e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    import json

    from benchmarks.results_io import RESULTS, provenance, write_json

    argv = list(sys.argv[1:] if argv is None else argv)
    record = run(
        {**provenance(argv), "command": " ".join(["python -m benchmarks.scs_resolves", *argv])}
    )
    write_json(record, RESULTS / "scs_resolves.json")
    print(table(json.loads((RESULTS / "scs_resolves.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
