"""The JAX front end: :class:`CvxpyLayer`, a CVXPY problem as a differentiable JAX function.

It runs on the same framework-free engine as the PyTorch layer
(:mod:`cvxlpgd.engine`) and imports no PyTorch code of this package. Install JAX with
``pip install 'cvxlpgd[jax]'``.
"""

from cvxlpgd.jax.layer import CvxpyLayer

__all__ = ["CvxpyLayer"]
