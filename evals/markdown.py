"""How the reports write in markdown: a rate with its interval, a number, a p-value, and a table
whose first column names its rows and whose other columns, numbers, sit to the right."""

from collections.abc import Iterable, Sequence

from evals.stats import wilson


def format_rate(k: int, n: int) -> str:
    """`7/25 (28%, 14-48%)`: the count, its percentage and 95% Wilson interval; `n/a` when n is 0."""
    if n == 0:
        return "n/a"
    low, high = wilson(k, n)
    return f"{k}/{n} ({k / n:.0%}, {low * 100:.0f}-{high * 100:.0f}%)"


def format_number(value: float | None) -> str:
    """`1,234`: a count, milliseconds or tokens to the unit; `n/a` for a value there is none of."""
    return "n/a" if value is None else f"{value:,.0f}"


def format_p(p_value: float) -> str:
    """`0.052`, or `<0.001`: three decimals say all a p-value needs to."""
    return f"{p_value:.3f}" if p_value >= 0.001 else "<0.001"


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The table's lines: its header, the alignment row, then a line per row of cells."""
    return [_row(columns), "|---|" + "---:|" * (len(columns) - 1), *(_row(cells) for cells in rows)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
