"""The problem: a CVXPY problem compiled once into a parametrized cone program.

``compile`` (CVXPY problem → :class:`~cvxlpgd.problem.template.ConeTemplate`),
``template`` (the affine maps θ ↦ P, c, A, b of a batch and their adjoints),
``program`` (cone-program data: patterns, structure, batches), ``readouts``
(outputs read from (x, y)), ``cones`` (cone dimensions, svec helpers), ``geometric``
(the DGP check), ``naming`` (how parameters and outputs are named). NumPy, SciPy and
CVXPY only.
"""
