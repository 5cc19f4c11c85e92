"""quad_form(x, Q) with a PSD (or NSD) parameter Q in the objective: a parametrized P.

Values and gradients against the closed form of an unconstrained QP and against
finite differences of CVXPY solves with Q written in as a constant.
"""

import cvxpy as cp
import numpy as np
import pytest
import torch

import cvxlpgd
from tests.reference import CLARABEL_EXACT, central_differences, relative_error
from tests.test_gradients import SCS_TIGHT

N = 3
TIGHT = {
    "SCS": SCS_TIGHT,
    "CLARABEL": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10},
    "MOREAU": {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10},
}
PATHS = [
    ("MOREAU", "lpgd", {"tau": 1e-4}),
    ("SCS", "lpgd", {"tau": 1e-4}),
    ("CLARABEL", "lpgd", {"tau": 1e-4}),
    ("MOREAU", "exact", {"exact_backend": "moreau"}),
]


def random_psd(rng, shift=1.0):
    M = rng.standard_normal((N, N))
    return M @ M.T + shift * np.eye(N)


def forms():
    """Objectives whose quadratic term is ½xᵀPx with P = P(Q) linear in the parameters.

    Returns ``{name: (problem, x, params, P_of, P_adjoint)}``: ``P_of(values)`` is P,
    ``P_adjoint(dP)`` the gradients of the parameters for a gradient dP in P.
    """
    x = cp.Variable(N, name="x")
    q = cp.Parameter(N, name="q")
    Q = cp.Parameter((N, N), PSD=True, name="Q")
    Q2 = cp.Parameter((N, N), PSD=True, name="Q2")
    Nsd = cp.Parameter((N, N), NSD=True, name="Nsd")
    inactive = [x <= 100]  # SCS needs a constraint row; the optimum stays interior
    half = 0.5
    return {
        "psd": (
            cp.Problem(cp.Minimize(half * cp.quad_form(x, Q) + q @ x), inactive),
            x,
            [Q, q],
            lambda v: v["Q"],
            lambda dP: {"Q": dP},
        ),
        "sum": (
            cp.Problem(cp.Minimize(half * cp.quad_form(x, Q + Q2) + q @ x), inactive),
            x,
            [Q, Q2, q],
            lambda v: v["Q"] + v["Q2"],
            lambda dP: {"Q": dP, "Q2": dP},
        ),
        "negated": (
            cp.Problem(cp.Minimize(half * cp.quad_form(x, -Nsd) + q @ x), inactive),
            x,
            [Nsd, q],
            lambda v: -v["Nsd"],
            lambda dP: {"Nsd": -dP},
        ),
        "maximize": (
            cp.Problem(cp.Maximize(half * cp.quad_form(x, Nsd) - q @ x), inactive),
            x,
            [Nsd, q],
            lambda v: -v["Nsd"],
            lambda dP: {"Nsd": -dP},
        ),
        "two terms": (
            cp.Problem(
                cp.Minimize(half * cp.quad_form(x, Q) + q @ x + half * cp.quad_form(x, Q2)),
                inactive,
            ),
            x,
            [Q, Q2, q],
            lambda v: v["Q"] + v["Q2"],
            lambda dP: {"Q": dP, "Q2": dP},
        ),
    }


def form_values(rng):
    return {
        "Q": random_psd(rng),
        "Q2": random_psd(rng, 0.5),
        "Nsd": -random_psd(rng),
        "q": rng.standard_normal(N),
    }


def closed_form(form, seed):
    """The problem of ``form``, random values, a loss ℓ = wᵀx* and, in closed form, x* and
    ℓ's gradient per parameter name."""
    problem, x, params, P_of, P_adjoint = forms()[form]
    rng = np.random.default_rng(seed)
    values = form_values(rng)
    w = rng.standard_normal(N)
    # x* = −P⁻¹q; for ℓ = wᵀx*: ∂ℓ/∂q = −P⁻¹w and, within symmetric matrices,
    # ∂ℓ/∂P = −½(g x*ᵀ + x* gᵀ) with g = P⁻¹w.
    P = P_of(values)
    x_star = -np.linalg.solve(P, values["q"])
    g = np.linalg.solve(P, w)
    expected = {"q": -g, **P_adjoint(-0.5 * (np.outer(g, x_star) + np.outer(x_star, g)))}
    return problem, x, params, values, w, x_star, expected


