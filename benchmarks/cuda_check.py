"""Check the CUDA path against the CPU path, where a GPU and Moreau's CUDA backend exist.

Usage::

    python -m benchmarks.cuda_check          # prints a table; exit status 1 on a mismatch

With CUDA tensors and ``moreau`` reporting a ``"cuda"`` device, the layer solves on
the GPU (``layer.solver_stats.solver`` is ``"MOREAU"`` and the engine's device
``"cuda"``); otherwise it falls back to the CPU and warns once. This script runs the
benchmark QP and LP on both and compares values and LPGD and exact gradients. No test
requires a GPU; this is the check to run on a machine that has one.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import torch

import cvxlpgd
from benchmarks import problems
from cvxlpgd.solvers.moreau_backend import moreau_devices

#: Largest relative difference accepted between the CPU and the CUDA results.
TOLERANCE = 1e-5


def run(case, device: str, gradient: str):
    """Values, gradients and wall time of one forward + backward on ``device``."""
    layer = cvxlpgd.CvxpyLayer(
        case.problem,
        case.parameters,
        case.outputs,
        tau=case.tau,
        gradient=gradient,
        exact_backend="moreau" if gradient == "exact" else "diffcp",
        solver="MOREAU",
    )
    tensors = [t.detach().to(device).requires_grad_(True) for t in case.tensors()]
    weights = torch.tensor(
        np.random.default_rng(0).standard_normal((case.batch_size, *case.outputs[0].shape)),
        device=device,
    )
    layer(*tensors)  # warm-up: compiled solvers
    tic = time.perf_counter()
    (x,) = layer(*tensors)
    (weights * x).sum().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - tic
    engine = layer._runtime.engines.get("cuda" if device == "cuda" else "cpu")
    return (
        x.detach().cpu(),
        [t.grad.cpu() for t in tensors],
        seconds,
        engine.device if engine else "?",
    )


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def main(argv=None) -> int:
    """Compare the CUDA path with the CPU path; returns the exit status."""
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to check")
        return 0
    if "cuda" not in moreau_devices():
        print(
            f"moreau sees devices {moreau_devices()}: install moreau[cuda] to solve on "
            "the GPU (the layer falls back to the CPU and warns once)"
        )
        return 0
    print("| problem | gradient | device used | CPU ms | CUDA ms | max rel. diff |")
    print("|---|---|---|---:|---:|---:|")
    ok = True
    for case in (problems.dense_qp(batch_size=512), problems.assignment_lp()):
        for gradient in ("lpgd", "exact"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                x_cpu, g_cpu, t_cpu, _ = run(case, "cpu", gradient)
                x_gpu, g_gpu, t_gpu, used = run(case, "cuda", gradient)
            diff = max([relative(x_gpu, x_cpu)] + [relative(a, b) for a, b in zip(g_gpu, g_cpu)])
            ok &= diff <= TOLERANCE and used == "cuda"
            print(
                f"| {case.name} | {gradient} | {used} | {t_cpu * 1e3:.1f} | "
                f"{t_gpu * 1e3:.1f} | {diff:.1e} |"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
