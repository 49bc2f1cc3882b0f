"""How sure the eval's rates are: a 95% interval for each rate, and two routes compared on the
same questions, so that a gap between routes can be told apart from the noise of a small sample."""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import binomtest


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of k successes out of n. n must be at least 1 (scipy raises
    ValueError otherwise): callers show a rate of no questions as n/a."""
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def format_rate(k: int, n: int) -> str:
    """`7/25 (28%, 14-48%)`: the count, its percentage and 95% Wilson interval; `n/a` when n is 0."""
    if n == 0:
        return "n/a"
    low, high = wilson(k, n)
    return f"{k}/{n} ({k / n:.0%}, {low * 100:.0f}-{high * 100:.0f}%)"


@dataclass(frozen=True)
class Paired:
    """Routes A and B on the same n questions: how many each got right, how many only one of
    them did, A's rate minus B's with its 95% interval, and McNemar's exact p-value."""

    n: int
    a_right: int
    b_right: int
    only_a: int
    only_b: int
    difference: float
    low: float
    high: float
    p_value: float

    @property
    def both_right(self) -> int:
        return self.a_right - self.only_a


def compare_paired(a: Sequence[bool], b: Sequence[bool]) -> Paired:
    """A against B, where a[i] and b[i] are the two routes on question i (at least one question).

    The interval is Newcombe's square-and-add interval for paired proportions (Newcombe 1998,
    method 10): each rate's Wilson interval, combined with the correlation between the two routes'
    answers. p is McNemar's exact test: a two-sided binomial test (probability 1/2) on the questions only
    one route got right; 1.0 when there are none."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired answers need the same questions, at least one: {len(a)} against {len(b)}")
    n = len(a)
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    a_right, b_right = sum(a), sum(b)
    rate_a, rate_b = a_right / n, b_right / n
    (low_a, high_a), (low_b, high_b) = wilson(a_right, n), wilson(b_right, n)
    phi = _correlation(n, a_right - only_a, only_a, only_b)
    difference = rate_a - rate_b
    # How far A's rate may fall and B's rise, and the other way round; correlated answers offset.
    down_a, up_b = rate_a - low_a, high_b - rate_b
    up_a, down_b = high_a - rate_a, rate_b - low_b
    discordant = only_a + only_b
    return Paired(
        n=n,
        a_right=a_right,
        b_right=b_right,
        only_a=only_a,
        only_b=only_b,
        difference=difference,
        low=difference - math.sqrt(down_a**2 + up_b**2 - 2 * phi * down_a * up_b),
        high=difference + math.sqrt(up_a**2 + down_b**2 - 2 * phi * up_a * down_b),
        p_value=float(binomtest(only_a, discordant, 0.5).pvalue) if discordant else 1.0,
    )


def _correlation(n: int, both: int, only_a: int, only_b: int) -> float:
    """The phi coefficient of the two routes' right answers, with Newcombe's continuity
    correction (a positive one shrinks by n/2, to no less than 0); 0 when a route got every
    question right, or none."""
    neither = n - both - only_a - only_b
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    if margins == 0:
        return 0.0
    cross = both * neither - only_a * only_b
    if cross > n / 2:
        return (cross - n / 2) / math.sqrt(margins)
    return min(cross, 0) / math.sqrt(margins)
