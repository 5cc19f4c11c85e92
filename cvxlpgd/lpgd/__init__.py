"""LPGD on batches: the formulas, the backward pass, and the zero-gradient check.

``formulas`` (perturbed costs, dual recovery, the Lagrangian's data gradient, the
proximal widening), ``backward`` (batched re-solves of both sides, differences,
fallbacks to the other side or a smaller τ), ``zero_gradient`` (whether τ moved any
perturbed solution). NumPy and SciPy only.
"""
