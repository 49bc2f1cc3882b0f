"""How sure the reports' numbers are: a 95% interval for each rate and mean, two routes compared
on the same questions (the eval) or on answers to different users (a live experiment), and how
many answers a comparison needs, so that a gap between routes can be told apart from the noise of
a small sample."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import fmean, stdev, variance

import numpy as np
from scipy.stats import binomtest, norm, t, ttest_ind

# The power every sample size here is for; the test is always two-sided at 5%, like the 95% intervals.
POWER = 0.8


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of k successes out of n. n must be at least 1 (scipy raises
    ValueError otherwise): callers show a rate of no questions as n/a."""
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


def percentile(values: Sequence[float], q: float) -> float | None:
    """numpy's percentile q (0-100, linear between the closest values); None for no values."""
    return float(np.percentile(values, q)) if values else None


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """The 95% t-interval of the mean of values; None for fewer than two, which show no spread
    to size it by. Values that are all the same give an interval of that one value."""
    if len(values) < 2:
        return None
    half = t.ppf(0.975, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return fmean(values) - half, fmean(values) + half


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


@dataclass(frozen=True)
class Unpaired:
    """Two independent samples A and B: A's mean minus B's, its 95% interval on the
    Welch-Satterthwaite degrees of freedom, and the p-value of Welch's t-test."""

    difference: float
    low: float
    high: float
    df: float
    p_value: float


def compare_means(a: Sequence[float], b: Sequence[float]) -> Unpaired | None:
    """Welch's t-test of A against B, which does not assume that they vary alike; None when
    either has fewer than two values, or neither varies (then there is no error to test against)."""
    if len(a) < 2 or len(b) < 2:
        return None
    share_a, share_b = variance(a) / len(a), variance(b) / len(b)  # each mean's squared standard error
    if share_a + share_b == 0:
        return None
    df = (share_a + share_b) ** 2 / (share_a**2 / (len(a) - 1) + share_b**2 / (len(b) - 1))
    difference = fmean(a) - fmean(b)
    half = t.ppf(0.975, df) * math.sqrt(share_a + share_b)
    p_value = float(ttest_ind(a, b, equal_var=False).pvalue)
    return Unpaired(difference, difference - half, difference + half, df, p_value)


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The standard deviation of A and B pooled, each weighted by its degrees of freedom; None
    when either has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    return math.sqrt(((len(a) - 1) * variance(a) + (len(b) - 1) * variance(b)) / (len(a) + len(b) - 2))


def _z_sum() -> float:
    """z of the two-sided 5% test plus z of the power: how many standard errors a difference
    must span to be detected with that power."""
    return float(norm.ppf(0.975) + norm.ppf(POWER))


def sample_size(sd: float, difference: float) -> int:
    """How many values per group a two-sided 5% test of two means needs to detect `difference`
    with 80% power, when each group's values have standard deviation `sd`: the normal
    approximation n = 2 (z_0.975 + z_0.8)² sd² / difference², rounded up, and at least the two a
    t-test needs."""
    return max(2, math.ceil(2 * (_z_sum() * sd / difference) ** 2))


def detectable_difference(sd: float, n_a: int, n_b: int) -> float | None:
    """The smallest difference of two means that n_a and n_b values (standard deviation `sd`)
    detect with 80% power in a two-sided 5% test, by the same approximation as sample_size;
    None when a group has no values."""
    if n_a == 0 or n_b == 0:
        return None
    return _z_sum() * sd * math.sqrt(1 / n_a + 1 / n_b)
