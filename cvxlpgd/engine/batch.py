"""Forward solves and backward passes (LPGD and exact) of batches of a compiled problem.

Plain NumPy/SciPy: the torch layer converts tensors and calls :class:`BatchEngine`.
The engine picks the solver (``"auto"``: :mod:`cvxlpgd.engine.selection`), keeps one batch
solver per compiled structure and settings (Moreau's compiled solvers live there),
and runs:

* **forward** — one batched solve; every element's status is checked.
* **LPGD backward** — the perturbed problems of :mod:`cvxlpgd.lpgd.formulas`, one batched
  solve per side or predicted from the forward's active set
  (:class:`cvxlpgd.engine.lpgd_pass.LPGDPass`).
* **exact backward** — diffcp's adjoint at the forward solution, per element on the
  executor, or Moreau's implicit derivative of its last solve.
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import cast

import numpy as np

from cvxlpgd.engine.exact import check_diffcp_cones, diffcp_gradient
from cvxlpgd.engine.exact_active_set import (
    ACTIVE_SET_BACKEND,
    active_set_backward,
    check_polyhedral,
    rescue_backend,
)
from cvxlpgd.engine.fallback import (
    ChainResult,
    chain_failure,
    fallback_chain,
    solve_chain,
    warn_solver_fallbacks,
)
from cvxlpgd.engine.lpgd_pass import LPGDPass
from cvxlpgd.engine.state import ForwardState
from cvxlpgd.engine.status import inaccurate_rows, report_inaccurate, verify
from cvxlpgd.lpgd.formulas import (
    DataGradient,
)
from cvxlpgd.lpgd.zero_gradient import warn_if_zero_gradient
from cvxlpgd.problem.program import ProgramBatch
from cvxlpgd.solvers import SOLVERS
from cvxlpgd.solvers.base import BatchSolution, DifferentiableBatchSolver
from cvxlpgd.solvers.moreau_backend import moreau_available
from cvxlpgd.solvers.parallel import WarmStartMemory

__all__ = ["BatchEngine"]


class BatchEngine(LPGDPass):
    """Solve batches of compiled problems and differentiate them.

    Parameters
    ----------
    solver : str, default "AUTO"
        ``"AUTO"`` or one of :data:`cvxlpgd.solvers.SOLVERS`.
    settings : dict, optional
        Default solver settings (a call may bring others).
    executor : concurrent.futures.Executor, optional
        Where the per-element solvers' partitions (and diffcp's adjoints) run.
        Default: the process-wide thread pool with ``workers`` threads.
    workers : int, optional
        Size of the default thread pool (default: all cores).
    partitions : int, optional
        Partitions of a batch for the per-element solvers (see
        :class:`~cvxlpgd.solvers.pooled.PooledSolver`).
    warm_starts : WarmStartMemory, optional
        Warm-start each forward solve from the solution this memory holds for the
        same batch position, and store the new solutions in it.
    share_factorizations : bool, default True
        Per-element solvers: let elements with the same A and P share a workspace.
    device : str, default "cpu"
        Where Moreau solves.
    fallback : bool, optional
        Solve the elements the call's solver fails on with the next solvers of
        :data:`cvxlpgd.engine.fallback.FALLBACK_ORDER` (default: on for ``"AUTO"``, off for a
        named solver).
    active_set : bool, default True
        LPGD on LPs and QPs: answer the perturbed problems from the forward's active
        set where that is verified optimal, re-solve the others
        (:mod:`cvxlpgd.engine.prediction`), where that is expected to pay
        (:func:`cvxlpgd.engine.prediction.worth_predicting`); False re-solves them all.
    """

    def __init__(
        self,
        solver: str = "AUTO",
        settings: dict | None = None,
        *,
        executor: Executor | None = None,
        workers: int | None = None,
        partitions: int | None = None,
        warm_starts: WarmStartMemory | None = None,
        share_factorizations: bool = True,
        device: str = "cpu",
        fallback: bool | None = None,
        active_set: bool = True,
    ):
        name = solver.upper() if isinstance(solver, str) else solver
        if name != "AUTO" and name not in SOLVERS:
            raise ValueError(f"solver must be 'auto' or one of {SOLVERS}, got {solver!r}")
        self.solver = name
        self.settings = dict(settings or {})
        self.executor = executor
        self.workers = workers
        self.partitions = partitions
        self.warm_starts = warm_starts
        self.share_factorizations = share_factorizations
        self.device = device
        self.fallback = name == "AUTO" if fallback is None else bool(fallback)
        self.active_set = bool(active_set)
        self._solvers: dict[tuple, tuple] = {}

    # ---- forward ---------------------------------------------------------------------

    def forward(
        self,
        template,
        batch: ProgramBatch,
        *,
        settings: dict | None = None,
        exact_backend: str | None = None,
        exact_mode: str = "lsqr",
        lpgd_tau: float | None = None,
        inaccurate: str = "warn",
    ) -> ForwardState:
        """Solve every element of ``batch``.

        Parameters
        ----------
        template : ConeTemplate
            The compiled problem (its conic-only form for ``exact_backend="diffcp"``).
        batch : ProgramBatch
            Its data.
        settings : dict, optional
            The call's solver settings (default: the engine's).
        exact_backend : {None, "diffcp", "moreau", "active-set"}
            Prepare this exact derivative; None for LPGD or no gradient.
        exact_mode : str, default "lsqr"
            diffcp's mode.
        lpgd_tau : float, optional
            An LPGD backward pass with this τ will follow: interior-point solvers get
            the tolerances of :func:`lpgd_tolerances` (settings the user gave win).
        inaccurate : {"warn", "raise"}
            What inaccurate solutions get (see :mod:`cvxlpgd.engine.status`).

        Returns
        -------
        ForwardState

        Raises
        ------
        SolverError
            Naming the status and the first failing batch index.
        ValueError
            For cones the exact backend cannot differentiate, or Moreau's derivative
            with another solver.
        """
        structure = template.structure
        name, args = self.resolve(
            structure, batch.batch_size, batch.shared_matrices, settings, exact_backend
        )
        if exact_backend == "diffcp":
            check_diffcp_cones(structure.cones)
        if exact_backend == ACTIVE_SET_BACKEND:
            check_polyhedral(structure)
        if exact_backend == "moreau" and name != "MOREAU":
            raise ValueError(
                f"exact_backend='moreau' needs solver='MOREAU' (this call solves "
                f"with {name}); use exact_backend='diffcp'"
            )
        call_settings = self.call_settings(name, args, lpgd_tau, exact_backend, structure.cones)
        solver = self.batch_solver(
            template,
            "forward",
            structure,
            name,
            call_settings,
            enable_grad=exact_backend == "moreau",
        )
        tolerance = self.tolerance(template, name, call_settings)
        warm = None
        if self.warm_starts is not None and solver.supports_warm_start:
            warm = self.warm_starts.lookup(template, batch.batch_size)
        reuse: dict = {}

        def solve_with(other: str, problems: ProgramBatch, rows) -> BatchSolution:
            if other == name:
                return verify(solver.solve(problems, warm, reuse), problems, structure, tolerance)
            rescue, rescue_tolerance = self._fallback_solver(
                template,
                "forward",
                structure,
                other,
                self.call_settings(other, args, lpgd_tau, None, structure.cones, primary=False),
            )
            start = (
                None
                if warm is None or not rescue.supports_warm_start
                else tuple(a[rows] for a in warm)
            )
            return verify(rescue.solve(problems, start, {}), problems, structure, rescue_tolerance)

        chain = fallback_chain(name, structure, self.fallback)
        result = solve_chain(solve_with, chain, batch)
        failure = chain_failure(result)
        if failure is not None:
            raise failure
        solution = result.solution
        state = ForwardState(
            template,
            batch,
            solution,
            solver,
            call_settings,
            reuse=reuse,
            exact_backend=exact_backend,
            exact_mode=exact_mode,
            warm_started=warm is not None,
            tolerance=tolerance,
            warm_start=warm,
            call_args=args,
            lpgd_tau=lpgd_tau,
            chain=chain,
        )
        warn_solver_fallbacks(
            [
                (i, "forward", result.attempts[i][0][1], other)
                for i, other in result.fallbacks().items()
            ]
        )
        report_inaccurate(
            [
                (int(i), solution.status[i], "forward")
                for i in np.flatnonzero(inaccurate_rows(solution))
            ],
            inaccurate,
        )
        if exact_backend == "moreau":
            state.moreau_solves = solver.solve_count[batch.batch_size]
        if self.warm_starts is not None and solver.supports_warm_start:
            self.warm_starts.store(template, *solution.point)
        return state

    # ---- backward --------------------------------------------------------------------

    def backward(
        self, state: ForwardState, dx: np.ndarray, dy: np.ndarray, options, owner
    ) -> DataGradient:
        """The data gradients a call asked for: the exact derivative when the forward
        prepared one, else LPGD's with the call's τ, ρ and mode (and the zero-gradient
        check of :func:`cvxlpgd.lpgd.zero_gradient.warn_if_zero_gradient`).

        Parameters
        ----------
        state : ForwardState
            The forward pass.
        dx, dy : numpy.ndarray
            Incoming gradients (B, n), (B, m).
        options : CallOptions
            The call's options.
        owner : object
            The layer (the zero-gradient check warns once per layer).

        Returns
        -------
        DataGradient
        """
        if state.exact_backend is not None:
            return self.backward_exact(state, dx, dy)
        result = self.backward_lpgd(
            state,
            dx,
            dy,
            tau=options.tau,
            rho=options.rho,
            mode=options.lpgd_mode,
            inaccurate=options.inaccurate,
        )
        warn_if_zero_gradient(owner, state, result, dx, dy, options)
        return result.gradient

    def backward_exact(self, state: ForwardState, dx: np.ndarray, dy: np.ndarray) -> DataGradient:
        """The exact data gradients of every element (from the active set, diffcp's adjoint
        or Moreau's)."""
        if state.exact_backend == ACTIVE_SET_BACKEND:
            return active_set_backward(
                state, dx, dy, lambda rows: self._exact_of_rows(state, rows, dx, dy)
            )
        if state.exact_backend == "moreau":
            return self._moreau_backward(state, dx, dy)
        return self._diffcp_backward(state, state.batch, state.solution.point, dx, dy)

    def _diffcp_backward(self, state: ForwardState, batch, point, dx, dy) -> DataGradient:
        return diffcp_gradient(
            state.template.structure,
            batch,
            point,
            dx,
            dy,
            state.exact_mode,
            executor=self.executor,
            workers=self.workers,
            partitions=self.partitions,
        )

    def _exact_of_rows(self, state: ForwardState, rows: np.ndarray, dx, dy) -> DataGradient:
        """The exact derivative the active set left to another backend, of ``rows``."""
        point = tuple(a[rows] for a in state.solution.point)
        if rescue_backend(state.template.structure) == "diffcp":
            return self._diffcp_backward(state, state.batch.rows(rows), point, dx[rows], dy[rows])
        if not moreau_available():
            raise ValueError(
                f"the derivative of batch elements {rows.tolist()[:10]} is not determined "
                "by their active sets (degenerate or not strictly complementary), and a "
                "QP's other exact derivative needs Moreau, which is not installed; use "
                "gradient='lpgd', or install moreau"
            )
        settings = self.call_settings(
            "MOREAU", state.call_args or {}, None, "moreau", state.template.structure.cones
        )
        part = self._moreau_twin(state, rows, point, settings, dx[rows], dy[rows])
        return DataGradient(part["dc"], part["db"], part["dA_data"], part["dP_data"])

    def _moreau_backward(self, state: ForwardState, dx, dy) -> DataGradient:
        """Moreau's derivative of its own solutions.

        Elements another solver answered (a fallback), or that a re-solve of the batch
        no longer solves, are solved again by Moreau warm-started from their solution,
        as a batch of their own, and differentiated there.
        """
        solver = cast(DifferentiableBatchSolver, state.solver)
        batch, B = state.batch, state.batch.batch_size
        structure = state.template.structure
        others = {i for i, name in enumerate(state.solution.solvers) if name != "MOREAU"}
        if solver.solve_count.get(B) != state.moreau_solves:
            # Another batch of this size was solved since: replay this one's forward
            # solve (same start: bitwise the same solution) so that Moreau's derivative
            # is this batch's.
            again = verify(solver.solve(batch, state.warm_start), batch, structure, state.tolerance)
            others |= set(np.flatnonzero(~again.ok).tolist())
        raw = solver.backward(B, dx, dy)
        gradient = DataGradient(raw["dc"], raw["db"], raw["dA_data"], raw["dP_data"])
        if others:
            rows = np.array(sorted(others))
            point = tuple(a[rows] for a in state.solution.point)
            part = self._moreau_twin(state, rows, point, state.settings, dx[rows], dy[rows])
            for name in ("dc", "db", "dA_data", "dP_data"):
                if getattr(gradient, name) is not None:
                    getattr(gradient, name)[rows] = part[name]
        return gradient

    def _moreau_twin(self, state: ForwardState, rows, point, settings, dx, dy) -> dict:
        """Moreau's derivative of elements ``rows``, solved again by Moreau from ``point``
        as a batch of their own (the raw arrays of its backward)."""
        structure = state.template.structure
        twin = self.batch_solver(
            state.template, "exact-rescue", structure, "MOREAU", settings, enable_grad=True
        )
        sub = state.batch.rows(rows)
        tolerance = self.tolerance(state.template, "MOREAU", settings)
        again = verify(twin.solve(sub, point), sub, structure, tolerance)
        failure = chain_failure(
            ChainResult(again),
            rows,
            "Moreau's derivative needs Moreau's own solution; use "
            "exact_backend='diffcp' or gradient='lpgd'",
        )
        if failure is not None:
            raise failure
        return twin.backward(rows.size, dx, dy)
