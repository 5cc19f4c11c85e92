r"""Diagnostics: how good is an LPGD gradient, which τ to use, and why is it zero?

Three tools, all plain NumPy on the inside (plotting is optional):

* :func:`compare_gradients` — for each parameter, the LPGD gradient at several τ next
  to the exact gradient (diffcp) and to central finite differences of the solution
  map, for one linear loss ``ℓ(θ) = Σ_k ⟨w_k, output_k(θ)⟩``.
* :func:`tau_scan` — gradient norm and agreement with the exact gradient as τ varies.
* :class:`ZeroGradientWarning` — raised (once per layer) by the backward pass when
  every LPGD perturbed solve returned the unperturbed solution, so that the LPGD
  gradient is zero because τ is too small for the problem's scale.

Zero-gradient detection
-----------------------
LPGD's gradient is a finite difference of the Lagrangian's data gradient
``G(x, y) = (x, −y, y xᵀ, ½ x xᵀ)`` mapped to the parameters by the adjoint of the
affine parameter → data map, ``g(x, y) = Tᵀ G(x, y)``. For each batch element with a
nonzero incoming gradient and each solved side σ,

    move_σ = ‖g(x_σ, y_σ) − g(x*, y*)‖₂,     scale = ‖g(x*, y*)‖₂,

and the perturbed solve "returned the unperturbed solution" when
``move_σ ≤ rtol · scale + atol``: ``rtol`` is ten times the solver's tolerance
(:func:`solver_tolerance`; 1e-6 for SCS's default ``eps = 1e-7``, 1e-7 for
Clarabel and ECOS), because below it a movement cannot be told from the solver's
own error, and ``atol = 1e-10``. Movement is measured through the parameters
because a perturbation can change parts of (x, y) that no parameter sees: on the LP
``maximize rᵀw`` a small cost perturbation changes the dual of ``Σw = 1`` but not the
vertex w, and the gradient in r is exactly zero.

A zero gradient is not always a mistake: when the loss is already optimal along the
perturbation (an LP whose solution sits at the vertex the loss prefers) no τ moves
the loss-decreasing side, and zero is the right answer. So when every element and
side is unmoved, the hook re-solves the loss-decreasing side once more at
``τ_probe = 100 · max(τ, τ̂)`` (:func:`probe_larger_tau`, at most four batch
elements): only when that moves the solution is τ too small, and the warning fires.
After five genuine zeros a layer is no longer checked (converged training would
otherwise pay a probe solve per step).

Suggested τ. The perturbed problem has cost ``c + στ dx`` and right-hand side
``b − στ dy``; its solution moves once the perturbation is comparable to the data it
competes with (on an LP: once τ·dx reaches the gaps between the costs of vertices).
The estimate per element is

    τ̂ = min( max(‖c‖∞, ‖Aᵀy*‖∞) / ‖dx‖∞ ,  max(‖b‖∞, ‖s*‖∞) / ‖dy‖∞ )

(a term is left out when its incoming gradient is zero; ``‖Aᵀy*‖∞ = ‖c + Px*‖∞`` is
the magnitude of the objective's slope at the solution, which stands in for ‖c‖ when
the linear cost is small), and the warning names the median over the batch. It is an
order of magnitude, not a threshold: try τ between τ̂ and 10 τ̂, or scan with
:func:`tau_scan`.
"""

from __future__ import annotations

import math
import threading
import warnings
import weakref
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from cvxlpgd.engine import BatchEngine
from cvxlpgd.errors import SolverError
from cvxlpgd.lpgd import DataGradient, perturbed_costs
from cvxlpgd.solvers import SOLVERS, get_backend
from cvxlpgd.solvers.clarabel_backend import clarabel_settings
from cvxlpgd.solvers.ecos_backend import ecos_settings
from cvxlpgd.solvers.scs_backend import scs_settings

__all__ = [
    "ZeroGradientWarning", "ZeroGradientReport", "GradientComparison", "TauScan",
    "compare_gradients", "tau_scan", "zero_gradient_report", "suggest_tau",
    "solver_tolerance", "probe_larger_tau", "warn_if_zero_gradient",
]

