r"""Zero-gradient detection: is the LPGD gradient zero because τ is too small?

:class:`ZeroGradientWarning` is raised (once per layer) by the backward pass when
every LPGD perturbed solve returned the unperturbed solution, so that the LPGD
gradient is zero because τ is too small for the problem's scale.

LPGD's gradient is a finite difference of the Lagrangian's data gradient
``G(x, y) = (x, −y, y xᵀ, ½ x xᵀ)`` mapped to the parameters by the adjoint of the
affine parameter → data map, ``g(x, y) = Tᵀ G(x, y)``. For each batch element with a
nonzero incoming gradient and each solved side σ,

    move_σ = ‖g(x_σ, y_σ) − g(x*, y*)‖₂,     scale = ‖g(x*, y*)‖₂,

and the perturbed solve "returned the unperturbed solution" when
``move_σ ≤ rtol · scale + atol``: ``rtol`` is ten times the solver's tolerance
(:func:`cvxlpgd.solvers.solver_tolerance`; 1e-6 for SCS's default ``eps = 1e-7``, 1e-7 for
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

The τ the warning suggests is :func:`cvxlpgd.lpgd.tau_estimate.suggest_tau`'s estimate.
"""

from __future__ import annotations

import math
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from cvxlpgd.errors import warn_user
from cvxlpgd.lpgd.formulas import DataGradient, lagrangian_data_gradient, perturbed_costs
from cvxlpgd.lpgd.tau_estimate import suggest_for_elements
from cvxlpgd.solvers import batch_solver

#: A perturbed solve counts as unmoved below this many times the solver's tolerance.
ZERO_RTOL_FACTOR = 10.0
#: Absolute floor of that test, for solutions whose parameter gradient is zero.
ZERO_ATOL = 1e-10
# Genuine zeros after which a layer is no longer checked (converged training would
# otherwise pay a probe solve per step).
_MAX_GENUINE = 5


class ZeroGradientWarning(UserWarning):
    """The LPGD gradient is zero: no perturbed solve moved the solution.

    Raised through :func:`warnings.warn` by the backward pass of a
    :class:`cvxlpgd.CvxpyLayer`, at most once per layer. The message names the τ that
    was used and an estimated τ scale that would move the solution (see
    :func:`cvxlpgd.lpgd.tau_estimate.suggest_tau`). Silence it with
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
        Estimated τ scale that moves the solution
        (:func:`cvxlpgd.lpgd.tau_estimate.suggest_tau`); ``nan`` when it cannot be
        estimated.
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
            advice = (
                f"try tau of the order of {self.suggested_tau:.3g} "
                f"(between {self.suggested_tau:.2g} and {10 * self.suggested_tau:.2g}; "
                "estimated as the cost magnitude over the incoming gradient, "
                "max(|c|, |A'y*|) / |dx|)"
            )
        else:
            advice = "try a larger tau"
        probe = (
            ""
            if self.probe_tau is None
            else f"; a re-solve with tau={self.probe_tau:.3g} does move it"
        )
        return (
            f"LPGD gradient is zero: with tau={self.tau:g} no perturbed solve moved the "
            f"solution beyond solver accuracy ({self.elements} batch element(s), largest "
            f"relative change {self.max_move:.1e}{probe}), so tau is too small for this "
            f"problem's scale; {advice}. cvxlpgd.tau_scan(layer, ...) compares taus. "
            "This warning is shown once per layer."
        )


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
def diagnosing(layer):
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


def last_report(layer) -> ZeroGradientReport | None:
    """The last zero-gradient report of a layer under :func:`diagnosing`, or None."""
    with _LOCK:
        return _LAST_REPORT.get(layer)


def zero_gradient_report(
    state,
    result,
    dx: np.ndarray,
    dy: np.ndarray,
    tau: float,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-10,
) -> ZeroGradientReport | None:
    """Whether every LPGD perturbed solve returned the unperturbed solution.

    Parameters
    ----------
    state : cvxlpgd.engine.state.ForwardState
        The forward state (template, batch data, forward solutions).
    result : cvxlpgd.lpgd.backward.LPGDResult
        The LPGD backward result: perturbed solutions by side (rows of
        ``result.active``, the elements with a nonzero incoming gradient).
    dx, dy : numpy.ndarray
        Incoming gradients (B, n) and (B, m).
    tau : float
        The τ of the backward pass.
    rtol : float, default 1e-6
        Relative movement tolerance (the layer's hook uses ten times the solver
        tolerance, :func:`cvxlpgd.solvers.solver_tolerance`).
    atol : float, default 1e-10
        Absolute floor: a side is unmoved when ``move ≤ rtol · scale + atol``.

    Returns
    -------
    ZeroGradientReport or None
        A report when every element with a nonzero incoming gradient is unmoved on
        every side; None otherwise (also when no element has an incoming gradient).
    """
    if result.active.size == 0 or not result.sides or result.fallbacks:
        return None  # a fallback means some perturbed problem changed: not a zero
    # This runs after every LPGD backward pass: a few elements first, since one that
    # moved settles it (the usual case) without touching the whole batch.
    rows = np.arange(result.active.size)
    largest = _largest_relative_move(state, result, rows[:_SAMPLE], rtol, atol)
    if largest is None:
        return None
    if rows.size > _SAMPLE:
        largest = _largest_relative_move(state, result, rows, rtol, atol)
        if largest is None:
            return None
    return ZeroGradientReport(
        tau=float(tau),
        suggested_tau=suggest_for_elements(state, dx, dy, result.active),
        elements=int(result.active.size),
        max_move=largest,
    )


_SAMPLE = 4


def _largest_relative_move(state, result, rows, rtol, atol) -> float | None:
    """Largest relative move of G over the active ``rows``; None once one moved."""
    template = state.template
    elements = result.active[rows]
    star = _lagrangian(template, state.x[elements], state.y[elements])
    scales = _parameter_norms(template, star)
    largest = 0.0
    for sign in sorted(result.sides):  # the first side that moved ends the check
        side = result.sides[sign]
        moves = _parameter_norms(template, _lagrangian(template, side.x[rows], side.y[rows]) - star)
        if np.any(moves > rtol * scales + atol):
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(scales > 0, moves / scales, np.where(moves > 0, np.inf, 0.0))
        largest = max(largest, float(relative.max()))
    return largest


def _lagrangian(template, X: np.ndarray, Y: np.ndarray) -> DataGradient:
    """G(x, y) on the template's patterns, one row per (x, y) row."""
    return lagrangian_data_gradient(X, Y, template.A_pattern, template.P_pattern)


