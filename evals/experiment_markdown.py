"""The experiment report's report.md: a row per arm, then each pair of arms compared, with what
the difference says and how much more feedback telling them apart would take."""

from datetime import UTC, datetime

from evals.experiment_summary import MAX_DIFFERENCE, ArmSummary, Comparison, ExperimentReport
from evals.markdown import format_number, format_p, format_rate, table
from evals.stats import POWER

COLUMNS = (
    "arm",
    "requests",
    "users",
    "no user",
    "feedback",
    "mean score (95% CI)",
    "latency p50 ms",
    "latency p95 ms",
    "ttft p50 ms",
    "ttft p95 ms",
    "prompt tokens, mean",
    "completion tokens, mean",
    "errors",
    "unfinished",
)


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
        *table(COLUMNS, (_cells(arm) for arm in report.arms)),
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


def _cells(arm: ArmSummary) -> list[str]:
    return [
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


def _score(mean: float | None, interval: tuple[float, float] | None) -> str:
    """`0.42 (0.21 to 0.63)`; `1.00 (n/a)` for one score; `n/a` for none."""
    if mean is None:
        return "n/a"
    return f"{mean:.2f} ({f'{interval[0]:.2f} to {interval[1]:.2f}' if interval else 'n/a'})"


def _time(unix: float | None) -> str:
    return "n/a" if unix is None else datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