#: Default τ values of :func:`compare_gradients`.
DEFAULT_TAUS = (1e-3, 1e-2, 1e-1, 1.0)
#: A perturbed solve counts as unmoved below this many times the solver's tolerance.
ZERO_RTOL_FACTOR = 10.0
#: Absolute floor of that test, for solutions whose parameter gradient is zero.
ZERO_ATOL = 1e-10
# Genuine zeros after which a layer is no longer checked (converged training would
# otherwise pay a probe solve per step).
_MAX_GENUINE = 5
# Elements per forward call of the finite differences (bounds the memory of one call).
_FD_CHUNK = 256


class ZeroGradientWarning(UserWarning):
    """The LPGD gradient is zero: no perturbed solve moved the solution.

    Raised through :func:`warnings.warn` by the backward pass of a
    :class:`cvxlpgd.CvxpyLayer`, at most once per layer. The message names the τ that
    was used and an estimated τ scale that would move the solution (see
    :func:`suggest_tau`). Silence it with
    ``warnings.simplefilter("ignore", cvxlpgd.ZeroGradientWarning)``.
    """


@dataclass(frozen=True)
class ZeroGradientReport:
    """Outcome of :func:`zero_gradient_report` when the LPGD gradient is zero.

    Attributes
    ----------
    tau : float
        The τ of the backward pass.
    suggested_tau : float
        Estimated τ scale that moves the solution (:func:`suggest_tau`); ``nan`` when
        it cannot be estimated.
    elements : int
        Batch elements with a nonzero incoming gradient (all of them unmoved).
    max_move : float
        Largest relative movement ``move_σ / scale`` seen over elements and sides.
    probe_tau : float or None
        The larger τ at which a probe re-solve did move the solution (set by the
        layer's hook, :func:`warn_if_zero_gradient`).
    """

    tau: float
    suggested_tau: float
    elements: int
    max_move: float
    probe_tau: float | None = None

    def message(self) -> str:
        """The warning text.

        Returns
        -------
        str
        """
        if math.isfinite(self.suggested_tau):
            advice = (f"try tau of the order of {self.suggested_tau:.3g} "
                      f"(between {self.suggested_tau:.2g} and {10 * self.suggested_tau:.2g}; "
                      "estimated as the cost magnitude over the incoming gradient, "
                      "max(|c|, |A'y*|) / |dx|)")
        else:
            advice = "try a larger tau"
        probe = ("" if self.probe_tau is None else
                 f"; a re-solve with tau={self.probe_tau:.3g} does move it")
        return (f"LPGD gradient is zero: with tau={self.tau:g} no perturbed solve moved the "
                f"solution beyond solver accuracy ({self.elements} batch element(s), largest "
                f"relative change {self.max_move:.1e}{probe}), so tau is too small for this "
                f"problem's scale; {advice}. cvxlpgd.tau_scan(layer, ...) compares taus. "
                "This warning is shown once per layer.")


# Layers that already warned, layers under diagnosis (no warning, report kept), and
# the last report of each layer under diagnosis. Weak: diagnostics must not keep
# layers alive. Keyed by the layer, not the thread: autograd may run a backward pass
# on another thread (device threads) than the one that called it.
_WARNED: weakref.WeakSet = weakref.WeakSet()
_QUIET: weakref.WeakSet = weakref.WeakSet()
_LAST_REPORT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GENUINE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@contextmanager
def _diagnosing(layer):
    """Inside: the layer's backward records zero-gradient reports instead of warning."""
    with _LOCK:
        was_quiet = layer in _QUIET
        _QUIET.add(layer)
        _LAST_REPORT.pop(layer, None)
    try:
        yield
    finally:
        with _LOCK:
            if not was_quiet:
                _QUIET.discard(layer)


