"""Paper-reproduction experiments for ``cvxlpgd`` (data, models, training scripts).

This is a plain package only so that tests can ``from examples.sudoku.puzzles import ...``
from the repository root; it is not installed with ``cvxlpgd``.
"""
