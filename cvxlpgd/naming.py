"""How parameters, variables and outputs are named in errors and in ``print(layer)``.

CVXPY gives an unnamed leaf an automatic name built from its id (``param2``,
``var17``), which the user never wrote and cannot recognise. Such leaves are shown
with that name *and* their shape and position in the list the user passed, e.g.
``'param2' (unnamed, parameters[1], shape (3,))``; named leaves keep their name.
"""

from __future__ import annotations

import hashlib

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
    text = repr((str(problem), [(p.name(), p.shape) for p in parameters],
                 [(str(o), getattr(o, "shape", None)) for o in outputs], gp))
    return hashlib.sha1(text.encode()).hexdigest()[:16]
