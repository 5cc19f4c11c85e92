"""torch.compile of a model that contains the layer: one graph, eager values and gradients."""

import cvxpy as cp
import pytest
import torch
from torch._dynamo.utils import counters

import cvxlpgd


def box_problem():
    x = cp.Variable(3, name="x")
    c = cp.Parameter(3, name="c")
    h = cp.Parameter(3, name="h")
    return cp.Problem(cp.Minimize(c @ x + cp.sum_squares(x)), [x <= h]), [c, h], [x]


class Model(torch.nn.Module):
    """A linear map, the layer, a loss: what a user compiles."""

    def __init__(self, **layer_options):
        super().__init__()
        problem, params, outputs = box_problem()
        self.linear = torch.nn.Linear(4, 3, dtype=torch.float64)
        self.layer = cvxlpgd.CvxpyLayer(problem, params, outputs, **layer_options)
        self.h = torch.nn.Parameter(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64))

    def forward(self, z):
        (x,) = self.layer(self.linear(z), self.h)
        return (x**2).sum()


def gradients(model):
    return [p.grad.clone() for p in model.parameters()]


def inputs(count, batch=8):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 4, dtype=torch.float64, generator=generator) for _ in range(count)]


@pytest.mark.parametrize(
    "backend, options",
    [
        ("aot_eager", {"gradient": "lpgd", "solver": "SCS"}),
        ("aot_eager", {"gradient": "exact", "solver": "SCS"}),
        (
            "aot_eager",
            {
                "gradient": "exact",
                "solver": "MOREAU",
                "exact_backend": "moreau",
                "solver_args": {"solver": "ipm"},
            },
        ),
        ("inductor", {}),
    ],
)
def test_compiled_model_gives_eager_values_and_gradients_in_one_graph(backend, options):
    torch.manual_seed(0)
    model = Model(**options)
    compiled = torch.compile(model, fullgraph=True, backend=backend)  # a graph break fails
    torch._dynamo.reset()
    counters.clear()
    for z in inputs(5):
        model.zero_grad()
        loss = compiled(z)
        loss.backward()
        compiled_grads = gradients(model)
        model.zero_grad()
        eager_loss = model(z)
        eager_loss.backward()
        torch.testing.assert_close(loss, eager_loss, atol=1e-9, rtol=0)
        for got, expected in zip(compiled_grads, gradients(model)):
            torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)
        assert compiled_grads[0].abs().max() > 1e-3  # the gradient reaches the linear map
    assert counters["stats"]["unique_graphs"] == 1  # compiled once, no recompilation
    assert not counters["graph_break"]


def test_changing_batch_sizes_compile_at_most_twice_and_errors_keep_their_type():
    model = Model(solver="SCS")
    compiled = torch.compile(model, backend="aot_eager")
    torch._dynamo.reset()
    counters.clear()
    for batch in (8, 16, 5, 32):
        (z,) = inputs(1, batch)
        compiled(z).backward()
    # The first size compiles statically, the second once with a symbolic batch size.
    assert counters["stats"]["unique_graphs"] <= 2
    with pytest.raises(ValueError, match="'c' has non-finite values"):
        compiled(torch.full((8, 4), float("nan"), dtype=torch.float64))


def test_per_call_options_under_compile_take_the_eager_path_around_the_key():
    problem, params, outputs = box_problem()
    layer = cvxlpgd.CvxpyLayer(problem, params, outputs, solver="SCS")
    h = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)

    def loss(c, tau):
        return (layer(c, h, tau=tau)[0] ** 2).sum()

    compiled = torch.compile(loss, backend="aot_eager")
    c = torch.tensor([1.0, 0.5, -3.0], dtype=torch.float64, requires_grad=True)
    compiled(c, 0.5).backward()
    expected = c.grad.clone()
    c.grad = None
    loss(c, 0.5).backward()
    torch.testing.assert_close(expected, c.grad, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="tau must be a positive"):
        compiled(c, -1.0)
