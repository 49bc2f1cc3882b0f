"""The report of a live experiment between routes, from the records the gateway kept of each answer
it gave the experiment and the feedback users posted on them (GET /v1/ragft/experiment): per arm,
its traffic, feedback, mean score, latency, tokens and failures; per pair of arms, the difference
of their mean scores with Welch's t-test, and how much feedback telling them apart would take.
`python -m evals.experiment DIR` rebuilds report.md and report.png from DIR/records.json."""

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pydantic import BaseModel, Field, PositiveInt, model_validator

from evals.report import scaled
from evals.stats import (
    POWER,
    compare_means,
    detectable_difference,
    format_number,
    format_p,
    format_rate,
    mean_interval,
    percentile,
    pooled_sd,
    sample_size,
    wilson,
)

OK = "ok"
UNFINISHED = ""  # the outcome of an answer that never finished: the gateway stopped mid-stream
# The largest standard deviation scores in -1..1 can have (half at each end): the power
# calculation's assumption while the scores are too few, or too alike, to estimate one.
MAX_SD = 1.0
# The largest difference two mean scores in -1..1 can have.
MAX_DIFFERENCE = 2.0


class ExperimentRecord(BaseModel):
    """One answer the gateway gave the experiment, and the feedback on it."""

    id: str
    arm: str  # the route that answered
    user: str  # an opaque hash of the caller's user; "" when the request named none
    sticky: bool  # whether the arm followed the user (one was named)
    created: float  # unix seconds
    outcome: str  # "ok", an error type such as "upstream_timeout", or "" (UNFINISHED)
    latency_ms: float | None
    ttft_ms: float | None  # streamed answers only
    prompt_tokens: int | None
    completion_tokens: int | None
    score: float | None = Field(ge=-1, le=1)  # the feedback; None: none was posted
    comment: str | None


class Experiment(BaseModel):
    name: str
    arms: dict[str, PositiveInt]  # route -> weight, in the experiment's order


class ExperimentRecords(BaseModel):
    """The payload of GET /v1/ragft/experiment."""

    experiment: Experiment
    records: list[ExperimentRecord]

    @model_validator(mode="after")
    def _records_are_of_its_arms(self) -> "ExperimentRecords":
        strays = sorted({r.arm for r in self.records} - set(self.experiment.arms))
        if strays:
            raise ValueError(f"records of arms the experiment does not have: {', '.join(strays)}")
        return self


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
    finished = [r for r in records if r.outcome == OK]
    latencies = [r.latency_ms for r in finished if r.latency_ms is not None]
    ttfts = [r.ttft_ms for r in finished if r.ttft_ms is not None]
    prompt = [r.prompt_tokens for r in finished if r.prompt_tokens is not None]
    completion = [r.completion_tokens for r in finished if r.completion_tokens is not None]
    errors = Counter(r.outcome for r in records if r.outcome not in (OK, UNFINISHED))
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
        unfinished=sum(1 for r in records if r.outcome == UNFINISHED),
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


def _score(mean: float | None, interval: tuple[float, float] | None) -> str:
    """`0.42 (0.21 to 0.63)`; `1.00 (n/a)` for one score; `n/a` for none."""
    if mean is None:
        return "n/a"
    return f"{mean:.2f} ({f'{interval[0]:.2f} to {interval[1]:.2f}' if interval else 'n/a'})"


def _time(unix: float | None) -> str:
    return "n/a" if unix is None else datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def markdown(report: ExperimentReport) -> str:
    total = sum(arm.weight for arm in report.arms)
    requests = sum(arm.requests for arm in report.arms)
    span = (
        f". {requests} requests, from {_time(report.first)} to {_time(report.last)}."
        if requests
        else ". No requests yet."
    )
    lines = [
        f"# Experiment {report.name}: " + " against ".join(arm.arm for arm in report.arms),
        "",
        "Arms and weights: "
        + ", ".join(f"{arm.arm} {arm.weight} ({arm.weight / total:.0%})" for arm in report.arms)
        + span,
        "",
        "| arm | requests | users | no user | feedback | mean score (95% CI) | latency p50 ms | latency p95 ms "
        "| ttft p50 ms | ttft p95 ms | prompt tokens, mean | completion tokens, mean | errors | unfinished |",
        "|---|" + "---:|" * 13,
    ]
    for arm in report.arms:
        cells = [
            arm.arm,
            str(arm.requests),
            str(arm.users),
            str(arm.without_user),
            format_rate(arm.feedback, arm.requests),
            _score(arm.score_mean, arm.score_interval),
            format_number(arm.latency_p50),
            format_number(arm.latency_p95),
            format_number(arm.ttft_p50),
            format_number(arm.ttft_p95),
            format_number(arm.prompt_tokens_mean),
            format_number(arm.completion_tokens_mean),
            str(arm.error_count),
            str(arm.unfinished),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- **users**: distinct users named (as opaque hashes), each kept on one arm; **no user**: requests that "
        "named none, each given an arm of its own.",
        "- **feedback**: requests with a score posted, of all requests, with the rate's 95% Wilson interval; "
        "**mean score**: of those scores (-1 to 1), with its 95% t-interval (n/a for fewer than two scores).",
        "- **latency** (request to whole answer, at the gateway), **ttft** (to the first token, streamed answers) "
        "and **tokens**: finished requests only.",
        "- **errors**: requests that ended in an error; **unfinished**: answers that never finished "
        "(the gateway stopped mid-stream).",
        "",
        "Errors: " + "; ".join(f"{arm.arm}: {_errors(arm)}" for arm in report.arms) + ".",
        "",
        "Tokens of finished requests, in all: "
        + "; ".join(
            f"{arm.arm} {format_number(arm.prompt_tokens)} prompt, {format_number(arm.completion_tokens)} completion"
            for arm in report.arms
        )
        + ".",
        "",
        "![mean score and latency per arm](report.png)",
    ]
    if report.comparisons:
        lines += [
            "",
            "## The arms compared",
            "",
            "Each pair: the arm listed later minus the one listed first, in mean score, with the 95% interval "
            "of the difference and the p-value of Welch's t-test (how likely a difference at least this large "
            "would be if the two arms scored alike; below 0.05: unlikely to be chance).",
        ]
        for comparison in report.comparisons:
            lines += ["", f"**{comparison.b} - {comparison.a}**: {_difference(comparison)}", "", _power(comparison)]
    return "\n".join(lines) + "\n"