def suggest_tau(c: np.ndarray, b: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                Aty: np.ndarray | None = None, s: np.ndarray | None = None) -> float:
    r"""Estimated τ scale at which the LPGD perturbation moves the solution.

    Per batch element, ``min(max(‖c‖∞, ‖Aᵀy*‖∞) / ‖dx‖∞, max(‖b‖∞, ‖s*‖∞) / ‖dy‖∞)``
    over the terms whose incoming gradient is nonzero; the median over elements (see
    the module docstring for the reasoning).

    Parameters
    ----------
    c, b : numpy.ndarray
        Cost (n, B) and right-hand side (m, B) of the forward problems.
    dx, dy : numpy.ndarray
        Incoming gradients (n, B) and (m, B).
    Aty : numpy.ndarray, optional
        ``Aᵀy*`` (n, B) at the forward solutions.
    s : numpy.ndarray, optional
        Slacks ``s*`` (m, B) at the forward solutions.

    Returns
    -------
    float
        The estimate, or ``nan`` when every incoming gradient is zero or the data are.
    """
    def inf_norm(a):
        return np.abs(a).max(axis=0) if a.size else np.zeros(a.shape[1])

    cost = inf_norm(c) if Aty is None else np.maximum(inf_norm(c), inf_norm(Aty))
    rhs = inf_norm(b) if s is None else np.maximum(inf_norm(b), inf_norm(s))
    gx, gy = inf_norm(dx), inf_norm(dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where((gx > 0) & (cost > 0), cost / gx, np.inf)
        ty = np.where((gy > 0) & (rhs > 0), rhs / gy, np.inf)
    per_element = np.minimum(tx, ty)
    per_element = per_element[np.isfinite(per_element)]
    return float(np.median(per_element)) if per_element.size else float("nan")


def solver_tolerance(solver: str, settings: dict | None = None) -> float:
    """The relative accuracy a solver is asked for: its largest stopping tolerance.

    Parameters
    ----------
    solver : str
        Solver name: ``"SCS"``, ``"CLARABEL"`` or ``"ECOS"`` (case-insensitive).
    settings : dict, optional
        The user's solver settings (merged over the backend's defaults, as the
        backends do).

    Returns
    -------
    float
        SCS: ``max(eps_abs, eps_rel)``; Clarabel: ``max(tol_gap_abs, tol_gap_rel,
        tol_feas)``; ECOS: ``max(feastol, abstol, reltol)``.

    Raises
    ------
    ValueError
        For an unknown solver name or invalid settings.
    """
    name = solver.upper() if isinstance(solver, str) else solver
    if name == "SCS":
        merged = scs_settings(settings)
        return float(max(merged["eps_abs"], merged["eps_rel"]))
    if name == "CLARABEL":
        merged = clarabel_settings(settings)
        return float(max(merged.tol_gap_abs, merged.tol_gap_rel, merged.tol_feas))
    if name == "ECOS":
        merged = ecos_settings(settings)
        # ECOS's own defaults (1e-8) apply to the keys the user leaves out.
        return float(max(merged.get(k, 1e-8) for k in ("feastol", "abstol", "reltol")))
    raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVERS)}")


def zero_gradient_report(state, gradient, dx: np.ndarray, dy: np.ndarray, tau: float, *,
                         rtol: float = 1e-6, atol: float = ZERO_ATOL
                         ) -> ZeroGradientReport | None:
    """Whether every LPGD perturbed solve returned the unperturbed solution.

    Parameters
    ----------
    state : cvxlpgd.engine.ForwardState
        The forward state (template, batch data, forward solutions).
    gradient : cvxlpgd.engine.BatchGradient
        The LPGD backward result; ``gradient.perturbed[i]`` maps side (+1/−1) to the
        perturbed :class:`~cvxlpgd.solvers.Solution` of element ``i``.
    dx, dy : numpy.ndarray
        Incoming gradients (n, B) and (m, B).
    tau : float
        The τ of the backward pass.
    rtol : float, default 1e-6
        Relative movement tolerance (the layer's hook uses ten times the solver
        tolerance, :func:`solver_tolerance`).
    atol : float, default 1e-10
        Absolute floor: a side is unmoved when ``move ≤ rtol · scale + atol``.

    Returns
    -------
    ZeroGradientReport or None
        A report when every element with a nonzero incoming gradient is unmoved on
        every side; None otherwise (also when no element has an incoming gradient, or
        the backward result carries no perturbed solutions).
    """
    active = _active(dx, dy)
    if not active or len(gradient.perturbed) != dx.shape[1]:
        return None
    sides = set.intersection(*(set(gradient.perturbed[i]) for i in active))
    if not sides:
        return None
    # This runs after every LPGD backward pass: a few elements first, since one that
    # moved settles it (the usual case) without touching the whole batch.
    largest = _largest_relative_move(state, gradient, active[:_SAMPLE], sides, rtol, atol)
    if largest is None:
        return None
    if len(active) > _SAMPLE:
        largest = _largest_relative_move(state, gradient, active, sides, rtol, atol)
        if largest is None:
            return None
    return ZeroGradientReport(tau=float(tau), suggested_tau=_suggest_for(state, dx, dy, active),
                              elements=len(active), max_move=largest)


