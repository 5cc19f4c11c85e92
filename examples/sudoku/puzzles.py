"""Seeded Sudoku generator with unique-solution guarantee, and one-hot encodings.

Boards are integer arrays of shape ``(size, size)`` holding digits ``1..size`` and ``0``
for a blank. Supported sizes are perfect squares ``size = b**2`` (boxes of ``b x b``):
4 (the default, 2x2 boxes) and 9 (3x3 boxes); 1 and 16 work too but are not tested.

One-hot layout (used by :func:`one_hot`, :func:`decode` and :mod:`examples.sudoku.model`)::

    z[(row * size + col) * size + (digit - 1)] = 1      # row-major cell, then digit

so ``z.reshape(size, size, size)[row, col, digit - 1]`` is the indicator of ``digit`` in
cell ``(row, col)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["box_size", "count_solutions", "decode", "generate_puzzles", "one_hot", "solve"]


def box_size(size: int) -> int:
    """Side length of a Sudoku box.

    Parameters
    ----------
    size : int
        Side length of the board (number of digits).

    Returns
    -------
    int
        ``b`` with ``b * b == size``.

    Raises
    ------
    ValueError
        If ``size`` is not a positive perfect square.
    """
    b = math.isqrt(size) if isinstance(size, (int, np.integer)) and size > 0 else 0
    if b * b != size:
        raise ValueError(f"size must be a positive perfect square (4, 9, ...), got {size!r}")
    return b


def _check_board(board: np.ndarray) -> tuple[np.ndarray, int, int]:
    board = np.asarray(board)
    if board.ndim != 2 or board.shape[0] != board.shape[1]:
        raise ValueError(f"a board must have shape (size, size), got {board.shape}")
    size = board.shape[0]
    b = box_size(size)
    if not np.issubdtype(board.dtype, np.integer):
        if not np.all(board == np.round(board)):
            raise ValueError("board entries must be integers")
        board = board.astype(np.int64)
    if board.min(initial=0) < 0 or board.max(initial=0) > size:
        raise ValueError(f"board entries must lie in 0..{size} (0 = blank)")
    return board.astype(np.int64), size, b


def _search(board: np.ndarray, limit: int, rng: np.random.Generator | None):
    """Yield up to ``limit`` solutions of ``board`` by backtracking.

    Bitmask candidate sets plus the minimum-remaining-values heuristic keep 9x9 searches in
    the millisecond range, which matters because clue removal calls this once per cell.
    With ``rng`` the digit order is shuffled at every branch (used to draw random grids).
    """
    board, size, b = _check_board(board)
    grid = board.copy()
    full = (1 << size) - 1
    rows = [0] * size
    cols = [0] * size
    boxes = [0] * size
    empties = []
    for r in range(size):
        for c in range(size):
            d = int(grid[r, c])
            if d == 0:
                empties.append((r, c, (r // b) * b + c // b))
                continue
            bit = 1 << (d - 1)
            k = (r // b) * b + c // b
            if rows[r] & bit or cols[c] & bit or boxes[k] & bit:
                return  # conflicting givens: no solution at all
            rows[r] |= bit
            cols[c] |= bit
            boxes[k] |= bit

    found = 0

    def rec():
        nonlocal found
        if not empties:
            found += 1
            yield grid.copy()
            return
        # Most constrained cell first: shrinks the tree by orders of magnitude on 9x9.
        best_i, best_mask, best_count = -1, 0, size + 1
        for i, (r, c, k) in enumerate(empties):
            mask = full & ~(rows[r] | cols[c] | boxes[k])
            cnt = mask.bit_count()
            if cnt < best_count:
                best_i, best_mask, best_count = i, mask, cnt
                if cnt <= 1:
                    break
        if best_count == 0:
            return
        r, c, k = empties.pop(best_i)
        digits = [d for d in range(size) if best_mask >> d & 1]
        if rng is not None:
            digits = [digits[j] for j in rng.permutation(len(digits))]
        for d in digits:
            bit = 1 << d
            rows[r] |= bit
            cols[c] |= bit
            boxes[k] |= bit
            grid[r, c] = d + 1
            yield from rec()
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[k] &= ~bit
            grid[r, c] = 0
            if found >= limit:
                break
        empties.insert(best_i, (r, c, k))

    for sol in rec():
        yield sol
        if found >= limit:
            return


def count_solutions(puzzle: np.ndarray, limit: int = 2) -> int:
    """Count the solutions of a puzzle, stopping early at ``limit``.

    Parameters
    ----------
    puzzle : ndarray of int, shape (size, size)
        Givens in ``1..size``, ``0`` for blanks.
    limit : int, default 2
        Stop once this many solutions are found; ``limit=2`` is enough to decide
        uniqueness.

    Returns
    -------
    int
        ``min(number of solutions, limit)``; 0 if the givens conflict.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return sum(1 for _ in _search(puzzle, limit, None))


