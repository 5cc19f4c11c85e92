"""The training methods of the PyEPO benchmarks, each a loss on a batch of predicted costs.

Every method trains the same linear model ``ĉ = Θx + θ₀`` (``torch.nn.Linear``) and
differs only in the loss it backpropagates for a batch ``(x, c, w*, z*)``. The same
methods serve both tasks (shortest path, a minimization; knapsack, a maximization):
``sense`` is +1 or −1 and the regret of a decision ``w`` is ``sense·(cᵀw − z*) ≥ 0``.

``lpgd`` and its variants (τ scanned, the τ with the lowest validation regret reported)
    cvxlpgd's layer ``w(ĉ)`` on the task's CVXPY LP (for knapsack its LP relaxation).
    ``lpgd`` is the layer's default finite difference (``lpgd_mode="central"``, ρ = 0)
    on the regret ``sense·(cᵀw(ĉ) − z*)`` summed over the batch: the incoming gradient
    of instance ``i`` is ``sense·c_i``, which LPGD scales by τ whatever the batch size
    (Adam's step does not change when its gradient is multiplied by a constant).
    ``lpgd-upper`` / ``lpgd-lower``: ``lpgd_mode="upper"`` / ``"lower"``; ``lpgd-rho``:
    the proximal term ``ρ/2‖w − w(ĉ)‖²`` in the re-solves (:data:`RHO`); ``lpgd-sol``:
    central LPGD on a loss that uses the true solution, ``½‖w(ĉ) − w*‖²`` summed over
    the batch (the squared Hamming distance for 0/1 vectors; LPGD takes any loss of the
    layer's output, and with ``lpgd_mode="upper"`` this is DBB on that loss).
``exact``
    The regret through diffcp's derivative, which is zero almost everywhere for an LP.
``spo+``, ``pfyl``
    ``pyepo.func.SPOPlus`` and ``perturbedFenchelYoung`` (10 samples, σ = 1), batch mean.
``dbb``, ``nid``
    ``pyepo.func.blackboxOpt`` (λ = 10) and ``negativeIdentity`` (NID, Sahoo et al.: the
    identity as the solver's Jacobian, no extra solve), each with the L1 distance
    between the decision's true value ``cᵀw(ĉ)`` and ``z*`` (as PyEPO pairs them).
``dpo``
    ``pyepo.func.perturbedOpt`` (10 samples, σ = 1), squared error against ``w*``.
``pg`` (σ scanned like LPGD's τ)
    ``pyepo.func.perturbationGradient`` with central differences (``two_sides=True``),
    batch mean: ``(w(ĉ + σc) − w(ĉ − σc)) / 2σ`` on PyEPO's oracle, which is central
    LPGD on the objective loss at τ = σ (``tests/test_pyepo_pg.py``).
``imle``, ``aimle``
    ``pyepo.func.implicitMLE`` (10 samples, σ = 1, λ = 10, Sum-of-Gamma noise κ = 5,
    one-sided) and ``adaptiveImplicitMLE`` (the same with λ adapted online), each
    returning a perturbed decision, with the L1 loss against ``w*`` (their docstring's
    standard pairing).
``nce``, ``cmap``, ``ltr``, ``ltr-pair``, ``ltr-point``
    ``pyepo.func.noiseContrastiveEstimation``, ``contrastiveMAP`` and the listwise,
    pairwise and pointwise ``…LearningToRank``: losses on a pool of solutions, seeded
    with the training set's ``w*`` and grown by one solve per instance per step
    (``solve_ratio=1``), batch mean. NCE and CMAP compare ``ĉ`` on ``w*`` with the pool
    (mean / most violating); the LTR losses compare the pool's objective values under
    ``ĉ`` and ``c``: listwise, a cross-entropy between the two rankings; pairwise, a
    hinge on ``ĉ`` between the pool member best under ``c`` and each other member;
    pointwise, the squared error of each member's value.
``2s``
    Two-stage: least squares from features to costs, in closed form (no epochs).

The PyEPO methods solve with the task's integer oracle (shortest path: PyEPO's
OR-Tools model; knapsack: OR-Tools' knapsack branch and bound,
:mod:`examples.pyepo_knapsack.oracle`) and PyEPO 2.2.7's defaults for every
hyperparameter not named above
(``processes=1``, ``solve_ratio=1``); the layer solves a whole batch in one call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "FAMILIES",
    "METHODS",
    "RHO",
    "TrainingMethod",
    "batch_loss",
    "family_of",
    "fit_two_stage",
    "make_method",
    "scan_methods",
]

#: Methods in table order. A scanned method ("family") trains once per τ (σ for PG);
#: its row is the τ chosen on the validation set.
METHODS = (
    "lpgd",
    "lpgd-upper",
    "lpgd-lower",
    "lpgd-rho",
    "lpgd-sol",
    "exact",
    "spo+",
    "dbb",
    "dpo",
    "pfyl",
    "pg",
    "nid",
    "imle",
    "aimle",
    "nce",
    "cmap",
    "ltr",
    "ltr-pair",
    "ltr-point",
    "2s",
)
#: The methods with a scan, and their scanned parameter's name.
FAMILIES = {
    "lpgd": "tau",
    "lpgd-upper": "tau",
    "lpgd-lower": "tau",
    "lpgd-rho": "tau",
    "lpgd-sol": "tau",
    "pg": "sigma",
}
#: The proximal weight of ``lpgd-rho``.
RHO = 1.0
LABELS = {
    "lpgd": "cvxlpgd LPGD (τ by validation)",
    "exact": "cvxlpgd exact",
    "lpgd-upper": "LPGD upper (τ by validation)",
    "lpgd-lower": "LPGD lower (τ by validation)",
    "lpgd-rho": f"LPGD ρ = {RHO:g} (τ by validation)",
    "lpgd-sol": "LPGD on ½‖w − w*‖² (τ by validation)",
    "lpgd-deg": "LPGD (τ by validation, per degree)",
    "spo+": "PyEPO SPO+",
    "dbb": "PyEPO DBB",
    "dpo": "PyEPO DPO",
    "pfyl": "PyEPO PFYL",
    "pg": "PyEPO PG (σ by validation)",
    "pg-at-lpgd": "PyEPO PG (σ = LPGD's τ)",
    "nid": "PyEPO NID",
    "imle": "PyEPO I-MLE",
    "aimle": "PyEPO AI-MLE",
    "nce": "PyEPO NCE",
    "cmap": "PyEPO CMAP",
    "ltr": "PyEPO listwise LTR",
    "ltr-pair": "PyEPO pairwise LTR",
    "ltr-point": "PyEPO pointwise LTR",
    "2s": "two-stage LS",
    "initial": "initial model",
}
_LAYER = {
    "lpgd": {},
    "lpgd-upper": {"lpgd_mode": "upper"},
    "lpgd-lower": {"lpgd_mode": "lower"},
    "lpgd-rho": {"rho": RHO},
    "lpgd-sol": {},
}


def family_of(name: str) -> str:
    """``"lpgd-upper_tau=1"`` → ``"lpgd-upper"``; other names unchanged."""
    return name.split("_", 1)[0]


@dataclass(frozen=True)
class TrainingMethod:
    """One training run of the benchmark.

    Attributes
    ----------
    name : str
        ``"<family>_tau=<τ>"`` (``"pg_sigma=<σ>"``) for one training of a scanned
        method, else the method's name (:data:`METHODS`).
    tau : float or None
        LPGD's τ or PG's σ.
    """

    name: str
    tau: float | None = None

    @property
    def family(self) -> str:
        """The method this training belongs to (``"lpgd"`` for ``"lpgd_tau=1"``)."""
        return family_of(self.name)

    @property
    def label(self) -> str:
        """Human-readable name for tables and legends."""
        if self.tau is not None:
            symbol = "σ" if FAMILIES[self.family] == "sigma" else "τ"
            return f"{LABELS[self.family].split(' (')[0]} {symbol}={self.tau:g}"
        return LABELS[self.name]

    @property
    def trained_by_gradient(self) -> bool:
        """False for the closed-form two-stage fit."""
        return self.name != "2s"


def make_method(name: str, tau: float | None = None) -> TrainingMethod:
    """One training of method ``name`` (a scanned method needs ``tau``).

    Raises
    ------
    ValueError
        For an unknown name, or a scanned method without a positive τ.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    if name in FAMILIES:
        if tau is None or not tau > 0:
            raise ValueError(f"{name} needs a positive tau, got {tau!r}")
        return TrainingMethod(f"{name}_{FAMILIES[name]}={tau:g}", float(tau))
    return TrainingMethod(name)


