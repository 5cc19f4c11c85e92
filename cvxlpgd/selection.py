"""``solver="auto"``: which solver a compiled problem and batch get.

The rule, from the benchmark (``docs/benchmarks.md``):

* **Moreau** when it is installed and the cones are ones it solves: it solves a
  whole batch in one call and warm-starts LPGD's re-solves, the fastest path for
  batches of small and medium problems.
* **SCS** for a single large problem (batch of one whose A and P hold at least
  :data:`LARGE_PROBLEM_NONZEROS` entries): an interior-point method refactorizes its
  KKT matrix at every iteration, while SCS factorizes once and its LPGD re-solves,
  warm-started from the forward solution, reuse that factorization.
* **SCS** without Moreau (or for the dual exponential cone, which Moreau lacks), and
  when the layer was given an executor (a process pool, a dask cluster): Moreau
  parallelizes inside its own call and would leave the executor idle.
"""

from __future__ import annotations

from cvxlpgd.program import ProgramStructure
from cvxlpgd.solvers.moreau_backend import moreau_available

#: Stored entries of A and P from which one problem alone goes to SCS (see the rule).
LARGE_PROBLEM_NONZEROS = 100_000


def choose_solver(structure: ProgramStructure, batch_size: int, *,
                  executor: bool = False) -> tuple[str, str]:
    """The solver ``solver="auto"`` uses for ``batch_size`` problems of ``structure``.

    Parameters
    ----------
    structure : ProgramStructure
        Cones and patterns of the compiled problem.
    batch_size : int
        Elements in the batch.
    executor : bool, default False
        Whether the layer was given an executor to distribute solves on.

    Returns
    -------
    (str, str)
        The solver name and the reason, in words.
    """
    if not moreau_available():
        return "SCS", "Moreau is not installed"
    if executor:
        return "SCS", "an executor was given: the per-element solves run on it"
    if structure.cones.dual_exp:
        return "SCS", "Moreau does not support the dual exponential cone"
    nonzeros = structure.A_pattern.nnz + (0 if structure.P_pattern is None
                                          else structure.P_pattern.nnz)
    if batch_size == 1 and nonzeros >= LARGE_PROBLEM_NONZEROS:
        return "SCS", (f"one large problem ({nonzeros} nonzeros ≥ {LARGE_PROBLEM_NONZEROS}): "
                       "SCS factorizes once and reuses it in LPGD's re-solves")
    return "MOREAU", "a batch of small or medium problems: Moreau solves it in one call"