def solve(puzzle: np.ndarray) -> np.ndarray | None:
    """Return one solution of ``puzzle`` (the first in search order), or ``None``."""
    return next(_search(puzzle, 1, None), None)


def _random_grid(size: int, rng: np.random.Generator) -> np.ndarray:
    # A shuffled-digit search from the empty board reaches every valid grid with positive
    # probability (unlike relabelling a fixed pattern), and is instant for size <= 9.
    return next(_search(np.zeros((size, size), dtype=np.int64), 1, rng))


def _make_puzzle(solution: np.ndarray, min_givens: int, rng: np.random.Generator) -> np.ndarray:
    size = solution.shape[0]
    puzzle = solution.copy()
    givens = size * size
    # One pass over the cells in random order: a clue whose removal would admit a second
    # solution is kept.  Removing clues only enlarges the solution set, so a clue kept
    # once could never be removed later; the pass therefore ends at a minimal puzzle
    # (or at ``min_givens``).
    for cell in rng.permutation(size * size):
        if givens <= min_givens:
            break
        r, c = divmod(int(cell), size)
        digit = puzzle[r, c]
        puzzle[r, c] = 0
        if count_solutions(puzzle, 2) == 1:
            givens -= 1
        else:
            puzzle[r, c] = digit
    return puzzle


def generate_puzzles(
    count: int, size: int = 4, seed: int = 0, min_givens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Generate Sudoku puzzles that each have exactly one solution.

    Each puzzle starts from a random complete grid; clues are then removed in random
    order, each removal kept only while the puzzle still has a unique solution (checked
    with :func:`count_solutions`), until no further clue can be removed or ``min_givens``
    clues remain.

    Parameters
    ----------
    count : int
        Number of puzzles.
    size : int, default 4
        Board side: 4 (2x2 boxes) or 9 (3x3 boxes).
    seed : int, default 0
        Seed of the ``numpy.random.default_rng`` stream. Puzzles are drawn one after
        another from that stream, so the first ``k`` puzzles of a seed do not depend on
        ``count``.
    min_givens : int, optional
        Stop removing clues once this many remain (more givens = easier puzzles). ``None``
        removes clues down to a minimal unique puzzle (e.g. 4-6 givens for 4x4, about
        22-26 for 9x9).

    Returns
    -------
    puzzles : ndarray of int64, shape (count, size, size)
        Givens, ``0`` for blanks.
    solutions : ndarray of int64, shape (count, size, size)
        The unique completions.
    """
    box_size(size)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if min_givens is None:
        min_givens = 0
    elif not 0 <= min_givens <= size * size:
        raise ValueError(f"min_givens must lie in 0..{size * size}, got {min_givens}")
    rng = np.random.default_rng(seed)
    puzzles = np.zeros((count, size, size), dtype=np.int64)
    solutions = np.zeros((count, size, size), dtype=np.int64)
    for i in range(count):
        solutions[i] = _random_grid(size, rng)
        puzzles[i] = _make_puzzle(solutions[i], min_givens, rng)
    return puzzles, solutions


def one_hot(boards: np.ndarray) -> np.ndarray:
    """One-hot encode boards (blanks become all-zero cells).

    Parameters
    ----------
    boards : array_like of int, shape (..., size, size)
        Digits ``1..size``, ``0`` for blanks; e.g. ``(count, size, size)``.

    Returns
    -------
    ndarray of float64, shape (..., size**3)
        ``z[..., (row * size + col) * size + digit - 1] = 1`` (row-major cell, then digit).
    """
    boards = np.asarray(boards)
    if boards.ndim < 2 or boards.shape[-1] != boards.shape[-2]:
        raise ValueError(f"boards must have shape (..., size, size), got {boards.shape}")
    size = boards.shape[-1]
    box_size(size)
    if boards.min(initial=0) < 0 or boards.max(initial=0) > size:
        raise ValueError(f"board entries must lie in 0..{size} (0 = blank)")
    digits = np.arange(1, size + 1)
    z = (boards[..., None] == digits).astype(np.float64)  # (..., size, size, size)
    return z.reshape(*boards.shape[:-2], size**3)


def decode(z: np.ndarray, size: int) -> np.ndarray:
    """Turn (relaxed) one-hot vectors back into boards by taking the argmax digit per cell.

    Parameters
    ----------
    z : array_like, shape (..., size**3)
        Layout as in :func:`one_hot`; any real scores (e.g. a QP solution) are accepted.
    size : int
        Board side.

    Returns
    -------
    ndarray of int64, shape (..., size, size)
        Digits ``1..size``. Every cell gets a digit: an all-zero cell (a blank in
        ``one_hot`` output) decodes to 1, so ``decode(one_hot(b)) == b`` only for full
        boards.
    """
    box_size(size)
    z = np.asarray(z)
    if z.shape[-1:] != (size**3,):
        raise ValueError(f"z must have shape (..., {size**3}) for size {size}, got {z.shape}")
    cells = z.reshape(*z.shape[:-1], size, size, size)
    return cells.argmax(axis=-1).astype(np.int64) + 1
