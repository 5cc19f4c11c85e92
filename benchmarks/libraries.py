"""The layers the benchmark times (see :mod:`benchmarks.run`): cvxlpgd's, and
cvxpylayers' with Moreau and with diffcp; :func:`libraries_for` picks them per case.
"""

from __future__ import annotations

import time
import warnings

import torch

from benchmarks.problems import Case


class Library:
    """One library's layer for a case: :meth:`run` times one forward and backward."""

    #: Name in the tables.
    name: str
    #: ``"lpgd"`` or ``"exact"``.
    gradient: str = "exact"

    def __init__(self, case: Case):
        self.case = case

    def call(self, tensors):  # pragma: no cover - abstract
        raise NotImplementedError

    def solver(self) -> str:
        """The solver that answered the last call."""
        return ""

    def stats(self) -> dict | None:
        """Solver statistics of the last call (cvxlpgd's ``solver_stats.summary()``)."""
        return None

    def run(self, tensors, weights) -> tuple[float, float, list[torch.Tensor]]:
        inputs = [t.detach().clone().requires_grad_(True) for t in tensors]
        tic = time.perf_counter()
        outputs = self.call(inputs)
        forward = time.perf_counter() - tic
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        tic = time.perf_counter()
        loss.backward()
        backward = time.perf_counter() - tic
        return forward, backward, [o.detach() for o in outputs]


class Cvxlpgd(Library):
    """cvxlpgd's layer; ``gradient="exact"`` uses its default exact backend."""

    def __init__(self, case: Case, solver: str = "auto", gradient: str = "lpgd"):
        import cvxlpgd

        super().__init__(case)
        self.gradient = gradient
        suffix = [] if solver == "auto" else [solver]
        suffix += [] if gradient == "lpgd" else ["exact"]
        self.name = " ".join(["cvxlpgd", *suffix])
        self.layer = cvxlpgd.CvxpyLayer(
            case.problem,
            case.parameters,
            case.outputs,
            tau=case.tau,
            solver=solver,
            gradient=gradient,
        )

    def call(self, tensors):
        return self.layer(*tensors)

    def solver(self) -> str:
        stats = self.layer.solver_stats
        if stats is None:
            return ""
        backend = getattr(stats, "exact_backend", "")
        return f"{stats.solver}, {backend}" if backend else stats.solver

    def stats(self) -> dict | None:
        stats = self.layer.solver_stats
        return (
            None
            if stats is None
            else {k: (float(v) if isinstance(v, float) else v) for k, v in stats.summary().items()}
        )


class _Cvxpylayers(Library):
    solver_name: str | None = None

    def __init__(self, case: Case):
        from cvxpylayers.torch import CvxpyLayer

        super().__init__(case)
        self.layer = CvxpyLayer(
            case.problem,
            parameters=case.parameters,
            variables=case.outputs,
            solver=self.solver_name,
        )

    def call(self, tensors):
        # cvxpylayers 1.2 converts tensors with np.array(..., copy=False), which NumPy 2
        # answers with a DeprecationWarning on every call: noise, not a result.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="moreau")
            warnings.filterwarnings("ignore", category=UserWarning, module="diffcp")
            return self.layer(*tensors)


class CvxpylayersMoreau(_Cvxpylayers):
    name = "cvxpylayers + Moreau"
    solver_name = "MOREAU"

    def solver(self) -> str:
        return "MOREAU"


class CvxpylayersDiffcp(_Cvxpylayers):
    name = "cvxpylayers + diffcp"
    solver_name = None  # cvxpylayers' default: diffcp, which solves with SCS

    def solver(self) -> str:
        return "SCS"


REFERENCE = CvxpylayersMoreau.name
#: Batches this large also run cvxlpgd's SCS path (the QP at B = 512; B = 128 quick).
LARGE_BATCH = 128


def available_baseline() -> bool:
    """Whether cvxpylayers and Moreau are installed."""
    try:
        import cvxpylayers.torch  # noqa: F401
        import moreau  # noqa: F401
    except ImportError:
        return False
    return True


def libraries_for(case: Case, baseline: bool) -> list[Library]:
    """The layers a case is measured with (see the module docstring)."""
    out: list[Library] = [Cvxlpgd(case), Cvxlpgd(case, gradient="exact")]
    if case.batch_size >= LARGE_BATCH or case.family == "lasso":
        out.append(Cvxlpgd(case, solver="SCS"))
    if baseline:
        out += [CvxpylayersMoreau(case), CvxpylayersDiffcp(case)]
    return out
