"""The differential campaign's report: the per-family table, the verdict line against
the targets, and the worst failures (:mod:`benchmarks.differential`).
"""

from __future__ import annotations

from benchmarks.differential_campaign import SILENT, TARGET


def table(results: list[dict]) -> str:
    lines = [
        "| family | elements | ref-unsolved | SolverErrors | fallbacks | max dev x | "
        "max dev duals | silent > 1e-4 | > 1e-5 | grad rel err (n) | warned batches | "
        "layer s |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for s in results:
        fallbacks = ", ".join(f"{k} {v}" for k, v in sorted(s["fallbacks"].items())) or "0"
        if s["backward_fallbacks"]:
            fallbacks += "; LPGD re-solves: " + ", ".join(
                f"{k} {v}" for k, v in sorted(s["backward_fallbacks"].items())
            )
        dual = f"{s['max_dev_dual']:.1e}" + (" (opt gap)" if s["dual_mode"] == "optimality" else "")
        grad = (
            "—" if s["grad_rel_err"] is None else (f"{s['grad_rel_err']:.1e} ({s['grad_checks']})")
        )
        warned = ", ".join(f"{k} {v}" for k, v in sorted(s["warned_batches"].items())) or "—"
        errors = str(s["solver_errors"]) + (
            f" (+{s['excused_errors']} excused)" if s["excused_errors"] else ""
        )
        lines.append(
            f"| {s['family']} | {s['elements']} | {s['reference_unsolved']} | "
            f"{errors} | {fallbacks} | {s['max_dev_x']:.1e} | {dual} | "
            f"{s['silent']} | {s['over_target']} | {grad} | {warned} | "
            f"{s['layer_seconds']:.0f} |"
        )
    return "\n".join(lines)


def verdict(results: list[dict]) -> tuple[bool, str]:
    errors = sum(s["solver_errors"] for s in results)
    dev = max(max(s["max_dev_x"], s["max_dev_dual"]) for s in results)
    silent = sum(s["silent"] for s in results)
    ok = errors == 0 and dev <= TARGET and silent == 0
    text = (
        f"Verdict: {'PASS' if ok else 'FAIL'} — SolverErrors where CVXPY solves: {errors} "
        f"(target 0); max deviation {dev:.1e} (target ≤ {TARGET:.0e}); silent deviations "
        f"> {SILENT:.0e}: {silent} (target 0)."
    )
    return ok, text


def failures_text(results: list[dict], per_family: int = 5) -> str:
    lines = []
    for s in results:
        errors = [f for f in s["failures"] if "error" in f]
        worst = sorted(
            (f for f in s["failures"] if "error" not in f),
            key=lambda f: -max(f["dev_x"], f["dev_dual"]),
        )
        for f in errors[:per_family]:
            lines.append(
                f"- {s['family']} batch {f['batch']} ({f['gradient']}), element "
                f"{f['element']}, {f['stage']}: {f['error']}"
            )
        for f in worst[:per_family]:
            lines.append(
                f"- {s['family']} batch {f['batch']} ({f['gradient']}), element "
                f"{f['element']}: dev x {f['dev_x']:.1e}, duals {f['dev_dual']:.1e}, "
                f"solver {f['solver']}, "
                f"{'warned' if f['warned'] else 'no warning'}"
            )
    return "\n".join(lines) or "(none)"
