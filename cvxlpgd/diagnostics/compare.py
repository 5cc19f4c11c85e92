"""Gradient comparison: LPGD at several τ next to the exact gradient and finite differences."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd.zero_gradient import diagnosing
from cvxlpgd.torch.inputs import check_arguments

#: Default τ values of :func:`compare_gradients`.
DEFAULT_TAUS = (1e-3, 1e-2, 1e-1, 1.0)
# Elements per forward call of the finite differences (bounds the memory of one call).
_FD_CHUNK = 256


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """cos∠(a, b); nan when either is zero (no direction to compare)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.dot(a.ravel(), b.ravel()) / (na * nb))


def _relative_error(a: np.ndarray, reference: np.ndarray) -> float:
    """‖a − ref‖ / ‖ref‖; 0 when both are zero, inf when only the reference is."""
    diff = float(np.linalg.norm(np.ravel(a) - np.ravel(reference)))
    scale = float(np.linalg.norm(reference))
    if scale == 0:
        return 0.0 if diff == 0 else math.inf
    return diff / scale


def _format(value, spec: str = ".3g") -> str:
    """``value`` formatted by ``spec``; None as a dash of the same width."""
    if value is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)


def _prepare(layer, tensors, loss_weights, seed):
    """float64 detached inputs, the forward outputs and the loss weights."""
    check_arguments(layer._specs, tensors)  # the layer's own count, type and shape checks
    # float64 throughout: finite differences in float32 would drown in rounding.
    base = [tensor.detach().to(device="cpu", dtype=torch.float64).clone() for tensor in tensors]
    with torch.no_grad(), diagnosing(layer):
        outputs = layer(*base)
    if loss_weights is None:
        rng = np.random.default_rng(seed)
        weights = [torch.from_numpy(rng.standard_normal(tuple(o.shape))) for o in outputs]
    else:
        if len(loss_weights) != len(outputs):
            raise ValueError(
                f"loss_weights must hold one array per output ({len(outputs)}), "
                f"got {len(loss_weights)}"
            )
        weights = []
        for k, (w, o) in enumerate(zip(loss_weights, outputs)):
            w = torch.as_tensor(np.asarray(w, dtype=float))
            if tuple(w.shape) != tuple(o.shape):
                raise ValueError(
                    f"loss_weights[{k}] must have the output's shape "
                    f"{tuple(o.shape)}, got {tuple(w.shape)}"
                )
            weights.append(w)
    batched = [t.dim() == len(p.shape) + 1 for p, t in zip(layer.parameters_, base)]
    return base, outputs, weights, batched


def _layer_gradient(layer, base, weights, **call) -> list[np.ndarray]:
    """∂ℓ/∂θ through the layer's backward pass with the call's options."""
    inputs = [t.clone().requires_grad_(True) for t in base]
    with diagnosing(layer):
        outputs = layer(*inputs, **call)
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        loss.backward()
    return [np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().copy() for t in inputs]


def _fd_directions(param, value: np.ndarray, step: float):
    """(entry indices to fill, direction, lo, hi) for every coordinate of a parameter.

    Symmetric parameters move along E_ij + E_ji (i ≥ j) and the difference fills both
    entries, halved off the diagonal: the gradient within symmetric matrices, as the
    layer returns it. Sign-constrained parameters are clipped at 0 so that the
    perturbed value stays valid (a one-sided difference at the boundary).
    """
    attrs = param.attributes
    symmetric = any(attrs.get(a) for a in ("symmetric", "PSD", "NSD"))
    for index in np.ndindex(value.shape):
        if symmetric and index[0] < index[1]:
            continue
        direction = np.zeros(value.shape)
        direction[index] = 1.0
        targets = [index]
        if symmetric and index[0] != index[1]:
            direction[index[::-1]] = 1.0
            targets.append(index[::-1])
        lo, hi = -step, step
        if attrs.get("nonneg"):
            lo = -min(step, float(value[index]))
        if attrs.get("nonpos"):
            hi = min(step, -float(value[index]))
        yield targets, direction, lo, hi, (0.5 if len(targets) == 2 else 1.0)