@pytest.mark.parametrize("form", list(forms()))
@pytest.mark.parametrize("solver, gradient, options", PATHS)
def test_values_and_gradients_match_the_closed_form(form, solver, gradient, options):
    problem, x, params, values, w, x_star, expected = closed_form(form, 0)
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x], solver=solver, gradient=gradient, solver_args=TIGHT[solver], **options
    )
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    (x_out,) = layer(*tensors)
    (torch.tensor(w) * x_out).sum().backward()
    assert np.allclose(x_out.detach().numpy(), x_star, atol=1e-7)
    for p, tensor in zip(params, tensors):
        error = relative_error(tensor.grad.numpy(), expected[p.name()])
        assert error < 1e-6, (p.name(), error)


def constrained_qp(Q, q, h):
    """min ½xᵀQx + qᵀx  s.t.  Gx ≤ h, with two of the three rows active at the optimum."""
    x = cp.Variable(N, name="x")
    G = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0], [1.0, 0.0, 1.0]])
    limit = G @ x <= h
    problem = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + q @ x), [limit])
    return problem, x, limit


CONSTRAINED = {
    "Q": random_psd(np.random.default_rng(4)),
    "q": np.array([-3.0, -2.0, 1.0]),
    "h": np.array([0.2, -1.0, 3.0]),
}


@pytest.fixture(scope="module")
def constrained_reference():
    """Outputs and finite-difference gradients, re-solving with every value a constant."""
    rng = np.random.default_rng(5)
    weights = [rng.standard_normal(N), rng.standard_normal(N)]

    def outputs(values):
        problem, x, limit = constrained_qp(values["Q"], values["q"], values["h"])
        problem.solve(**CLARABEL_EXACT)
        return [x.value, limit.dual_value]

    def loss(values):
        return float(sum(w @ out for w, out in zip(weights, outputs(values))))

    fd = central_differences(loss, CONSTRAINED, ["Q", "q", "h"], step=1e-5, symmetric=("Q",))
    return outputs(CONSTRAINED), weights, fd


@pytest.mark.parametrize("solver, gradient, options", PATHS)
def test_constrained_gradients_match_finite_differences(
    constrained_reference, solver, gradient, options
):
    (x_ref, dual_ref), weights, fd = constrained_reference
    assert np.sum(dual_ref > 1e-3) == 2  # two active rows, one inactive: a real test
    Q = cp.Parameter((N, N), PSD=True, name="Q")
    q, h = cp.Parameter(N, name="q"), cp.Parameter(N, name="h")
    problem, x, limit = constrained_qp(Q, q, h)
    layer = cvxlpgd.CvxpyLayer(
        problem,
        [Q, q, h],
        [x, limit],
        solver=solver,
        gradient=gradient,
        solver_args=TIGHT[solver],
        **options,
    )
    tensors = [torch.tensor(CONSTRAINED[name], requires_grad=True) for name in "Qqh"]
    x_out, dual_out = layer(*tensors)
    assert np.allclose(x_out.detach().numpy(), x_ref, atol=1e-6)
    assert np.allclose(dual_out.detach().numpy(), dual_ref, atol=1e-6)
    sum(torch.tensor(w) @ out for w, out in zip(weights, (x_out, dual_out))).backward()
    for name, tensor in zip("Qqh", tensors):
        error = relative_error(tensor.grad.numpy(), fd[name])
        assert error < 1e-4, (name, error)


@pytest.mark.parametrize("solver", ["MOREAU", "SCS"])
def test_a_batch_of_matrices_is_solved_element_by_element(solver):
    problem, x, params, _, _ = forms()["psd"]
    rng = np.random.default_rng(6)
    Qs = np.stack([random_psd(rng) for _ in range(4)])
    qs = rng.standard_normal((4, N))
    layer = cvxlpgd.CvxpyLayer(
        problem, params, [x], solver=solver, solver_args=TIGHT[solver], tau=1e-4
    )
    Q_t = torch.tensor(Qs, requires_grad=True)
    (x_out,) = layer(Q_t, torch.tensor(qs))
    x_out.sum().backward()
    for i in range(4):
        x_star = -np.linalg.solve(Qs[i], qs[i])
        g = np.linalg.solve(Qs[i], np.ones(N))
        assert np.allclose(x_out[i].detach().numpy(), x_star, atol=1e-7)
        expected = -0.5 * (np.outer(g, x_star) + np.outer(x_star, g))
        assert relative_error(Q_t.grad[i].numpy(), expected) < 1e-6


