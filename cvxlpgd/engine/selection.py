"""``solver="auto"``: which solver a compiled problem and batch get.

The rule, from the benchmark (``docs/benchmarks.md``):

* **Moreau** when it is installed and the cones are ones it solves: it solves a
  whole batch in one call and warm-starts LPGD's re-solves, the fastest path for
  batches of small and medium problems.
* **SCS** for large problems whose matrices one factorization can serve — A and P
  hold at least :data:`LARGE_PROBLEM_NONZEROS` stored entries, and the batch is one
  problem or shares its matrices: an interior-point method refactorizes its KKT
  matrix at every iteration of every element, while SCS factorizes once and its LPGD
  re-solves, warm-started from the forward solution, reuse that factorization.
  (The sweep behind the threshold is in docs/benchmarks.md, ``solver="auto"``.)
* **SCS** without Moreau (or for the dual exponential cone, which Moreau lacks), and
  when the layer was given an executor (a process pool, a dask cluster): Moreau
  parallelizes inside its own call and would leave the executor idle.
"""

from __future__ import annotations

from cvxlpgd.problem.program import ProgramStructure
from cvxlpgd.solvers.moreau_backend import moreau_available

#: Stored entries of A and P from which a problem goes to SCS (see the rule).
LARGE_PROBLEM_NONZEROS = 20_000


def choose_solver(
    structure: ProgramStructure,
    batch_size: int,
    *,
    shared_matrices: bool = True,
    executor: bool = False,
) -> tuple[str, str]:
    """The solver ``solver="auto"`` uses for ``batch_size`` problems of ``structure``.

    Parameters
    ----------
    structure : ProgramStructure
        Cones and patterns of the compiled problem.
    batch_size : int
        Elements in the batch.
    shared_matrices : bool, default True
        Whether every element of the batch has the same A and P.
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
    nonzeros = structure.A_pattern.nnz + (
        0 if structure.P_pattern is None else structure.P_pattern.nnz
    )
    if nonzeros >= LARGE_PROBLEM_NONZEROS and (batch_size == 1 or shared_matrices):
        return "SCS", (
            f"a large problem ({nonzeros} nonzeros ≥ {LARGE_PROBLEM_NONZEROS}) "
            "with matrices one factorization serves: SCS factorizes once and "
            "reuses it in every solve and LPGD's re-solves"
        )
    return "MOREAU", "a batch of small or medium problems: Moreau solves it in one call"