def _finite_differences(layer, base, weights, batched, step: float) -> list[np.ndarray]:
    """Central differences of ℓ for every parameter entry (and batch element).

    All perturbed inputs are solved as one batch (in chunks). An unbatched parameter
    influences every element, so its perturbations carry all B elements; a batched
    parameter's entry (b, j) only element b, so only that element is re-solved.
    """
    batch_size = max([t.shape[0] for t, flag in zip(base, batched) if flag], default=1)
    per_element = [
        [(t[b] if flag else t).numpy() for t, flag in zip(base, batched)] for b in range(batch_size)
    ]
    w_elements = [
        [(w[b] if any(batched) else w).numpy() for w in weights] for b in range(batch_size)
    ]
    rows = []  # (parameter index, target entries incl. batch index, sign, 1/(hi-lo)·factor,
    #            element b, parameter values)
    grads = [np.zeros(tuple(t.shape)) for t in base]
    for k, (param, flag) in enumerate(zip(layer.parameters_, batched)):
        for b in range(batch_size) if flag else [0]:
            value = per_element[b][k]
            for targets, direction, lo, hi, factor in _fd_directions(param, value, step):
                scale = factor / (hi - lo)
                prefix = (b,) if flag else ()
                targets = [prefix + t for t in targets]
                members = [b] if flag else range(batch_size)
                for sign, amount in ((+1, hi), (-1, lo)):
                    for e in members:
                        values = list(per_element[e])
                        values[k] = values[k] + amount * direction
                        rows.append((k, targets, sign * scale, e, values))
    with torch.no_grad(), diagnosing(layer):
        for start in range(0, len(rows), _FD_CHUNK):
            chunk = rows[start : start + _FD_CHUNK]
            inputs = [
                torch.from_numpy(np.stack([r[4][k] for r in chunk])) for k in range(len(base))
            ]
            outputs = [o.numpy() for o in layer(*inputs)]
            for j, (k, targets, weight, e, _) in enumerate(chunk):
                loss = sum(float(np.sum(w * o[j])) for w, o in zip(w_elements[e], outputs))
                for target in targets:
                    grads[k][target] += weight * loss
    return grads


class GradientComparison(dict):
    """Result of :func:`compare_gradients`: a plain dict that prints as a table.

    Notes
    -----
    Keys: ``"taus"`` (list of float), ``"fd_step"`` (float or None), ``"seed"`` (int or None),
    ``"parameters"`` (list of names), ``"gradients"`` (``{name: {"fd": array or None,
    "exact": array or None, "lpgd": {tau: array}}}``), ``"errors"`` (``{method: message}``
    for a gradient that could not be computed) and ``"rows"``: one dict per parameter
    (plus ``"(all)"``, all parameters concatenated) and method with keys
    ``parameter``, ``method`` (``"fd"``, ``"exact"``, ``"lpgd"``), ``tau``, ``norm``,
    ``cosine_fd``, ``rel_error_fd``, ``cosine_exact``, ``rel_error_exact`` (None where
    not applicable).
    """

    def row(self, parameter: str, method: str, tau: float | None = None) -> dict:
        """The row of one parameter and method.

        Parameters
        ----------
        parameter : str
            A parameter name, or ``"(all)"``.
        method : str
            The gradient: ``"fd"``, ``"exact"`` or ``"lpgd"``.
        tau : float, optional
            τ of an ``"lpgd"`` row.

        Returns
        -------
        dict

        Raises
        ------
        KeyError
            When there is no such row.
        """
        for row in self["rows"]:
            if (
                row["parameter"] == parameter
                and row["method"] == method
                and (method != "lpgd" or row["tau"] == tau)
            ):
                return row
        raise KeyError((parameter, method, tau))

    def __str__(self) -> str:
        header = (
            f"{'parameter':<12} {'method':<16} {'norm':>9} {'cos(fd)':>8} "
            f"{'relerr(fd)':>10} {'cos(exact)':>10} {'relerr(exact)':>13}"
        )
        lines = [
            f"Gradient comparison: loss = sum_k <w_k, output_k>, finite-difference step "
            f"{_format(self['fd_step'])}",
            header,
            "-" * len(header),
        ]
        for row in self["rows"]:
            method = row["method"] if row["tau"] is None else f"lpgd tau={row['tau']:g}"
            lines.append(
                f"{row['parameter']:<12.12} {method:<16} {_format(row['norm'], '9.3g')} "
                f"{_format(row['cosine_fd'], '8.4f')} {_format(row['rel_error_fd'], '10.2e')} "
                f"{_format(row['cosine_exact'], '10.4f')} "
                f"{_format(row['rel_error_exact'], '13.2e')}"
            )
        for method, message in self["errors"].items():
            lines.append(f"{method}: {message}")
        return "\n".join(lines)


