"""Paired comparisons of two methods on the runs they share.

Two methods are compared on the runs they share (the same seed, and the same setting
such as PyEPO's degree: same data, same initial model). Per pair the difference
``A − B`` is taken; reported are the number of pairs ``n``, the mean ± sample standard
deviation (ddof = 1) of the differences, in how many pairs each method is better, and
two two-sided p-values: the paired t-test (``scipy.stats.ttest_1samp`` of the
differences against 0) and the sign test (``scipy.stats.binomtest`` on the pairs that
are not tied). **The verdict rule:** with at least two pairs, if the paired t-test gives
p < α (:data:`ALPHA` = 0.05), the method whose mean is better wins ("A better" / "B
better"); otherwise "no significant difference (n pairs)". The sign test is shown as a
distribution-free check; with five pairs or fewer it cannot fall below 0.05 (its
smallest p is 2/2ⁿ), so it decides nothing on three seeds.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from examples.result_rows import label, methods_in

__all__ = [
    "ALPHA",
    "Paired",
    "brief",
    "final_values",
    "number_text",
    "p_text",
    "paired",
    "paired_against",
    "paired_table",
    "standing",
]

#: Significance level of the paired verdicts (two-sided).
ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """Two methods compared on the runs they share (see the module's docstring).

    Attributes
    ----------
    a, b : str
        The methods' names, as the verdict writes them.
    keys : tuple
        The pairs (e.g. seeds, or (degree, seed)), in sorted order.
    a_values, b_values : numpy.ndarray
        The two methods' values on those pairs.
    lower_is_better : bool
        Whether a lower value is better (losses, regrets, seconds).
    alpha : float
        Significance level of the verdict.
    """

    a: str
    b: str
    keys: tuple
    a_values: np.ndarray
    b_values: np.ndarray
    lower_is_better: bool = True
    alpha: float = ALPHA

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.keys)

    @property
    def differences(self) -> np.ndarray:
        """``A − B`` per pair (negative: A lower)."""
        return self.a_values - self.b_values

    @property
    def mean(self) -> float:
        """Mean of the differences ``A − B``."""
        return float(self.differences.mean()) if self.n else np.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof = 1) of the differences; NaN below 2 pairs."""
        return float(self.differences.std(ddof=1)) if self.n > 1 else np.nan

    def _better(self) -> np.ndarray:
        d = self.differences
        return d < 0 if self.lower_is_better else d > 0

    @property
    def wins_a(self) -> int:
        """Pairs in which A is better."""
        return int(np.sum(self._better()))

    @property
    def wins_b(self) -> int:
        """Pairs in which B is better."""
        return int(np.sum(self.differences != 0)) - self.wins_a

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the paired t-test (NaN below 2 pairs).

        Differences that are all equal (to round-off) have no spread: p is 0 when they
        are not zero (a consistent difference) and 1 when they are (identical results).
        """
        if self.n < 2:
            return np.nan
        d = self.differences
        if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
            return 1.0 if np.all(d == 0) else 0.0
        from scipy import stats

        return float(stats.ttest_1samp(d, 0.0).pvalue)

    @property
    def sign_p(self) -> float:
        """Two-sided p-value of the sign test on the pairs that are not tied."""
        untied = self.wins_a + self.wins_b
        if untied == 0:
            return 1.0
        from scipy import stats

        return float(stats.binomtest(self.wins_a, untied, 0.5).pvalue)

    @property
    def winner(self) -> str | None:
        """``a`` or ``b`` when the paired t-test is significant at ``alpha``, else None."""
        p = self.p_value
        if not (np.isfinite(p) and p < self.alpha):
            return None
        a_better = self.mean < 0 if self.lower_is_better else self.mean > 0
        return self.a if a_better else self.b

    @property
    def verdict(self) -> str:
        """``"<a> better"``, ``"<b> better"`` or ``"no significant difference (n pairs)"``."""
        if self.n < 2:
            return f"too few pairs ({self.n}) for a verdict"
        winner = self.winner
        return f"{winner} better" if winner else f"no significant difference ({self.n} pairs)"


def paired(
    a_values: Mapping[Hashable, float],
    b_values: Mapping[Hashable, float],
    *,
    a: str = "A",
    b: str = "B",
    lower_is_better: bool = True,
    alpha: float = ALPHA,
) -> Paired:
    """Compare two methods on the keys (runs) they share.

    Parameters
    ----------
    a_values, b_values : mapping
        One value per run, keyed by what makes two runs comparable (the seed, or
        ``(setting, seed)``). Keys missing on one side and non-finite values are left
        out.
    a, b : str
        Names used in the verdict.
    lower_is_better : bool, default True
        False for scores such as accuracies or Sharpe ratios.
    alpha : float, default :data:`ALPHA`
        Level of the two-sided paired t-test that decides the verdict.

    Returns
    -------
    Paired
        Differences are ``A − B``.

    Examples
    --------
    >>> c = paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.6, 2: 3.4}, a="LPGD", b="GD")
    >>> c.wins_a, c.verdict
    (3, 'LPGD better')
    """
    keys = tuple(
        sorted(
            k
            for k in set(a_values) & set(b_values)
            if np.isfinite(a_values[k]) and np.isfinite(b_values[k])
        )
    )
    return Paired(
        a,
        b,
        keys,
        np.array([float(a_values[k]) for k in keys]),
        np.array([float(b_values[k]) for k in keys]),
        lower_is_better,
        alpha,
    )


def final_values(
    rows: Sequence[dict], method: str, column: str, by: Sequence[str] = ("seed",)
) -> dict:
    """Per run of ``method`` (a run: one value of the ``by`` columns), the value of
    ``column`` at its last evaluation (its only row when rows have no ``iteration``).

    Parameters
    ----------
    rows : sequence of dict
        Results rows (:func:`examples.common.read_csv`).
    method : str
    column : str
    by : sequence of str, default ("seed",)
        The columns that identify a run; the key is their value (one column) or the
        tuple of their values.

    Returns
    -------
    dict
    """
    last: dict = {}
    for row in rows:
        if row["method"] != method or row.get(column, "") == "":
            continue
        key = tuple(_key_part(row[c]) for c in by)
        key = key[0] if len(by) == 1 else key
        if key not in last or row.get("iteration", 0) >= last[key].get("iteration", 0):
            last[key] = row
    return {key: float(row[column]) for key, row in last.items()}


def _key_part(value):
    """``2.0`` (a float read from CSV) → ``2``, so that keys from any source match."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def paired_against(
    rows: Sequence[dict],
    reference: str,
    columns: Sequence[tuple[str, str, bool]],
    methods: Sequence[str] | None = None,
) -> list[tuple[str, Paired]]:
    """Every other method (or ``methods``) paired with ``reference`` on final values.

    Parameters
    ----------
    rows : sequence of dict
    reference : str
        The method every other one is compared with (B in ``A − B``).
    columns : sequence of (column, description, lower_is_better)
    methods : sequence of str, optional
        The A methods (default: all others, in order of appearance).

    Returns
    -------
    list of (description, Paired)
    """
    methods = [m for m in (methods or methods_in(rows)) if m != reference]
    out = []
    for column, what, lower in columns:
        base = final_values(rows, reference, column)
        for method in methods:
            out.append(
                (
                    what,
                    paired(
                        final_values(rows, method, column),
                        base,
                        a=label(method),
                        b=label(reference),
                        lower_is_better=lower,
                    ),
                )
            )
    return out