_SAMPLE = 4


def _largest_relative_move(state, gradient, elements, sides, rtol, atol) -> float | None:
    """Largest relative move of G over ``elements`` and ``sides``; None once one moved."""
    template = state.template
    star = _lagrangian_columns(template, state.x[:, elements], state.y[:, elements])
    scales = _parameter_norms(template, star)
    largest = 0.0
    for sign in sorted(sides):  # the first side that moved ends the check
        moves = _parameter_norms(template, _moved_minus_star(
            template, [gradient.perturbed[i][sign] for i in elements], star))
        if np.any(moves > rtol * scales + atol):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(scales > 0, moves / scales, np.where(moves > 0, np.inf, 0.0))
        largest = max(largest, float(relative.max()))
    return largest


def _active(dx: np.ndarray, dy: np.ndarray) -> list[int]:
    """Batch elements with a nonzero incoming gradient (the others cannot move)."""
    return np.flatnonzero(np.any(dx != 0, axis=0) | np.any(dy != 0, axis=0)).tolist()


def _lagrangian_columns(template, X: np.ndarray, Y: np.ndarray) -> DataGradient:
    """G(x, y) = (x, −y, y xᵀ, ½ x xᵀ) on the patterns, one column per (x, y) column.

    The batched form of :func:`cvxlpgd.lpgd.lagrangian_data_gradient`.
    """
    A, P = template.A_pattern, template.P_pattern
    return DataGradient(dc=X, db=-Y, dA_data=Y[A.rows] * X[A.cols],
                        dP_data=None if P is None else 0.5 * X[P.rows] * X[P.cols])


def _moved_minus_star(template, solutions, star: DataGradient) -> DataGradient:
    """G(x_σ, y_σ) − G(x*, y*) for perturbed solutions in the columns' order."""
    X = np.column_stack([sol.x for sol in solutions])
    Y = np.column_stack([sol.y for sol in solutions])
    return _lagrangian_columns(template, X, Y) - star


def _suggest_for(state, dx, dy, elements) -> float:
    """:func:`suggest_tau` on the batch elements ``elements`` of a forward state."""
    batch, template = state.batch, state.template
    Aty = np.column_stack([template.A_pattern.matrix(batch.A_data[:, i]).T
                           @ state.solutions[i].y for i in elements])
    s = np.column_stack([state.solutions[i].s for i in elements])
    return suggest_tau(batch.c[:, elements], batch.b[:, elements], dx[:, elements],
                       dy[:, elements], Aty=Aty, s=s)


def _parameter_norms(template, gradient: DataGradient) -> np.ndarray:
    """‖Tᵀ G‖₂ over all parameters, for each column of a data gradient."""
    grads = template.parameter_gradient(gradient.dc, gradient.db, gradient.dA_data,
                                        gradient.dP_data)
    total = np.zeros(gradient.dc.shape[1])
    for grad in grads:
        total += (grad.reshape(len(total), -1) ** 2).sum(axis=1)
    return np.sqrt(total)