def _parameter_norms(template, gradient: DataGradient) -> np.ndarray:
    """‖Tᵀ G‖₂ over all parameters, for each row of a data gradient."""
    grads = template.parameter_gradient(*gradient.parts())
    total = np.zeros(gradient.dc.shape[0])
    for grad in grads:
        total += (grad.reshape(len(total), -1) ** 2).sum(axis=1)
    return np.sqrt(total)


def probe_larger_tau(
    state,
    dx: np.ndarray,
    dy: np.ndarray,
    tau: float,
    *,
    sign: int = +1,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    max_elements: int = 4,
) -> bool:
    """Whether the perturbed solve on side ``sign`` moves the solution at this (large) τ.

    Tells "τ is too small" from a genuine zero: when the loss is already optimal
    along the LPGD perturbation (an LP whose solution sits at the vertex the loss
    prefers), no τ moves the upper solution and the zero gradient is correct.

    Parameters
    ----------
    state : cvxlpgd.engine.state.ForwardState
        The forward state; the probe solves with the same solver and settings, on a
        solver of its own (a shared one may carry state into later solves).
    dx, dy : numpy.ndarray
        Incoming gradients (B, n) and (B, m).
    tau : float
        The probe's τ (the hook uses ``100 · max(τ, τ̂)``).
    sign : int, default +1
        Side to probe: +1 is the loss-decreasing (upper) perturbation.
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
    template = state.template
    moving = np.any(dx != 0, axis=1) | np.any(dy != 0, axis=1)
    elements = np.flatnonzero(moving)[:max_elements]
    if elements.size == 0:
        return False
    batch = state.batch.rows(elements)
    c_new, b_new = perturbed_costs(
        sign,
        tau,
        0.0,
        batch,
        template.A_pattern,
        dx[elements],
        dy[elements],
        None,
        state.x[elements],
        state.s[elements],
    )
    solver = batch_solver(state.solution.solver, template.structure, state.settings)
    solution = solver.solve(
        batch.with_vectors(c_new, b_new),
        tuple(a[elements] for a in state.solution.point) if solver.supports_warm_start else None,
    )
    if not solution.ok.all():
        return True
    star = _lagrangian(template, state.x[elements], state.y[elements])
    moves = _parameter_norms(template, _lagrangian(template, solution.x, solution.y) - star)
    return bool(np.any(moves > rtol * _parameter_norms(template, star) + atol))


def warn_if_zero_gradient(
    layer, state, result, dx: np.ndarray, dy: np.ndarray, options
) -> ZeroGradientReport | None:
    """The layer's backward hook: warn once per layer when τ is too small to move LPGD.

    Three steps: (1) :func:`zero_gradient_report` — did every perturbed solve return
    the forward solution (tolerance: ``ZERO_RTOL_FACTOR`` × the solver's tolerance)?
    (2) :func:`probe_larger_tau` at ``100 · max(τ, τ̂)`` on the loss-decreasing side
    (the lower side for ``lpgd_mode="lower"``) — does a larger τ move it? (3) warn
    when it does. A zero that no τ removes (the loss is already optimal along the
    perturbation) is genuine and not reported; after ``_MAX_GENUINE`` genuine zeros the
    layer is no longer checked, so converged training costs no probe solves.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer
        The layer whose backward pass ran (the warning is issued once per layer).
    state, result, dx, dy :
        As for :func:`zero_gradient_report`.
    options : cvxlpgd.torch.layer.CallOptions
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
    rtol = ZERO_RTOL_FACTOR * state.tolerance
    report = zero_gradient_report(state, result, dx, dy, options.tau, rtol=rtol)
    if report is None:
        return None
    estimate = report.suggested_tau if math.isfinite(report.suggested_tau) else options.tau
    probe_tau = 100.0 * max(options.tau, estimate)
    sign = -1 if options.lpgd_mode == "lower" else +1
    if not probe_larger_tau(state, dx, dy, probe_tau, sign=sign, rtol=rtol):
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
    warn_user(report.message(), ZeroGradientWarning)
    return report
