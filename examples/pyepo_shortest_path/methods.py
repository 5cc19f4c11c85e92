"""The training methods of the benchmark, each a loss on a batch of predicted costs.

Every method trains the same linear model ``ĉ = Θx + θ₀`` (``torch.nn.Linear``) and
differs only in the loss it backpropagates for a batch ``(x, c, w*, z*)``:

``lpgd_tau=…``, ``exact``
    cvxlpgd's layer ``w(ĉ)`` on the CVXPY LP (:func:`~examples.pyepo_shortest_path.
    problem.shortest_path_lp`) and the regret ``cᵀw(ĉ) − z*`` of each instance, summed
    over the batch: the incoming gradient of instance ``i`` is then its true cost
    ``c_i``, which LPGD scales by τ whatever the batch size (Adam's step does not
    change when its gradient is multiplied by a constant). ``exact`` is the same loss
    through diffcp's derivative, which is zero almost everywhere for an LP.
``spo+``
    ``pyepo.func.SPOPlus`` (Elmachtoub & Grigas), batch mean.
``dbb``
    ``pyepo.func.blackboxOpt`` (λ = 10, PyEPO's default) and, as PyEPO's documentation
    pairs it, the L1 distance between the decision's true cost ``cᵀw(ĉ)`` and ``z*``.
``dpo``
    ``pyepo.func.perturbedOpt`` (10 samples, σ = 1) and the squared error of the
    expected perturbed solution against ``w*`` (PyEPO's standard pairing).
``pfyl``
    ``pyepo.func.perturbedFenchelYoung`` (10 samples, σ = 1), batch mean.
``2s``
    Two-stage: least squares from features to costs, in closed form (no epochs).

The PyEPO methods solve with PyEPO's OR-Tools model and their default ``processes=1``
(one instance after the other); the layer solves a whole batch in one call of its
solver (Moreau by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from examples.common import Method

__all__ = ["METHODS", "TrainingMethod", "batch_loss", "fit_two_stage", "make_method"]

#: Methods in table order; ``lpgd`` stands for the τ chosen on the validation set.
METHODS = ("lpgd", "exact", "spo+", "dbb", "dpo", "pfyl", "2s")
LABELS = {"lpgd": "cvxlpgd LPGD (τ by validation)", "exact": "cvxlpgd exact",
          "spo+": "PyEPO SPO+", "dbb": "PyEPO DBB", "dpo": "PyEPO DPO",
          "pfyl": "PyEPO PFYL", "2s": "two-stage LS", "initial": "initial model"}


@dataclass(frozen=True)
class TrainingMethod:
    """One row of the benchmark.

    Attributes
    ----------
    name : str
        ``"lpgd_tau=<τ>"``, ``"exact"``, ``"spo+"``, ``"dbb"``, ``"dpo"``, ``"pfyl"`` or
        ``"2s"``.
    tau : float or None
        LPGD's τ.
    """

    name: str
    tau: float | None = None

    @property
    def label(self) -> str:
        """Human-readable name for tables and legends."""
        if self.tau is not None:
            return f"cvxlpgd LPGD τ={self.tau:g}"
        return LABELS[self.name]

    @property
    def trained_by_gradient(self) -> bool:
        """False for the closed-form two-stage fit."""
        return self.name != "2s"


def make_method(name: str, tau: float | None = None) -> TrainingMethod:
    """A :class:`TrainingMethod` by name (``"lpgd"`` needs ``tau``).

    Parameters
    ----------
    name : str
        One of :data:`METHODS`.
    tau : float, optional
        LPGD's τ.

    Returns
    -------
    TrainingMethod

    Raises
    ------
    ValueError
        For an unknown name, or ``"lpgd"`` without a positive τ.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    if name == "lpgd":
        if tau is None or not tau > 0:
            raise ValueError(f"lpgd needs a positive tau, got {tau!r}")
        return TrainingMethod(f"lpgd_tau={tau:g}", float(tau))
    return TrainingMethod(name)


def batch_loss(method: TrainingMethod, optmodel, layer) -> Callable:
    """The loss ``f(ĉ, c, w*, z*) -> scalar`` that ``method`` backpropagates.

    Parameters
    ----------
    method : TrainingMethod
        Not ``"2s"`` (see :func:`fit_two_stage`).
    optmodel : pyepo model
        PyEPO's oracle, for the PyEPO methods.
    layer : cvxlpgd.CvxpyLayer
        The shortest-path LP layer, for ``lpgd_tau=…`` and ``exact``.

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

    name = method.name
    if method.tau is not None or name == "exact":
        options = (Method("lpgd", method.tau) if method.tau is not None
                   else Method("exact")).layer_options()

        def layer_regret(pred, c, w, z):
            (flow,) = layer(pred.double(), **options)
            return ((flow * c.double()).sum(dim=1) - z.double().squeeze(1)).sum()

        return layer_regret
    if name == "spo+":
        spo = pyepo.func.SPOPlus(optmodel)
        return lambda pred, c, w, z: spo(pred, c, w, z)
    if name == "dbb":
        dbb, l1 = pyepo.func.blackboxOpt(optmodel), torch.nn.L1Loss()
        return lambda pred, c, w, z: l1((dbb(pred) * c).sum(dim=1, keepdim=True), z)
    if name == "dpo":
        dpo, mse = pyepo.func.perturbedOpt(optmodel), torch.nn.MSELoss()
        return lambda pred, c, w, z: mse(dpo(pred), w)
    if name == "pfyl":
        pfy = pyepo.func.perturbedFenchelYoung(optmodel)
        return lambda pred, c, w, z: pfy(pred, w)
    raise ValueError(f"method {name!r} has no batch loss")


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