def probe_larger_tau(state, dx: np.ndarray, dy: np.ndarray, tau: float, *, sign: int = +1,
                     solver: str = "SCS", settings: dict | None = None, rtol: float = 1e-6,
                     atol: float = ZERO_ATOL, max_elements: int = 4) -> bool:
    """Whether the perturbed solve on side ``sign`` moves the solution at this (large) τ.

    Tells "τ is too small" from a genuine zero: when the loss is already optimal
    along the LPGD perturbation (an LP whose solution sits at the vertex the loss
    prefers), no τ moves the upper solution and the zero gradient is correct.

    Parameters
    ----------
    state : cvxlpgd.engine.ForwardState
        The forward state (the probe sets up its own solver workspaces).
    dx, dy : numpy.ndarray
        Incoming gradients (n, B) and (m, B).
    tau : float
        The probe's τ (the hook uses ``100 · max(τ, τ̂)``).
    sign : int, default +1
        Side to probe: +1 is the loss-decreasing (upper) perturbation.
    solver : str, default "SCS"
        Solver of the layer.
    settings : dict, optional
        Solver settings of the call.
    rtol, atol : float
        Movement tolerance, as for :func:`zero_gradient_report`.
    max_elements : int, default 4
        Probe at most this many batch elements (those with an incoming gradient).

    Returns
    -------
    bool
        True when a probed solution moves, or the probe is not solved to optimality
        (a larger τ changes the problem: it becomes unbounded, for instance).
    """
    template, batch = state.template, state.batch
    active = _active(dx, dy)[:max_elements]
    backend = get_backend(solver)
    solutions = []
    for i in active:
        A, P = BatchEngine.element_matrices(template, batch, i)
        forward = state.solutions[i]
        # A fresh workspace: the forward ones may be shared and carry solver state
        # (SCS's acceleration memory) into later solves; a probe must not touch them.
        workspace = backend.setup(A, P, template.cones, settings or {})
        c_new, b_new = perturbed_costs(sign, tau, 0.0, batch.c[:, i], batch.b[:, i], A,
                                       dx[:, i], dy[:, i], None, forward.x, forward.s)
        solution = workspace.solve(b_new, c_new, warm_start=(forward.x, forward.y, forward.s))
        if not solution.ok:
            return True
        solutions.append(solution)
    if not solutions:
        return False
    star = _lagrangian_columns(template, state.x[:, active], state.y[:, active])
    moves = _parameter_norms(template, _moved_minus_star(template, solutions, star))
    return bool(np.any(moves > rtol * _parameter_norms(template, star) + atol))


def warn_if_zero_gradient(layer, state, gradient, dx: np.ndarray, dy: np.ndarray,
                          options) -> ZeroGradientReport | None:
    """The layer's backward hook: warn once per layer when τ is too small to move LPGD.

    Three steps: (1) :func:`zero_gradient_report` — did every perturbed solve return
    the forward solution (tolerance: ``ZERO_RTOL_FACTOR`` × :func:`solver_tolerance`)?
    (2) :func:`probe_larger_tau` at ``100 · max(τ, τ̂)`` on the loss-decreasing side
    (the lower side for ``lpgd_mode="lower"``) — does a larger τ move it? (3) warn
    when it does. A zero that no τ removes (the loss is already optimal along the
    perturbation) is genuine and not reported; after ``_MAX_GENUINE`` genuine zeros the
    layer is no longer checked, so converged training costs no probe solves.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The layer whose backward pass ran (the warning is issued once per layer).
    state, gradient, dx, dy :
        As for :func:`zero_gradient_report`.
    options : cvxlpgd.layer.CallOptions
        The call's options (``tau``, ``lpgd_mode``, ``solver_args`` are read).

    Returns
    -------
    ZeroGradientReport or None
        The report when the gradient is zero because τ is too small; None otherwise.

    Warns
    -----
    ZeroGradientWarning
        The first time a layer's LPGD gradient is zero because τ is too small (not
        while :func:`compare_gradients` or :func:`tau_scan` examine the layer: they
        record the report instead).
    """
    with _LOCK:
        quiet = layer in _QUIET
        if not quiet and (layer in _WARNED or _GENUINE.get(layer, 0) >= _MAX_GENUINE):
            return None  # told already, or zeros here are genuine: skip the check's cost
    rtol = ZERO_RTOL_FACTOR * solver_tolerance(layer.solver, options.solver_args)
    report = zero_gradient_report(state, gradient, dx, dy, options.tau, rtol=rtol)
    if report is None:
        return None
    estimate = report.suggested_tau if math.isfinite(report.suggested_tau) else options.tau
    probe_tau = 100.0 * max(options.tau, estimate)
    sign = -1 if options.lpgd_mode == "lower" else +1
    if not probe_larger_tau(state, dx, dy, probe_tau, sign=sign, solver=layer.solver,
                            settings=options.solver_args, rtol=rtol):
        if not quiet:  # diagnostics probe small τ on purpose: their zeros don't count
            with _LOCK:
                _GENUINE[layer] = _GENUINE.get(layer, 0) + 1
        return None
    report = replace(report, probe_tau=probe_tau)
    with _LOCK:
        if quiet:
            _LAST_REPORT[layer] = report
            return report
        if layer in _WARNED:
            return report
        _WARNED.add(layer)
    warnings.warn(report.message(), ZeroGradientWarning, stacklevel=2)
    return report