def scan_methods(name: str, taus) -> list[TrainingMethod]:
    """The trainings method ``name`` needs: one per τ if it is scanned, else one."""
    return [make_method(name, t) for t in taus] if name in FAMILIES else [make_method(name)]


def batch_loss(method: TrainingMethod, optmodel, layer, sense: int = 1, dataset=None) -> Callable:
    """The loss ``f(ĉ, c, w*, z*) -> scalar`` that ``method`` backpropagates.

    Parameters
    ----------
    method : TrainingMethod
        Not ``"2s"`` (see :func:`fit_two_stage`).
    optmodel : pyepo model
        PyEPO's oracle, for the PyEPO methods.
    layer : cvxlpgd.CvxpyLayer
        The task's LP layer, for the LPGD methods and ``exact``.
    sense : {1, -1}
        +1 for a minimization (shortest path), −1 for a maximization (knapsack).
    dataset : pyepo.data.dataset.optDataset, optional
        The training set, which seeds the solution pool of ``nce``, ``cmap`` and ``ltr``
        (required for them).

    Returns
    -------
    callable
        Takes float32 tensors ``pred (B, d)``, ``c (B, d)``, ``w (B, d)``, ``z (B, 1)``.

    Raises
    ------
    ValueError
        For ``"2s"``, which has no batch loss.
    """
    import pyepo

    family = method.family
    if family in _LAYER or family == "exact":
        options = (
            {"gradient": "exact"}
            if family == "exact"
            else {"gradient": "lpgd", "tau": method.tau, **_LAYER[family]}
        )
        if family == "lpgd-sol":

            def layer_solution_loss(pred, c, w, z):
                (sol,) = layer(pred.double(), **options)
                return 0.5 * ((sol - w.double()) ** 2).sum()

            return layer_solution_loss

        def layer_regret(pred, c, w, z):
            (sol,) = layer(pred.double(), **options)
            return sense * ((sol * c.double()).sum(dim=1) - z.double().squeeze(1)).sum()

        return layer_regret
    if family == "pg":
        pg = pyepo.func.perturbationGradient(optmodel, sigma=method.tau, two_sides=True)
        return lambda pred, c, w, z: pg(pred, c)
    if family == "spo+":
        spo = pyepo.func.SPOPlus(optmodel)
        return lambda pred, c, w, z: spo(pred, c, w, z)
    if family in ("dbb", "nid"):
        solve = (
            pyepo.func.blackboxOpt(optmodel)
            if family == "dbb"
            else pyepo.func.negativeIdentity(optmodel)
        )
        l1 = torch.nn.L1Loss()
        return lambda pred, c, w, z: l1((solve(pred) * c).sum(dim=1, keepdim=True), z)
    if family == "dpo":
        dpo, mse = pyepo.func.perturbedOpt(optmodel), torch.nn.MSELoss()
        return lambda pred, c, w, z: mse(dpo(pred), w)
    if family == "pfyl":
        pfy = pyepo.func.perturbedFenchelYoung(optmodel)
        return lambda pred, c, w, z: pfy(pred, w)
    if family in ("imle", "aimle"):
        perturb = (
            pyepo.func.implicitMLE(optmodel)
            if family == "imle"
            else pyepo.func.adaptiveImplicitMLE(optmodel)
        )
        l1 = torch.nn.L1Loss()
        return lambda pred, c, w, z: l1(perturb(pred), w)
    if family in _POOL:
        if dataset is None:
            raise ValueError(f"{family} needs the training set (dataset=)")
        pool_loss = _POOL[family](pyepo.func)(optmodel, dataset=dataset)
        if family.startswith("ltr"):
            return lambda pred, c, w, z: pool_loss(pred, c)
        return lambda pred, c, w, z: pool_loss(pred, w)
    raise ValueError(f"method {method.name!r} has no batch loss")


#: The solution-pool losses: their PyEPO class, from ``pyepo.func``.
_POOL = {
    "nce": lambda func: func.noiseContrastiveEstimation,
    "cmap": lambda func: func.contrastiveMAP,
    "ltr": lambda func: func.listwiseLearningToRank,
    "ltr-pair": lambda func: func.pairwiseLearningToRank,
    "ltr-point": lambda func: func.pointwiseLearningToRank,
}


def fit_two_stage(model: torch.nn.Linear, features: torch.Tensor, costs: torch.Tensor) -> None:
    """Set ``model`` to the least-squares fit ``min ‖Θx + θ₀ − c‖²`` (in place).

    Parameters
    ----------
    model : torch.nn.Linear
        ``in_features`` = feature dimension, ``out_features`` = cost dimension.
    features : torch.Tensor, shape (n, p)
    costs : torch.Tensor, shape (n, d)
    """
    x = np.hstack([features.numpy().astype(np.float64), np.ones((len(features), 1))])
    coef, *_ = np.linalg.lstsq(x, costs.numpy().astype(np.float64), rcond=None)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(coef[:-1].T))
        model.bias.copy_(torch.as_tensor(coef[-1]))
