"""The engine: forward solves and backward passes of a batch, framework-free.

``batch`` (:class:`~cvxlpgd.engine.batch.BatchEngine`), ``exact`` (diffcp's adjoint,
the exact-backend choice), ``status`` (verification and the status policy),
``fallback`` (per-element fallback across solvers), ``catalog`` (solver choice,
settings and cache), ``selection`` (``solver="auto"``), ``solver_args`` (flat settings
to solvers), ``tolerances`` (per path), ``options`` (a call's options), ``state``
(per-call state and statistics). NumPy and SciPy only: the front ends convert arrays
and call it.
"""