# ---- gradient comparison ----------------------------------------------------------------

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
    if len(tensors) != len(layer.parameters_):
        names = ", ".join(p.name() for p in layer.parameters_)
        raise ValueError(f"expected {len(layer.parameters_)} tensors (for {names}), "
                         f"got {len(tensors)}")
    base = []
    for param, tensor in zip(layer.parameters_, tensors):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"parameter {param.name()!r} must be a torch.Tensor, "
                            f"got {type(tensor).__name__}")
        # float64 throughout: finite differences in float32 would drown in rounding.
        base.append(tensor.detach().to(device="cpu", dtype=torch.float64).clone())
    with torch.no_grad(), _diagnosing(layer):
        outputs = layer(*base)
    if loss_weights is None:
        rng = np.random.default_rng(seed)
        weights = [torch.from_numpy(rng.standard_normal(tuple(o.shape))) for o in outputs]
    else:
        if len(loss_weights) != len(outputs):
            raise ValueError(f"loss_weights must hold one array per output ({len(outputs)}), "
                             f"got {len(loss_weights)}")
        weights = []
        for k, (w, o) in enumerate(zip(loss_weights, outputs)):
            w = torch.as_tensor(np.asarray(w, dtype=float))
            if tuple(w.shape) != tuple(o.shape):
                raise ValueError(f"loss_weights[{k}] must have the output's shape "
                                 f"{tuple(o.shape)}, got {tuple(w.shape)}")
            weights.append(w)
    batched = [t.dim() == len(p.shape) + 1 for p, t in zip(layer.parameters_, base)]
    return base, outputs, weights, batched


def _layer_gradient(layer, base, weights, **call) -> list[np.ndarray]:
    """∂ℓ/∂θ through the layer's backward pass with the call's options."""
    inputs = [t.clone().requires_grad_(True) for t in base]
    with _diagnosing(layer):
        outputs = layer(*inputs, **call)
        loss = sum((w * o).sum() for w, o in zip(weights, outputs))
        loss.backward()
    return [np.zeros(tuple(t.shape)) if t.grad is None else t.grad.numpy().copy()
            for t in inputs]


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
    per_element = [[(t[b] if flag else t).numpy() for t, flag in zip(base, batched)]
                   for b in range(batch_size)]
    w_elements = [[(w[b] if any(batched) else w).numpy() for w in weights]
                  for b in range(batch_size)]
    rows = []  # (parameter index, target entries incl. batch index, sign, 1/(hi-lo)·factor,
    #            element b, parameter values)
    grads = [np.zeros(tuple(t.shape)) for t in base]
    for k, (param, flag) in enumerate(zip(layer.parameters_, batched)):
        elements = range(batch_size) if flag else [None]
        for b in elements:
            value = per_element[b if flag else 0][k]
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
    with torch.no_grad(), _diagnosing(layer):
        for start in range(0, len(rows), _FD_CHUNK):
            chunk = rows[start:start + _FD_CHUNK]
            inputs = [torch.from_numpy(np.stack([r[4][k] for r in chunk]))
                      for k in range(len(base))]
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
            if row["parameter"] == parameter and row["method"] == method and (
                    method != "lpgd" or row["tau"] == tau):
                return row
        raise KeyError((parameter, method, tau))

    def __str__(self) -> str:
        header = (f"{'parameter':<12} {'method':<16} {'norm':>9} {'cos(fd)':>8} "
                  f"{'relerr(fd)':>10} {'cos(exact)':>10} {'relerr(exact)':>13}")
        lines = [f"Gradient comparison: loss = sum_k <w_k, output_k>, finite-difference step "
                 f"{_format(self['fd_step'])}", header, "-" * len(header)]
        for row in self["rows"]:
            method = row["method"] if row["tau"] is None else f"lpgd tau={row['tau']:g}"
            lines.append(
                f"{row['parameter']:<12.12} {method:<16} {_format(row['norm'], '9.3g')} "
                f"{_format(row['cosine_fd'], '8.4f')} {_format(row['rel_error_fd'], '10.2e')} "
                f"{_format(row['cosine_exact'], '10.4f')} "
                f"{_format(row['rel_error_exact'], '13.2e')}")
        for method, message in self["errors"].items():
            lines.append(f"{method}: {message}")
        return "\n".join(lines)


