"""The engine's LPGD backward pass: the perturbed problems of a batch, solved or predicted.

For each side σ the perturbed problems of :mod:`cvxlpgd.lpgd.formulas` are solved as
one batch, warm-started from the forward solution. With ρ = 0 they have the forward
matrices, so the forward solver's factorizations serve them (a repeated backward pass
with SCS, whose workspaces carry state from one solve to the next, replays the forward
on fresh ones first: :meth:`LPGDPass._backward_workspaces`). With ρ > 0 a solver built
for P' = P + ρI [+ ρAᵀA] does. On LPs and QPs the perturbed problems are first answered
from the forward's active set where that is verified optimal
(:mod:`cvxlpgd.engine.prediction`); only the others are re-solved, through the
solver fallback chain (:mod:`cvxlpgd.engine.fallback`).
"""

from __future__ import annotations

import numpy as np

from cvxlpgd.engine.catalog import SolverCatalog
from cvxlpgd.engine.fallback import solve_chain, warn_solver_fallbacks
from cvxlpgd.engine.prediction import (
    ActiveSetCounts,
    solve_sides_with_prediction,
    worth_predicting,
)
from cvxlpgd.engine.state import ForwardState, SolveRecord
from cvxlpgd.engine.status import report_inaccurate, verify
from cvxlpgd.lpgd.active_set import polyhedral
from cvxlpgd.lpgd.backward import LPGDResult, lpgd_backward, warn_fallbacks
from cvxlpgd.lpgd.formulas import SIDE_NAMES, identifiable_dual_gradient
from cvxlpgd.lpgd.proximal import proximal_batch
from cvxlpgd.problem.program import ProgramBatch
from cvxlpgd.solvers.base import INACCURATE_STATUSES


class LPGDPass(SolverCatalog):
    """Mixin of :class:`cvxlpgd.engine.batch.BatchEngine`: its LPGD backward pass."""

    #: Whether LPs and QPs are answered from the forward's active set first.
    active_set: bool

    def backward_lpgd(
        self,
        state: ForwardState,
        dx: np.ndarray,
        dy: np.ndarray,
        *,
        tau: float,
        rho: float,
        mode: str,
        ds: np.ndarray | None = None,
        inaccurate: str = "warn",
        active_set: bool | None = None,
    ) -> LPGDResult:
        """LPGD data gradients of every element (see :mod:`cvxlpgd.lpgd.backward`).

        On LPs and QPs the perturbed problems are first answered from the forward's
        active set (:mod:`cvxlpgd.engine.prediction`; ``active_set=False``, or the engine's
        ``active_set=False``, re-solves them all).

        Raises
        ------
        SolverError
            When a perturbed problem is not solved even after the fallbacks (side and
            batch index named), or is inaccurate with ``inaccurate="raise"``.
        """
        template, batch = state.template, state.batch
        structure = template.structure
        solver = state.solver
        solve_batch, solve_structure, variant = batch, structure, "forward"
        if rho > 0:
            slack_term = ds is not None and bool(np.any(ds))
            proximal = self._proximal(template, slack_term)
            solve_structure, variant = proximal.structure, f"proximal{int(slack_term)}"
            solver = self.batch_solver(
                template, variant, solve_structure, solver.name, state.settings
            )
            solve_batch = proximal_batch(batch, rho, proximal, structure)
        kept: list[dict] = []  # the re-solves' workspaces, found at the first re-solve

        def reuse() -> dict:
            if not kept:
                kept.append(self._backward_workspaces(state, solver) if rho == 0 else {})
            return kept[0]

        rescued: list[tuple[int, str, str, str]] = []

        def resolve(sign: int, side_batch: ProgramBatch, forward_rows: np.ndarray):
            def solve_with(other: str, problems: ProgramBatch, sub):
                picked = forward_rows[sub]
                if other == solver.name:  # first in the chain: the whole side
                    active, tolerance, workspaces = solver, state.tolerance, reuse()
                else:
                    active, tolerance = self._fallback_solver(
                        template,
                        variant,
                        solve_structure,
                        other,
                        self.call_settings(
                            other, state.call_args, tau, None, structure.cones, primary=False
                        ),
                    )
                    workspaces = {}
                warm = None
                if active.supports_warm_start:
                    warm = tuple(array[picked] for array in state.solution.point)
                return verify(
                    active.solve(problems, warm, workspaces), problems, solve_structure, tolerance
                )

            result = solve_chain(solve_with, state.chain or (solver.name,), side_batch)
            rescued.extend(
                (int(forward_rows[i]), f"LPGD {SIDE_NAMES[sign]}", result.attempts[i][0][1], other)
                for i, other in result.fallbacks().items()
            )
            return result.solution

        counts = ActiveSetCounts()
        if active_set is None:  # the engine's choice: where prediction pays
            active_set = self.active_set and worth_predicting(solver.name, solve_structure)
        predicting = active_set and polyhedral(solve_structure)

        def solve_sides(requests, rows):
            forward_rows = np.arange(batch.batch_size)[rows]
            if predicting:
                return solve_sides_with_prediction(
                    requests,
                    solve_structure,
                    state.solution,
                    forward_rows,
                    state.tolerance,
                    solver.name,
                    resolve,
                    counts,
                )
            return [resolve(sign, side_batch, forward_rows) for sign, side_batch in requests]

        dy = identifiable_dual_gradient(batch, structure, dy)
        result = lpgd_backward(
            solve_sides,
            solve_batch,
            structure,
            state.solution,
            dx,
            dy,
            ds,
            tau=tau,
            rho=rho,
            mode=mode,
            matrices=template.parametrized_matrices(),
        )
        stats = state.stats
        assert stats is not None  # set when the state was made
        stats.backward, entries = _backward_records(batch.batch_size, result)
        stats.fallbacks = dict(result.fallbacks)
        stats.active_set_predicted, stats.active_set_resolved = counts.predicted, counts.resolved
        warn_solver_fallbacks(rescued)
        warn_fallbacks(result.fallbacks, tau, mode)
        report_inaccurate(entries, inaccurate)
        return result

    @staticmethod
    def _backward_workspaces(state: ForwardState, solver) -> dict:
        """Where the ρ = 0 re-solves find their factorizations.

        The forward's own, normally. A solver that carries state from one solve on a
        workspace to the next (SCS: its acceleration memory and adaptive scale) would
        then make a second backward pass of the same forward start from where the first
        left off; so the first pass takes the forward workspaces, and a later one
        replays the forward solves on fresh workspaces first — the state the first pass
        found — and gets bitwise the same gradient. (The replay costs a factorization
        and a forward solve, paid only by repeated backward passes.)
        """
        if solver.solves_independently:
            return state.reuse
        if not state.reuse.get("used_by_backward"):
            state.reuse["used_by_backward"] = True
            return state.reuse
        fresh: dict = {}
        solver.solve(state.batch, state.warm_start, fresh)
        return fresh


def _backward_records(batch_size: int, result: LPGDResult):
    """Per element, the record of the last solve of each side; and inaccurate entries."""
    records: list[dict[str, SolveRecord]] = [{} for _ in range(batch_size)]
    for indices, sign, solution in result.solves:
        for index, record in zip(indices, SolveRecord.rows_of(solution)):
            records[int(index)][SIDE_NAMES[sign]] = record
    entries = [
        (i, record.status, f"LPGD {side}")
        for i, sides in enumerate(records)
        for side, record in sides.items()
        if record.status in INACCURATE_STATUSES
    ]
    return records, entries
