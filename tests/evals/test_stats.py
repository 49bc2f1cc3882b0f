"""The report's statistics against values worked out by hand or published."""

import pytest
from scipy.stats import t

from evals.markdown import format_rate
from evals.stats import (
    compare_means,
    compare_paired,
    detectable_difference,
    mean_interval,
    pooled_sd,
    sample_size,
    wilson,
)


def test_the_wilson_interval_of_known_counts_and_of_the_edges() -> None:
    assert [round(bound, 2) for bound in wilson(7, 25)] == [0.14, 0.48]
    assert wilson(0, 5)[0] == 0 and round(wilson(0, 5)[1], 3) == 0.434  # z² / (n + z²)
    assert round(wilson(5, 5)[0], 3) == 0.566 and wilson(5, 5)[1] == 1
    with pytest.raises(ValueError):
        wilson(0, 0)


def test_a_rate_reads_as_its_count_percentage_and_interval() -> None:
    assert format_rate(7, 25) == "7/25 (28%, 14-48%)"
    assert format_rate(0, 5) == "0/5 (0%, 0-43%)"
    assert format_rate(5, 5) == "5/5 (100%, 57-100%)"
    assert format_rate(0, 0) == "n/a"


def pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return a, b


def test_mcnemar_is_the_exact_binomial_test_of_the_questions_one_route_got_right() -> None:
    result = compare_paired(*pairs(both=3, only_a=8, only_b=1, neither=4))
    # Two-sided: 2 * P(X <= 1) for X ~ Binomial(9, 1/2) = 2 * (1 + 9) / 512.
    assert result.p_value == 0.0390625
    assert (result.n, result.a_right, result.b_right, result.both_right) == (16, 11, 4, 3)
    assert (result.only_a, result.only_b) == (8, 1)
    assert result.difference == pytest.approx(7 / 16)
    assert 0 < result.low < result.difference < result.high < 1


def test_the_paired_interval_and_p_value_match_a_published_example() -> None:
    """Cavo et al. (2012), complete response before and after consolidation therapy: the paired
    2x2 example of Fagerland, Lydersen and Laake's "Statistical Analysis of Contingency Tables",
    whose R package (contingencytables) gives Newcombe's square-and-add interval -0.1186 to
    -0.0046 and McNemar's exact conditional p 0.052479."""
    result = compare_paired(*pairs(both=59, only_a=6, only_b=16, neither=80))
    assert round(result.difference, 4) == -0.0621
    assert (round(result.low, 4), round(result.high, 4)) == (-0.1186, -0.0046)
    assert round(result.p_value, 6) == 0.052479


def test_routes_that_tie_on_every_question_do_not_differ() -> None:
    result = compare_paired(*pairs(both=4, only_a=0, only_b=0, neither=6))
    assert (result.difference, result.p_value, result.only_a, result.only_b) == (0, 1.0, 0, 0)
    assert result.low == pytest.approx(-result.high) and result.high > 0  # ten questions do not pin it to 0


def test_a_balanced_split_is_no_evidence_either_way() -> None:
    result = compare_paired(*pairs(both=2, only_a=3, only_b=3, neither=2))
    assert result.difference == 0 and result.p_value == 1.0


def test_unpaired_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="same questions"):
        compare_paired([True, False], [True])
    with pytest.raises(ValueError, match="at least one"):
        compare_paired([], [])


def test_welch_matches_the_textbook_formula_on_unequal_variances() -> None:
    a, b = [1.0, 1.0, 0.0, 1.0], [0.0, -1.0, 0.0, -1.0, 1.0]
    # By hand: means 0.75 and -0.2, variances 0.25 and 0.7, standard error sqrt(0.25/4 + 0.7/5) = 0.45.
    result = compare_means(a, b)
    assert result is not None
    assert result.difference == pytest.approx(0.95)
    se = (0.25 / 4 + 0.7 / 5) ** 0.5
    df = (0.25 / 4 + 0.7 / 5) ** 2 / ((0.25 / 4) ** 2 / 3 + (0.7 / 5) ** 2 / 4)
    assert result.df == pytest.approx(df)
    assert result.high - result.difference == pytest.approx(t.ppf(0.975, df) * se)
    assert result.p_value == pytest.approx(2 * t.sf(0.95 / se, df))
    assert compare_means([1.0], b) is None  # one value has no spread
    assert compare_means([1.0, 1.0], [0.0, 0.0]) is None  # nothing varies: no error to test against


def test_the_mean_interval_is_the_t_interval() -> None:
    low, high = mean_interval([0.0, 1.0, 1.0, 1.0]) or (0, 0)
    assert (low + high) / 2 == pytest.approx(0.75)
    assert high - 0.75 == pytest.approx(t.ppf(0.975, 3) * 0.5 / 2)  # sd 0.5, sqrt(4) = 2
    assert mean_interval([1.0]) is None
    assert mean_interval([0.5, 0.5]) == (0.5, 0.5)


def test_the_sample_size_is_the_normal_approximation_and_inverts_the_detectable_difference() -> None:
    # 2 (1.95996 + 0.84162)^2 = 15.70: with sd 1, a difference of 0.2 needs 392.4, so 393 per group.
    assert sample_size(1.0, 0.2) == 393
    assert sample_size(0.5, 0.5) == 16  # 15.70 / 1
    assert sample_size(0.1, 2.0) == 2  # never fewer than a t-test needs
    assert detectable_difference(1.0, 393, 393) == pytest.approx(0.2, abs=0.001)
    assert detectable_difference(1.0, 0, 5) is None
    assert pooled_sd([0.0, 2.0], [1.0, 1.0, 1.0]) == pytest.approx((2 / 3) ** 0.5)  # (1*2 + 2*0) / 3
