"""The 4×4 Sudoku side checks of docs/experiments.md: GD's learning rate and its gradient.

Run ``python -m examples.sudoku.checks lr-scan`` or ``python -m examples.sudoku.checks
gradient`` (``--help`` lists options); with ``--store`` the rows and their sidecar are
kept as ``docs/img/sudoku_lr_scan.{csv,json}`` or ``docs/img/sudoku_gradcheck.{csv,json}``,
from which ``python -m examples.analysis --page`` renders the page's blocks
(:func:`blocks`). Both use the main run's data, layer and training loop
(:class:`examples.sudoku.train.SudokuTask`).

``lr-scan``
    GD and LPGD τ = 10 from seed 0's random rules, 150 iterations (15 epochs of batches
    of 20) at Adam learning rates 0.01, 0.03 and 0.1; every evaluation row, with its
    ``lr``.
``gradient``
    Along GD's own trajectory (seed 0, lr 0.03, the main run's protocol), at every
    ``--every``-th step up to ``--steps``, on that step's minibatch and its summed MSE
    f(θ), θ = (A, log z₀): the exact gradient g, the central difference
    ``(f(θ + h·u) − f(θ − h·u)) / 2h`` along ``u = g/‖g‖`` at each step ``--h`` (it
    tends to ‖g‖ as h → 0 when g is right), and the cosine between LPGD's gradient at
    each ``--taus`` and g.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from examples import common, stored
from examples.sudoku import train

LR_SCAN = "sudoku_lr_scan"
GRADCHECK = "sudoku_gradcheck"
LRS = (0.01, 0.03, 0.1)
CHECK_TAUS = (1e-3, 0.1, 10.0)
FD_STEPS = (1e-4, 1e-6)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.sudoku.checks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("check", choices=("lr-scan", "gradient"))
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="lr-scan")
    parser.add_argument("--iterations", type=int, default=150, help="lr-scan: per run")
    parser.add_argument("--steps", type=int, default=200, help="gradient: last step checked")
    parser.add_argument("--every", type=int, default=10, help="gradient: check every k steps")
    parser.add_argument("--taus", type=float, nargs="+", default=list(CHECK_TAUS))
    parser.add_argument(
        "--h", type=float, nargs="+", default=list(FD_STEPS), help="gradient: difference steps"
    )
    parser.add_argument(
        "--exact-backend",
        default="diffcp",
        help="gradient: GD's exact backend (default diffcp, the one of the stored 4×4 run)",
    )
    parser.add_argument(
        "--compare-backend",
        default="active-set",
        help="gradient: another exact backend whose gradient is compared with GD's ('' for none)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for the tests")
    parser.add_argument("--no-progress", action="store_true")
    stored.add_store_option(parser, f"{LR_SCAN} or {GRADCHECK}")
    return parser


def _task_args(args, epochs: int, lr: float) -> argparse.Namespace:
    argv = ["--seeds", str(args.seed), "--epochs", str(epochs), "--lr", str(lr)]
    return train.parse_args(argv + (["--quick"] if args.quick else []))


def lr_scan(args) -> list[dict]:
    """Rows of GD and LPGD τ = 10 at each learning rate (``lr`` column added)."""
    base = _task_args(args, 1, args.lrs[0])
    per_epoch = -(-base.train // base.batch)
    epochs = -(-args.iterations // per_epoch)
    task = train.SudokuTask(_task_args(args, epochs, args.lrs[0]))
    methods = common.make_methods([10.0])
    task.warm_up(methods)
    rows = []
    for lr in args.lrs:
        task.args = _task_args(args, epochs, lr)
        for row in common.run_grid(
            "sudoku",
            methods,
            [args.seed],
            task.run,
            iterations_per_run=epochs * per_epoch,
            progress=not args.no_progress,
        ):
            rows.append({**row, "lr": lr})
    return rows


def gradient_check(args) -> list[dict]:
    """One row per checked step of GD's trajectory (see the module docstring)."""
    task_args = _task_args(args, 1, 0.03)
    task_args.epochs = -(-(args.steps + 1) // -(-task_args.train // task_args.batch))
    task_args.exact_backend = args.exact_backend
    task = train.SudokuTask(task_args)
    other = task.make_layer(args.compare_backend) if args.compare_backend else None
    rows = []

    def batch_loss(idx, A, log_z0, layer=None, **options) -> torch.Tensor:
        (z,) = (layer or task.layer)(task.p[idx], A, A @ log_z0.exp(), **options)
        return task.per_puzzle_loss(z, task.z_true[idx]).sum()

    def gradient(idx, A, log_z0, **options) -> np.ndarray:
        A, log_z0 = A.detach().clone().requires_grad_(), log_z0.detach().clone().requires_grad_()
        batch_loss(idx, A, log_z0, **options).backward()
        return np.concatenate([A.grad.numpy().ravel(), log_z0.grad.numpy().ravel()])

    def check(step, idx, A, log_z0):
        if step > args.steps or step % args.every:
            return
        g = gradient(idx, A, log_z0, gradient="exact")
        norm = float(np.linalg.norm(g))
        u = torch.from_numpy(g / norm)
        n_a = A.numel()

        def along(t: float) -> float:
            with torch.no_grad():
                shift = t * u
                return float(
                    batch_loss(idx, A + shift[:n_a].reshape(A.shape), log_z0 + shift[n_a:])
                )

        row = {"step": step, "batch_loss": along(0.0), "exact_norm": norm}
        for h in args.h:
            slope = (along(h) - along(-h)) / (2 * h)
            row[f"fd_slope_h={h:g}"] = slope
            row[f"fd_rel_error_h={h:g}"] = slope / norm - 1.0
        if other is not None:
            g2 = gradient(idx, A, log_z0, layer=other, gradient="exact")
            row[f"norm_ratio_{args.compare_backend}"] = float(np.linalg.norm(g2)) / norm
            row[f"cosine_{args.compare_backend}"] = float(g2 @ g / (np.linalg.norm(g2) * norm))
        for tau in args.taus:
            lpgd = gradient(idx, A, log_z0, gradient="lpgd", tau=tau)
            row[f"lpgd_norm_tau={tau:g}"] = float(np.linalg.norm(lpgd))
            row[f"cosine_tau={tau:g}"] = float(lpgd @ g / (np.linalg.norm(lpgd) * norm))
        rows.append(row)

    log = common.RunLogger("sudoku", common.Method("exact"), args.seed)
    task.run(common.Method("exact"), args.seed, log, on_step=check)
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    """Run one check; returns the paths written (and stored, with ``--store``)."""
    state = stored.start("examples.sudoku.checks", argv)
    args = _parser().parse_args(argv)
    name = LR_SCAN if args.check == "lr-scan" else GRADCHECK
    args.out = args.out or common.default_out(name)
    rows = (lr_scan if args.check == "lr-scan" else gradient_check)(args)
    out = Path(args.out)
    paths = {"csv": common.write_csv(rows, out / "results.csv")}
    paths["sidecar"] = stored.write_sidecar(state, args, out, experiment=name)
    if args.store:
        for suffix, source in (("csv", "results.csv"), ("json", "results.json")):
            shutil.copyfile(out / source, stored.IMG / f"{name}.{suffix}")
    print(paths)
    return paths


# ------------------------------------------------------------------ the page


def _span(values, spec: str = ".3g") -> str:
    low, high = format(float(np.min(values)), spec), format(float(np.max(values)), spec)
    return low if low == high else f"{low}–{high}"


def lr_scan_block(rows: Sequence[dict], img: Path) -> str:
    """The ``sudoku-lr`` block: final training MSE per learning rate and method."""
    final = {}
    for r in rows:
        key = (float(r["lr"]), r["method"])
        if key not in final or int(r["iteration"]) > final[key][0]:
            final[key] = (int(r["iteration"]), float(r["train_loss"]))
    lrs = sorted({lr for lr, _ in final})
    iterations = max(it for it, _ in final.values())
    lines = [
        f"Final training MSE after {iterations} iterations, seed "
        f"{rows[0]['seed']}, otherwise the protocol above:",
        "",
        "| Adam lr | GD (exact) | LPGD τ=10 |",
        "|---|---|---|",
    ]
    for lr in lrs:
        lines.append(
            f"| {lr:g} | {final[lr, 'exact'][1]:.3g} | {final[lr, 'lpgd_tau=10'][1]:.3g} |"
        )
    best = {m: min(lrs, key=lambda lr: final[lr, m][1]) for m in ("exact", "lpgd_tau=10")}
    lines += [
        "",
        f"GD's lowest of the three is at lr {best['exact']:g}, LPGD τ=10's at lr "
        f"{best['lpgd_tau=10']:g}; the main run uses lr 0.03 for every method.",
        "",
        stored.provenance_line(img, LR_SCAN),
    ]
    return "\n".join(lines)


def gradcheck_block(rows: Sequence[dict], img: Path) -> str:
    """The ``sudoku-gradcheck`` block: the difference check and LPGD's cosines."""
    record = json.loads((Path(img) / f"{GRADCHECK}.json").read_text())
    steps = [int(r["step"]) for r in rows]
    hs = sorted(float(k.split("=", 1)[1]) for k in rows[0] if k.startswith("fd_slope_h="))
    parts = []
    for h in hs:
        errors = np.array([abs(float(r[f"fd_rel_error_h={h:g}"])) for r in rows])
        worst = int(np.argmax(errors))
        parts.append(
            f"h = {h:g}: median {100 * np.median(errors):.2g}%, largest "
            f"{100 * errors[worst]:.2g}% (step {steps[worst]}), at the other steps at most "
            f"{100 * np.max(np.delete(errors, worst)):.2g}%"
        )
    taus = [k.split("=", 1)[1] for k in rows[0] if k.startswith("cosine_tau=")]
    cosines = "; ".join(
        f"τ = {t}: {_span([float(r[f'cosine_tau={t}']) for r in rows], '.4g')} (median "
        f"{np.median([float(r[f'cosine_tau={t}']) for r in rows]):.4g})"
        for t in taus
    )
    options = record["options"]
    backend = ""
    if options.get("compare_backend"):
        other = options["compare_backend"]
        cosine = [float(r[f"cosine_{other}"]) for r in rows]
        ratio = [float(r[f"norm_ratio_{other}"]) for r in rows]
        backend = (
            f" The exact gradient from the `{other}` backend against GD's "
            f"(`{options['exact_backend']}`) at the same steps: 1 − cosine at most "
            f"{max(1 - c for c in cosine):.2g}, norm ratio {_span(ratio, '.4g')}."
        )
    return (
        f"GD's exact gradient from the `{options['exact_backend']}` backend. "
        f"At {len(steps)} steps of GD's trajectory (one every "
        f"{record['options']['every']} steps, steps {min(steps)}–{max(steps)}; seed "
        f"{record['options']['seed']}, lr 0.03, each "
        "step's minibatch of 20 puzzles), the central difference of the summed MSE along "
        "the exact gradient's direction against the exact gradient's norm (|difference "
        "/ norm − 1|): " + "; ".join(parts) + ". Cosine between LPGD's gradient and the "
        f"exact gradient, lowest–highest over the steps: {cosines}.{backend}\n\n"
        + stored.provenance_line(img, GRADCHECK)
    )


def blocks(img: Path) -> dict[str, str]:
    """``sudoku-lr`` and ``sudoku-gradcheck``, for the stored runs that exist in ``img``."""
    out = {}
    if (Path(img) / f"{LR_SCAN}.csv").exists():
        out["sudoku-lr"] = lr_scan_block(common.read_csv(Path(img) / f"{LR_SCAN}.csv"), img)
    if (Path(img) / f"{GRADCHECK}.csv").exists():
        rows = common.read_csv(Path(img) / f"{GRADCHECK}.csv")
        out["sudoku-gradcheck"] = gradcheck_block(rows, img)
    return out


if __name__ == "__main__":
    main()