def number_text(value: float, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    return f"{value:.{digits}g}".replace("-", "−")


def p_text(value: float) -> str:
    if not np.isfinite(value):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def paired_table(comparisons: Sequence[tuple[str, Paired]], *, what: str = "criterion") -> str:
    """Paired comparisons as a Markdown table.

    Columns: the criterion, A and B, the number of pairs, the mean ± sample std of
    ``A − B``, in how many pairs A is better, the two p-values and the verdict.
    """
    head = [
        what,
        "A",
        "B",
        "pairs",
        "A − B (mean ± std)",
        "A better in",
        "p (paired t)",
        "p (sign)",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for criterion, c in comparisons:
        verdict = c.verdict
        cells = [
            criterion,
            c.a,
            c.b,
            str(c.n),
            f"{number_text(c.mean)} ± {number_text(c.std, 2)}",
            f"{c.wins_a}/{c.n}",
            p_text(c.p_value),
            p_text(c.sign_p),
            f"**{verdict}**" if c.winner else verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def brief(criterion: str, c: Paired) -> str:
    """``criterion — verdict (k/n)``, k the pairs in which A is better."""
    verdict = f"**{c.winner} better**" if c.winner else "no significant difference"
    return f"{criterion} — {verdict} ({c.wins_a}/{c.n})"


def standing(comparisons: Sequence[Paired]) -> str:
    """A's verdicts against several B, grouped: ``"beats X and Y; ties Z; loses to W"``."""
    groups: dict[str, list[str]] = {"beats": [], "ties": [], "loses to": []}
    for c in comparisons:
        key = "ties" if c.winner is None else "beats" if c.winner == c.a else "loses to"
        groups[key].append(c.b)
    return "; ".join(f"{key} {_listed(names)}" for key, names in groups.items() if names)


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