def compare_gradients(
    layer,
    *tensors: torch.Tensor,
    taus: Sequence[float] = (1e-3, 1e-2, 1e-1, 1.0),
    loss_weights: Sequence | None = None,
    fd_step: float | None = 1e-4,
    seed: int = 0,
    rho: float | None = None,
    lpgd_mode: str | None = None,
) -> GradientComparison:
    r"""LPGD at several τ next to the exact gradient and finite differences.

    For the linear loss ``ℓ(θ) = Σ_k ⟨w_k, output_k(θ)⟩`` (random seeded weights unless
    given), computes for every parameter

    * the LPGD gradient at each τ (the layer's ρ and mode unless overridden),
    * the exact gradient (diffcp, ``gradient="exact"``),
    * central finite differences of the solution map,
      ``(ℓ(θ + h e_j) − ℓ(θ − h e_j)) / 2h`` for every entry j, re-solving the layer's
      forward pass (2 solves per entry and batch element, batched),

    and compares them by cosine similarity and relative error
    ``‖g − g_ref‖ / ‖g_ref‖``. All work is done in float64. Zero-gradient warnings
    are not issued meanwhile (small τ are examined on purpose).

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The layer to examine; its options are not changed.
    *tensors : torch.Tensor
        Parameter values, as for a call of the layer (batched or not).
    taus : sequence of float, default (1e-3, 1e-2, 1e-1, 1)
        LPGD perturbation strengths to compare.
    loss_weights : sequence of array_like, optional
        One array per output, of the output's shape (batch dimension included).
        Default: standard normal, drawn with ``seed``.
    fd_step : float or None, default 1e-4
        Finite-difference step h (absolute). None skips the finite differences.
        Sign-constrained parameters are clipped at 0 (one-sided at the boundary).
    seed : int, default 0
        Seed of the random loss weights.
    rho : float, optional
        LPGD proximal weight for the LPGD gradients (default: the layer's).
    lpgd_mode : str, optional
        LPGD finite difference, ``"central"``, ``"upper"`` or ``"lower"`` (default: the
        layer's).

    Returns
    -------
    GradientComparison
        A dict (see :class:`GradientComparison`); ``print`` it for a table.

    Raises
    ------
    TypeError, ValueError
        For inputs the layer rejects, loss weights of the wrong count or shape, or an
        empty ``taus``.
    cvxlpgd.SolverError
        When the forward problem or a finite-difference re-solve fails. A failing
        LPGD or exact backward pass is recorded under ``"errors"`` instead.

    Examples
    --------
    >>> import cvxpy as cp, torch, cvxlpgd
    >>> x, z = cp.Variable(2), cp.Parameter(2, name="z")
    >>> layer = cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(cp.sum_squares(x - z)), [x >= 0]),
    ...                            [z], [x])
    >>> result = cvxlpgd.compare_gradients(layer, torch.tensor([1.0, 2.0]), taus=[1e-2])
    >>> result.row("z", "exact")["rel_error_fd"] < 1e-4
    True
    """
    taus = [float(t) for t in taus]
    if not taus:
        raise ValueError("taus is empty: give at least one tau")
    base, _, weights, batched = _prepare(layer, tensors, loss_weights, seed)
    names = [p.name() for p in layer.parameters_]
    errors: dict[str, str] = {}
    overrides = {k: v for k, v in (("rho", rho), ("lpgd_mode", lpgd_mode)) if v is not None}
    lpgd = {}
    for tau in taus:
        try:
            lpgd[tau] = _layer_gradient(layer, base, weights, gradient="lpgd", tau=tau, **overrides)
        except SolverError as err:
            errors[f"lpgd tau={tau:g}"] = str(err)
    try:
        exact = _layer_gradient(layer, base, weights, gradient="exact")
    except SolverError as err:
        exact = None
        errors["exact"] = str(err)
    fd = (
        None
        if fd_step is None
        else _finite_differences(layer, base, weights, batched, float(fd_step))
    )

    def flat(grads):
        return None if grads is None else np.concatenate([np.ravel(g) for g in grads])

    rows = []
    for index, name in enumerate([*names, "(all)"]):

        def pick(grads, index=index):
            if grads is None:
                return None
            return flat(grads) if index == len(names) else grads[index]

        ref_fd, ref_exact = pick(fd), pick(exact)
        methods: list[tuple[str, float | None, Any]] = [
            ("fd", None, ref_fd),
            ("exact", None, ref_exact),
        ]
        methods += [("lpgd", t, pick(lpgd[t])) for t in taus if t in lpgd]
        for method, method_tau, grad in methods:
            if grad is None:
                continue
            rows.append(
                {
                    "parameter": name,
                    "method": method,
                    "tau": method_tau,
                    "norm": float(np.linalg.norm(grad)),
                    "cosine_fd": None
                    if ref_fd is None or method == "fd"
                    else _cosine(grad, ref_fd),
                    "rel_error_fd": None
                    if ref_fd is None or method == "fd"
                    else _relative_error(grad, ref_fd),
                    "cosine_exact": None
                    if ref_exact is None or method != "lpgd"
                    else _cosine(grad, ref_exact),
                    "rel_error_exact": None
                    if ref_exact is None or method != "lpgd"
                    else _relative_error(grad, ref_exact),
                }
            )
    gradients = {
        name: {
            "fd": None if fd is None else fd[i],
            "exact": None if exact is None else exact[i],
            "lpgd": {tau: grads[i] for tau, grads in lpgd.items()},
        }
        for i, name in enumerate(names)
    }
    return GradientComparison(
        taus=taus,
        fd_step=None if fd_step is None else float(fd_step),
        seed=None if loss_weights is not None else seed,
        parameters=names,
        gradients=gradients,
        errors=errors,
        rows=rows,
    )
