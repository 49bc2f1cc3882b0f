"""The reports' report.png: the eval's routes (answer quality and latency) and the experiment's
arms (mean score and latency), each value with its 95% interval where it has one."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from evals.experiment_summary import ExperimentReport
from evals.report_summary import SEEN, TRAIN, UNSEEN, Count, RouteSummary
from evals.stats import wilson


def report_chart(summaries: list[RouteSummary]) -> Figure:
    """The eval's routes: each rate with its Wilson interval, and latency p50 and p95."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    quality, latency = figure.subplots(1, 2, width_ratios=[2, 1])
    metrics: dict[str, Callable[[RouteSummary], Count]] = {
        "facts: held-out,\nseen docs": lambda s: s.facts(SEEN),
        "facts: held-out,\nunseen docs": lambda s: s.facts(UNSEEN),
        "facts: train": lambda s: s.facts(TRAIN),
        "right document": lambda s: s.hit_rate(),
        "abstains when\nunanswerable": lambda s: s.abstention(answerable=False),
        "voice": lambda s: s.voice("all"),
    }
    rates: dict[str, Sequence[float]] = {}
    reach: dict[str, list[Sequence[float]]] = {}
    for s in summaries:
        values, below, above = zip(*(_rate(metric(s)) for metric in metrics.values()), strict=True)
        rates[s.route], reach[s.route] = values, [below, above]
    _grouped_bars(quality, list(metrics), rates, reach)
    quality.set_ylabel("% of answers (95% interval)")
    quality.set_ylim(0, 100)
    quality.set_title("Answer quality")
    quality.legend()
    _latency(latency, ["p50", "p95"], {s.route: [s.latency(q) for q in (50, 95)] for s in summaries})
    return figure


def experiment_chart(report: ExperimentReport) -> Figure:
    """The experiment's arms: mean score with its t-interval, and latency p50 and p95."""
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    score, latency = figure.subplots(1, 2)
    x = np.arange(len(report.arms))
    means = [_scaled(arm.score_mean, 1) for arm in report.arms]
    intervals = [arm.score_interval or (float("nan"), float("nan")) for arm in report.arms]
    below = [mean - low for mean, (low, _) in zip(means, intervals, strict=True)]
    above = [high - mean for mean, (_, high) in zip(means, intervals, strict=True)]
    score.bar(x, means, yerr=[below, above], capsize=4, color=[f"C{i}" for i in x])
    score.set_xticks(x, [f"{arm.arm}\n{arm.feedback} feedbacks" for arm in report.arms])
    score.axhline(0, color="grey", linewidth=0.8)
    score.set_ylim(-1, 1)
    score.set_ylabel("mean score (95% interval)")
    score.set_title("Feedback")
    percentiles = {
        "p50": [arm.latency_p50 for arm in report.arms],
        "p95": [arm.latency_p95 for arm in report.arms],
    }
    _latency(latency, [arm.arm for arm in report.arms], percentiles)
    latency.legend()
    return figure


def _grouped_bars(
    axes: Axes,
    groups: Sequence[str],
    heights: Mapping[str, Sequence[float]],
    reach: Mapping[str, list[Sequence[float]]] | None = None,
) -> None:
    """A bar of each series in each group, side by side, the group's name under their middle; with
    `reach`, each bar's interval: how far it reaches below and above the bar."""
    width = 0.8 / max(len(heights), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(heights.items()):
        interval: dict[str, Any] = {} if reach is None else {"yerr": reach[label], "capsize": 3}
        axes.bar(x + i * width, values, width, label=label, **interval)
    axes.set_xticks(x + width * (len(heights) - 1) / 2, list(groups))


def _latency(axes: Axes, groups: Sequence[str], milliseconds: Mapping[str, Sequence[float | None]]) -> None:
    seconds = {label: [_scaled(ms, 1 / 1000) for ms in values] for label, values in milliseconds.items()}
    _grouped_bars(axes, groups, seconds)
    axes.set_ylabel("seconds")
    axes.set_title("Latency, request to whole answer")


def _rate(count: Count) -> tuple[float, float, float]:
    """A rate in percent and how far its 95% Wilson interval reaches below and above it; nan
    (no bar) for a rate of nothing."""
    k, n = count
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = wilson(k, n)
    return k / n * 100, (k / n - low) * 100, (high - k / n) * 100


def _scaled(value: float | None, factor: float) -> float:
    """A value to draw, in the chart's unit; nan (no bar) for a value there is none of."""
    return float("nan") if value is None else value * factor
