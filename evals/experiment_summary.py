"""The numbers of a live experiment's report, from the records the gateway kept of each answer it
gave the experiment and the feedback users posted on them: per arm, its traffic, feedback, mean
score, latency, tokens and failures; per pair of arms, the difference of their mean scores with
Welch's t-test, and how much feedback telling them apart would take."""

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import fmean
from typing import Any

from evals.stats import (
    compare_means,
    detectable_difference,
    mean_interval,
    percentile,
    pooled_sd,
    sample_size,
    wilson,
)
from gateway.contract import OUTCOME_OK, OUTCOME_UNFINISHED, ExperimentRecord, ExperimentRecords

# The largest standard deviation scores in -1..1 can have (half at each end): the power
# calculation's assumption while the scores are too few, or too alike, to estimate one.
MAX_SD = 1.0
# The largest difference two mean scores in -1..1 can have.
MAX_DIFFERENCE = 2.0


@dataclass(frozen=True)
class ArmSummary:
    """One arm's requests and the feedback on them. Latency, time to first token and tokens are
    of its finished requests (outcome "ok") that report them."""

    arm: str
    weight: int
    requests: int
    users: int  # distinct users named
    without_user: int  # requests that named none: each got an arm of its own
    feedback: int
    score_mean: float | None
    score_interval: tuple[float, float] | None  # 95% t-interval; None for fewer than two scores
    finished: int
    latency_p50: float | None
    latency_p95: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_mean: float | None
    completion_tokens_mean: float | None
    errors: tuple[tuple[str, int], ...]  # each error outcome and how many, most frequent first
    unfinished: int

    @property
    def error_count(self) -> int:
        return sum(count for _, count in self.errors)

    @property
    def feedback_interval(self) -> tuple[float, float] | None:
        """The feedback rate's 95% Wilson interval; None for an arm without requests."""
        return wilson(self.feedback, self.requests) if self.requests else None


@dataclass(frozen=True)
class Power:
    """How many feedbacks per arm a comparison needs to detect a difference of `detect` in mean
    score (two-sided 5%, 80% power), and what it can detect with those it has."""

    detect: float
    sd: float
    sd_observed: bool  # False: MAX_SD, as an arm has fewer than two scores or none of them vary
    needed: int  # per arm
    more_a: int  # how many more arm A needs; 0 when it has enough
    more_b: int
    detectable: float | None  # the smallest difference the feedback so far detects; None: an arm has none


@dataclass(frozen=True)
class Comparison:
    """Arm B against arm A, A being the one listed first in the experiment: B's mean score minus
    A's, its 95% interval and Welch's p; None when an arm has fewer than two scores, or none vary."""

    a: str
    b: str
    scores_a: int
    scores_b: int
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    power: Power


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    arms: tuple[ArmSummary, ...]
    comparisons: tuple[Comparison, ...]  # every pair of arms, in the experiment's order
    first: float | None  # the oldest record's unix time; None when there are none
    last: float | None


def parse(payload: ExperimentRecords | Mapping[str, Any]) -> ExperimentRecords:
    """The payload, checked: as the gateway's JSON, or already parsed."""
    return payload if isinstance(payload, ExperimentRecords) else ExperimentRecords.model_validate(payload)


def summarize(payload: ExperimentRecords | Mapping[str, Any], detect: float = 0.2) -> ExperimentReport:
    """Every arm of the experiment, those without records too, and every pair of them compared;
    `detect`: the difference in mean score the power calculation is for."""
    if not 0 < detect <= MAX_DIFFERENCE:
        raise ValueError(f"the difference to detect must be above 0 and at most {MAX_DIFFERENCE:g}, not {detect}")
    records = parse(payload)
    by_arm: dict[str, list[ExperimentRecord]] = {arm: [] for arm in records.experiment.arms}
    for record in records.records:
        by_arm[record.arm].append(record)
    scores = {arm: [r.score for r in rs if r.score is not None] for arm, rs in by_arm.items()}
    created = [r.created for r in records.records]
    return ExperimentReport(
        name=records.experiment.name,
        arms=tuple(_arm(arm, weight, by_arm[arm]) for arm, weight in records.experiment.arms.items()),
        comparisons=tuple(_compare(a, b, scores[a], scores[b], detect) for a, b in combinations(by_arm, 2)),
        first=min(created, default=None),
        last=max(created, default=None),
    )


def _arm(arm: str, weight: int, records: list[ExperimentRecord]) -> ArmSummary:
    scores = [r.score for r in records if r.score is not None]
    finished = [r for r in records if r.outcome == OUTCOME_OK]
    latencies = [r.latency_ms for r in finished if r.latency_ms is not None]
    ttfts = [r.ttft_ms for r in finished if r.ttft_ms is not None]
    prompt = [r.prompt_tokens for r in finished if r.prompt_tokens is not None]
    completion = [r.completion_tokens for r in finished if r.completion_tokens is not None]
    errors = Counter(r.outcome for r in records if r.outcome not in (OUTCOME_OK, OUTCOME_UNFINISHED))
    return ArmSummary(
        arm=arm,
        weight=weight,
        requests=len(records),
        users=len({r.user for r in records if r.user}),
        without_user=sum(1 for r in records if not r.user),
        feedback=len(scores),
        score_mean=fmean(scores) if scores else None,
        score_interval=mean_interval(scores),
        finished=len(finished),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        prompt_tokens=sum(prompt),
        completion_tokens=sum(completion),
        prompt_tokens_mean=fmean(prompt) if prompt else None,
        completion_tokens_mean=fmean(completion) if completion else None,
        errors=tuple(errors.most_common()),
        unfinished=sum(1 for r in records if r.outcome == OUTCOME_UNFINISHED),
    )


def _compare(a: str, b: str, scores_a: Sequence[float], scores_b: Sequence[float], detect: float) -> Comparison:
    welch = compare_means(scores_b, scores_a)  # B - A
    observed = pooled_sd(scores_a, scores_b)
    sd = observed if observed else MAX_SD  # None, or 0: scores too few or too alike to estimate it
    needed = sample_size(sd, detect)
    power = Power(
        detect=detect,
        sd=sd,
        sd_observed=bool(observed),
        needed=needed,
        more_a=max(0, needed - len(scores_a)),
        more_b=max(0, needed - len(scores_b)),
        detectable=detectable_difference(sd, len(scores_a), len(scores_b)),
    )
    return Comparison(
        a=a,
        b=b,
        scores_a=len(scores_a),
        scores_b=len(scores_b),
        difference=welch.difference if welch else None,
        low=welch.low if welch else None,
        high=welch.high if welch else None,
        p_value=welch.p_value if welch else None,
        power=power,
    )