def compare_gradients(layer, *tensors: torch.Tensor,
                      taus: Sequence[float] = DEFAULT_TAUS,
                      loss_weights: Sequence | None = None, fd_step: float | None = 1e-4,
                      seed: int = 0, rho: float | None = None,
                      lpgd_mode: str | None = None) -> GradientComparison:
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
            lpgd[tau] = _layer_gradient(layer, base, weights, gradient="lpgd", tau=tau,
                                        **overrides)
        except SolverError as err:
            errors[f"lpgd tau={tau:g}"] = str(err)
    try:
        exact = _layer_gradient(layer, base, weights, gradient="exact")
    except SolverError as err:
        exact = None
        errors["exact"] = str(err)
    fd = None if fd_step is None else _finite_differences(layer, base, weights, batched,
                                                          float(fd_step))

    def flat(grads):
        return None if grads is None else np.concatenate([np.ravel(g) for g in grads])

    rows = []
    for index, name in enumerate([*names, "(all)"]):
        def pick(grads, index=index):
            if grads is None:
                return None
            return flat(grads) if index == len(names) else grads[index]

        ref_fd, ref_exact = pick(fd), pick(exact)
        methods = [("fd", None, ref_fd), ("exact", None, ref_exact)]
        methods += [("lpgd", tau, pick(lpgd[tau])) for tau in taus if tau in lpgd]
        for method, tau, grad in methods:
            if grad is None:
                continue
            rows.append({
                "parameter": name, "method": method, "tau": tau,
                "norm": float(np.linalg.norm(grad)),
                "cosine_fd": None if ref_fd is None or method == "fd"
                else _cosine(grad, ref_fd),
                "rel_error_fd": None if ref_fd is None or method == "fd"
                else _relative_error(grad, ref_fd),
                "cosine_exact": None if ref_exact is None or method != "lpgd"
                else _cosine(grad, ref_exact),
                "rel_error_exact": None if ref_exact is None or method != "lpgd"
                else _relative_error(grad, ref_exact),
            })
    gradients = {
        name: {"fd": None if fd is None else fd[i],
               "exact": None if exact is None else exact[i],
               "lpgd": {tau: grads[i] for tau, grads in lpgd.items()}}
        for i, name in enumerate(names)}
    return GradientComparison(taus=taus, fd_step=None if fd_step is None else float(fd_step),
                              seed=None if loss_weights is not None else seed,
                              parameters=names, gradients=gradients, errors=errors, rows=rows)


# ---- τ scan ---------------------------------------------------------------------------

class TauScan(dict):
    """Result of :func:`tau_scan`: a plain dict that prints as a table.

    Notes
    -----
    Keys: ``"taus"``, ``"lpgd_norm"``, ``"cosine"`` (with the exact gradient),
    ``"rel_error"`` (to the exact gradient), ``"too_small"`` (True where every perturbed
    solve returned the unperturbed solution while a larger τ would move it: the
    zero-gradient warning's condition) — lists, one entry per τ —, and
    ``"exact_norm"`` (float), ``"suggested_tau"`` (the estimate of
    :func:`suggest_tau` at the first zero-gradient τ, or None).

    Attributes
    ----------
    ax : matplotlib.axes.Axes or None
        The plot, when :func:`tau_scan` was called with ``plot=True``.
    """

    ax = None

    def __str__(self) -> str:
        lines = [f"tau scan: exact gradient norm {self['exact_norm']:.4g}",
                 f"{'tau':>9} {'lpgd norm':>10} {'cos(exact)':>10} {'relerr(exact)':>13}  "
                 "tau too small", "-" * 59]
        for tau, norm, cos, err, zero in zip(self["taus"], self["lpgd_norm"], self["cosine"],
                                             self["rel_error"], self["too_small"]):
            lines.append(f"{tau:>9.3g} {norm:>10.4g} {cos:>10.4f} {err:>13.2e}  "
                         f"{'yes' if zero else ''}")
        if self["exact_norm"] <= 1e-8 * max([*self["lpgd_norm"], 1e-300]):
            lines.append("the exact gradient is numerically zero (an LP's vertex does not "
                         "move): the agreement columns compare with solver noise")
        if self["suggested_tau"] is not None:
            lines.append(f"zero LPGD gradients where tau is too small; estimated tau scale "
                         f"that moves the solution: {self['suggested_tau']:.3g}")
        return "\n".join(lines)