def small_problem(**attributes):
    x = cp.Variable(N, name="x")
    Q = cp.Parameter((N, N), name="Q", **attributes)
    q = cp.Parameter(N, name="q")
    return x, Q, q


def test_quad_form_parameter_in_a_constraint_is_refused():
    x, Q, q = small_problem(PSD=True)
    problem = cp.Problem(cp.Minimize(q @ x), [cp.quad_form(x, Q) <= 1])
    with pytest.raises(
        ValueError,
        match="cannot stay parametric in a constraint.*"
        r"sum_squares\(F @ x\)",
    ):
        cvxlpgd.CvxpyLayer(problem, [Q, q], [x])


def test_conic_only_forms_are_refused_with_the_alternatives():
    x, Q, q = small_problem(PSD=True)
    problem = cp.Problem(cp.Minimize(cp.quad_form(x, Q) + q @ x), [x >= -1])
    alternatives = "gradient='lpgd'.*exact_backend='moreau'"
    with pytest.raises(ValueError, match="exact_backend='diffcp'.*" + alternatives):
        cvxlpgd.CvxpyLayer(problem, [Q, q], [x], gradient="exact", exact_backend="diffcp")
    with pytest.raises(ValueError, match="solver='ECOS'.*" + alternatives):
        cvxlpgd.CvxpyLayer(problem, [Q, q], [x], solver="ECOS")
    layer = cvxlpgd.CvxpyLayer(problem, [Q, q], [x], solver="SCS")
    values = [torch.eye(N, dtype=torch.float64, requires_grad=True), torch.ones(N)]
    with pytest.raises(ValueError, match="exact_backend='diffcp'"):
        layer(*values, gradient="exact")
    (x_out,) = layer(*values)  # the layer stays usable
    assert np.allclose(x_out.detach().numpy(), -0.5 * np.ones(N), atol=1e-5)


def test_undeclared_or_unsupported_quad_form_parameters_are_named():
    x, Q, q = small_problem(symmetric=True)
    with pytest.raises(ValueError, match="needs Q declared PSD=True"):
        cvxlpgd.CvxpyLayer(cp.Problem(cp.Minimize(cp.quad_form(x, Q) + q @ x)), [Q, q], [x])
    x, Q, q = small_problem(PSD=True)
    inside = cp.Problem(cp.Minimize(cp.pos(cp.quad_form(x, Q) - 1) + q @ x), [x >= -1])
    with pytest.raises(ValueError, match="inside another function"):
        cvxlpgd.CvxpyLayer(inside, [Q, q], [x], solver="SCS")
    Q.value, q.value = np.eye(N), np.ones(N)  # with values, CVXPY would fix Q at them
    with pytest.raises(ValueError, match="inside another function"):
        cvxlpgd.CvxpyLayer(inside, [Q, q], [x], solver="SCS")


def test_a_value_that_is_not_psd_is_refused():
    problem, x, params, _, _ = forms()["psd"]
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], solver="SCS")
    with pytest.raises(ValueError, match="'Q' is declared PSD but has a negative eigenvalue"):
        layer(torch.tensor(-np.eye(N)), torch.ones(N, dtype=torch.float64))


@pytest.mark.parametrize("active_set", [True, False], ids=["active-set", "moreau"])
@pytest.mark.parametrize("form", list(forms()))
def test_exact_gradient_with_every_default(form, active_set):
    """gradient="exact" and nothing else: exact_backend="auto" takes a derivative that
    covers a parametrized P, without the user naming it: the active set's (a QP), or
    Moreau's when the layer keeps off the active set."""
    problem, x, params, values, w, x_star, expected = closed_form(form, 1)
    layer = cvxlpgd.CvxpyLayer(problem, params, [x], gradient="exact", active_set=active_set)
    backend = "active-set" if active_set else "moreau"
    assert f"exact_backend='auto' ({backend})" in repr(layer)
    tensors = [torch.tensor(values[p.name()], requires_grad=True) for p in params]
    (x_out,) = layer(*tensors)
    (torch.tensor(w) * x_out).sum().backward()
    stats = layer.solver_stats
    assert stats.exact_backend == backend
    assert stats.active_set_predicted == (1 if active_set else 0)
    assert np.allclose(x_out.detach().numpy(), x_star, atol=1e-6)
    for p, tensor in zip(params, tensors):
        assert relative_error(tensor.grad.numpy(), expected[p.name()]) < 1e-5, p.name()
