"""How parameters, variables and outputs are named in errors and in ``print(layer)``.

CVXPY gives an unnamed leaf an automatic name built from its id (``param2``,
``var17``), which the user never wrote and cannot recognise. Such leaves are shown
with that name *and* their shape and position in the list the user passed, e.g.
``'param2' (unnamed, parameters[1], shape (3,))``; named leaves keep their name.
"""

from __future__ import annotations

import hashlib

import cvxpy as cp

#: CVXPY's prefix of automatic names, by the list a leaf is passed in.
_AUTOMATIC_PREFIX = {"parameters": "param", "variables": "var"}


def shape_text(shape) -> str:
    """A shape as Python writes a tuple: ``(3,)``, ``(2, 2)``, ``()``.

    Parameters
    ----------
    shape : sequence of int

    Returns
    -------
    str
    """
    dims = tuple(int(d) for d in shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


def is_unnamed(leaf) -> bool:
    """Whether a CVXPY parameter or variable carries CVXPY's automatic name.

    Parameters
    ----------
    leaf : cvxpy.Parameter or cvxpy.Variable

    Returns
    -------
    bool
        True for ``cp.Parameter(3)`` (named ``param<id>``) or ``cp.Variable(2)``
        (``var<id>``).
    """
    name = leaf.name()
    return any(name == f"{prefix}{leaf.id}" for prefix in _AUTOMATIC_PREFIX.values())


def leaf_label(leaf, position: int | None = None, kind: str = "parameters") -> str:
    """The leaf as an error message names it.

    Parameters
    ----------
    leaf : cvxpy.Parameter or cvxpy.Variable
    position : int, optional
        Its index in the list the user passed (``parameters`` or ``variables``);
        None for a leaf that is in no such list.
    kind : {"parameters", "variables"}
        Which list.

    Returns
    -------
    str
        ``'q'`` for a named leaf; ``'param2' (unnamed, parameters[1], shape (3,))``
        for an unnamed one.
    """
    if not is_unnamed(leaf):
        return repr(leaf.name())
    where = "" if position is None else f"{kind}[{position}], "
    return f"{leaf.name()!r} (unnamed, {where}shape {shape_text(leaf.shape)})"


def short_label(leaf, position: int, kind: str = "parameters") -> str:
    """The leaf as ``print(layer)`` lists it: name, shape and, if unnamed, its position.

    Parameters
    ----------
    leaf : cvxpy.Parameter or cvxpy.Variable
    position : int
        Its index in ``parameters`` or ``variables``.
    kind : {"parameters", "variables"}

    Returns
    -------
    str
        ``q (3,)`` or ``param2 (3,) [unnamed parameters[1]]``.
    """
    text = f"{leaf.name()} {shape_text(leaf.shape)}"
    return text + (f" [unnamed {kind}[{position}]]" if is_unnamed(leaf) else "")


def layer_signature(problem, parameters, outputs, gp: bool) -> str:
    """16 hex digits that differ between layers of different problems or outputs.

    A hash of the problem's text, the parameters' names and shapes, the outputs and
    ``gp``: what fixes the shapes a call returns.

    Parameters
    ----------
    problem : cvxpy.Problem
    parameters : sequence of cvxpy.Parameter
    outputs : sequence of cvxpy.Variable or cvxpy.Constraint
    gp : bool

    Returns
    -------
    str
    """
    text = repr(
        (
            str(problem),
            [(p.name(), p.shape) for p in parameters],
            [(str(o), getattr(o, "shape", None)) for o in outputs],
            gp,
        )
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def describe_layer(layer) -> str:
    """What ``print(layer)`` shows inside ``CvxpyLayer(...)``: see
    :meth:`cvxlpgd.CvxpyLayer.extra_repr`.

    Parameters
    ----------
    layer : cvxlpgd.CvxpyLayer

    Returns
    -------
    str
    """
    params = ", ".join(short_label(p, i) for i, p in enumerate(layer.parameters_)) or "none"
    outputs = layer._template(layer._solves_quadratic(None)).outputs
    outs = []
    for i, (item, slot) in enumerate(zip(layer.variables_, outputs)):
        if isinstance(item, cp.Variable):
            outs.append(short_label(item, i, "variables"))
        else:  # a dual: labelled with the constraint's text, which may span lines
            outs.append(f"{' '.join(slot.name.split())} {shape_text(slot.shape)}")
    o = layer.options
    executor = getattr(layer, "executor", None)
    workers = getattr(layer, "workers", None)
    workers = (
        type(executor).__name__ if executor is not None else "auto" if workers is None else workers
    )
    solver = layer.solver.lower() if layer.solver == "AUTO" else layer.solver
    if layer.solver == "AUTO" and layer._stats is not None:
        solver += f" (last call: {layer._stats.solver})"
    return (
        f"parameters: {params}\noutputs: {', '.join(outs)}\n"
        f"gradient={o.gradient!r}, tau={o.tau:g}, rho={o.rho:g}, "
        f"lpgd_mode={o.lpgd_mode!r}, exact_mode={o.exact_mode!r}, "
        f"exact_backend={o.exact_backend!r}"
        + (f" ({layer.exact_backend_for('auto')})" if o.exact_backend == "auto" else "")
        + "\n"
        f"solver={solver!r}, solver_args={o.solver_args!r}, workers={workers}"
        + (", warm_start=True" if getattr(layer, "warm_start", False) else "")
        + (", gp=True" if getattr(layer, "gp", False) else "")
        + (f", fallback={layer.fallback}" if getattr(layer, "fallback", None) is not None else "")
        + (", active_set=False" if not getattr(layer, "active_set", True) else "")
    )