def tau_scan(layer, *tensors: torch.Tensor, taus: Sequence[float] = tuple(np.logspace(-4, 1, 11)),
             loss_weights: Sequence | None = None, seed: int = 0, plot: bool = False,
             ax=None) -> TauScan:
    """LPGD gradient norm and agreement with the exact gradient as τ varies.

    Same loss as :func:`compare_gradients` (a seeded random linear loss on the outputs
    unless ``loss_weights`` are given), all parameters concatenated.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The layer to examine (its ρ and LPGD mode are used).
    *tensors : torch.Tensor
        Parameter values, as for a call of the layer.
    taus : sequence of float, default ``numpy.logspace(-4, 1, 11)``
        The τ values, scanned in the given order.
    loss_weights : sequence of array_like, optional
        One array per output, of the output's shape.
    seed : int, default 0
        Seed of the random loss weights.
    plot : bool, default False
        Draw the gradient norm (log-log, with the exact norm as a horizontal line) and
        the cosine with the exact gradient (right axis) against τ.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure). Implies nothing unless ``plot``.

    Returns
    -------
    TauScan
        A dict (see :class:`TauScan`); ``print`` it for a table.

    Raises
    ------
    ImportError
        When ``plot=True`` and matplotlib is not installed.
    TypeError, ValueError
        For inputs the layer rejects, bad loss weights or an empty ``taus``.
    cvxlpgd.SolverError
        When a solve fails.
    """
    taus = [float(t) for t in taus]
    if not taus:
        raise ValueError("taus is empty: give at least one tau")
    if plot:
        plt = _pyplot()
    base, _, weights, _ = _prepare(layer, tensors, loss_weights, seed)
    exact = np.concatenate([g.ravel() for g in
                            _layer_gradient(layer, base, weights, gradient="exact")])
    norms, cosines, errors, too_small = [], [], [], []
    suggested = None
    for tau in taus:
        grad = np.concatenate([g.ravel() for g in
                               _layer_gradient(layer, base, weights, gradient="lpgd", tau=tau)])
        report = _LAST_REPORT.get(layer)
        norms.append(float(np.linalg.norm(grad)))
        cosines.append(_cosine(grad, exact))
        errors.append(_relative_error(grad, exact))
        too_small.append(report is not None)
        if report is not None and suggested is None and math.isfinite(report.suggested_tau):
            suggested = report.suggested_tau
    scan = TauScan(taus=taus, lpgd_norm=norms, cosine=cosines, rel_error=errors,
                   too_small=too_small,
                   exact_norm=float(np.linalg.norm(exact)), suggested_tau=suggested)
    if plot:
        scan.ax = _plot_scan(plt, scan, ax)
    return scan


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:  # optional dependency
        raise ImportError("tau_scan(plot=True) needs matplotlib, which is not installed: "
                          "pip install matplotlib (or cvxlpgd[examples])") from err
    return plt


def _plot_scan(plt, scan: TauScan, ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    taus = np.asarray(scan["taus"])
    # A zero norm cannot be drawn on a log axis: show it at the bottom as a marker.
    norms = np.asarray(scan["lpgd_norm"])
    floor = norms[norms > 0].min() / 10 if np.any(norms > 0) else 1e-12
    ax.loglog(taus, np.where(norms > 0, norms, floor), "o-", label="LPGD ‖∇‖")
    if scan["exact_norm"] > 0:
        ax.axhline(scan["exact_norm"], color="k", ls="--", label="exact ‖∇‖")
    ax.set_xlabel("τ")
    ax.set_ylabel("gradient norm")
    right = ax.twinx()
    right.semilogx(taus, scan["cosine"], "s:", color="tab:orange", label="cos(LPGD, exact)")
    right.set_ylim(-1.05, 1.05)
    right.set_ylabel("cosine with exact")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="best", fontsize="small")
    return ax