def _errors(arm: ArmSummary) -> str:
    return ", ".join(f"{outcome} {count}" for outcome, count in arm.errors) or "none"


def _difference(c: Comparison) -> str:
    """The difference and what it says, or why there is none."""
    counts = f"{c.scores_a} scores on {c.a}, {c.scores_b} on {c.b}"
    if c.difference is None or c.low is None or c.high is None or c.p_value is None:
        if min(c.scores_a, c.scores_b) < 2:
            return f"n/a: too few scores to compare ({counts}); the test needs at least 2 in each arm."
        return f"n/a: every score is the same within each arm ({counts}), which leaves no error to test against."
    line = (
        f"{c.difference:+.2f} in mean score (95% CI {c.low:+.2f} to {c.high:+.2f}), "
        f"Welch p = {format_p(c.p_value)} ({counts}). "
    )
    if c.p_value < 0.05:
        return line + "Significant at 5%."
    if c.power.more_a or c.power.more_b:
        return line + (
            "Not significant at 5%, on fewer feedbacks than the power calculation asks for: too few to tell "
            "the arms apart, which is no evidence that they score alike."
        )
    return line + "Not significant at 5%, on as many feedbacks as the power calculation asks for."


def _power(c: Comparison) -> str:
    p = c.power
    sd = (
        f"SD {p.sd:.2f}, pooled from the scores so far"
        if p.sd_observed
        else f"SD {p.sd:.2f} assumed, the largest scores in -1..1 can have, as "
        + (
            "the scores do not vary yet"
            if min(c.scores_a, c.scores_b) >= 2
            else "an arm has fewer than 2 scores to estimate it from"
        )
    )

    def more(arm: str, count: int) -> str:
        return f"{arm} needs {count} more" if count else f"{arm} has enough"

    line = (
        f"To detect a difference of {p.detect:g} in mean score ({POWER:.0%} power, two-sided 5%; {sd}), "
        f"each arm needs about {p.needed} feedbacks: {more(c.a, p.more_a)}, {more(c.b, p.more_b)}. "
    )
    if p.detectable is None:
        without = " and ".join(arm for arm, n in ((c.a, c.scores_a), (c.b, c.scores_b)) if n == 0)
        return line + f"With no feedback on {without} yet, no difference can be detected."
    if p.detectable > MAX_DIFFERENCE:
        return line + (
            f"With the feedbacks so far, no difference would be detected: it would take one of at least "
            f"{p.detectable:.2f}, and mean scores in -1..1 differ by {MAX_DIFFERENCE:g} at most."
        )
    return line + f"With the feedbacks so far, only a difference of at least {p.detectable:.2f} would be detected."


def chart(report: ExperimentReport) -> Figure:
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    score, latency = figure.subplots(1, 2)
    x = np.arange(len(report.arms))
    means = [scaled(arm.score_mean, 1) for arm in report.arms]
    intervals = [arm.score_interval or (float("nan"), float("nan")) for arm in report.arms]
    below = [mean - low for mean, (low, _) in zip(means, intervals, strict=True)]
    above = [high - mean for mean, (_, high) in zip(means, intervals, strict=True)]
    score.bar(x, means, yerr=[below, above], capsize=4, color=[f"C{i}" for i in x])
    score.set_xticks(x, [f"{arm.arm}\n{arm.feedback} feedbacks" for arm in report.arms])
    score.axhline(0, color="grey", linewidth=0.8)
    score.set_ylim(-1, 1)
    score.set_ylabel("mean score (95% interval)")
    score.set_title("Feedback")
    width = 0.8 / 2
    for i, (label, of) in enumerate((("p50", "latency_p50"), ("p95", "latency_p95"))):
        values = [scaled(getattr(arm, of), 1 / 1000) for arm in report.arms]
        latency.bar(x + i * width, values, width, label=label)
    latency.set_xticks(x + width / 2, [arm.arm for arm in report.arms])
    latency.set_ylabel("seconds")
    latency.set_title("Latency, request to whole answer")
    latency.legend()
    return figure


def build_report(
    payload: ExperimentRecords | Mapping[str, Any], out_dir: Path, detect: float = 0.2
) -> tuple[Path, Path]:
    """report.md and report.png in out_dir, and records.json, the payload they were made from, for
    `python -m evals.experiment DIR` to make them again; `detect` as for summarize."""
    summary = summarize(payload, detect)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = payload.model_dump(mode="json") if isinstance(payload, ExperimentRecords) else dict(payload)
    (out_dir / "records.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    report, picture = out_dir / "report.md", out_dir / "report.png"
    report.write_text(markdown(summary), encoding="utf-8")
    chart(summary).savefig(picture, dpi=100)
    return report, picture


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m evals.experiment DIR (with the records.json of an earlier report)")
    out = Path(sys.argv[1])
    try:
        for path in build_report(json.loads((out / "records.json").read_text(encoding="utf-8")), out):
            print(path)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError and a JSONDecodeError are ValueErrors
        sys.exit(f"error: {exc}")
