"""Scores a run's recorded answers and writes report.md (a row per route, every rate with its
95% interval; the routes compared pair by pair on the same questions; then the questions where
the routes disagree) and report.png. `python -m evals.report DIR` rebuilds both."""

import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evals.dataset import SPLITS, BadEvalSet, Question, load_questions
from evals.run import EvalFailed, read_config, read_results
from evals.scoring import Score, score
from evals.stats import compare_paired, format_number, format_p, format_rate, percentile, wilson
from gateway.contract import AUTO, Route

EXAMPLES = 8
EXAMPLE_CHARS = 300


@dataclass(frozen=True)
class Answer:
    question: Question
    route: str
    record: dict[str, Any]
    score: Score
    unseen: bool  # its question is about a document no fine-tuning example is about


Count = tuple[int, int]  # how many, of how many


def _count(flags: Sequence[bool]) -> Count:
    return sum(flags), len(flags)


SEEN, UNSEEN, TRAIN = "held-out, seen docs", "held-out, unseen docs", "train"
# The fact-accuracy columns, over answerable questions: held-out ones are split by whether
# fine-tuning saw their document, which tells reading the passages from remembering them.
FACT_GROUPS: dict[str, Callable[[Answer], bool]] = {
    SEEN: lambda a: a.question.split == "heldout" and not a.unseen,
    UNSEEN: lambda a: a.question.split == "heldout" and a.unseen,
    TRAIN: lambda a: a.question.split == "train",
}


@dataclass(frozen=True)
class RouteSummary:
    route: str
    asked: int
    answers: list[Answer]

    def _answerable(self) -> list[Answer]:
        return [a for a in self.answers if a.question.answerable]

    def facts(self, group: str) -> Count:
        return _count([a.score.correct for a in self._answerable() if FACT_GROUPS[group](a)])

    def hit_rate(self) -> Count:
        return _count([a.score.retrieved for a in self._answerable() if a.score.retrieved is not None])

    def citing(self, kind: str) -> Count:
        """Answers to answerable questions, of those that retrieved, that cite a source ("cites")
        or a passage of the question's document ("cites_document")."""
        return _count([getattr(a.score.citations, kind) for a in self._answerable() if a.score.citations is not None])

    def missing_citations(self) -> Count:
        """Answers that retrieved and cite a source number the prompt did not have."""
        return _count([a.score.citations.cites_missing for a in self.answers if a.score.citations is not None])

    def abstention(self, answerable: bool) -> Count:
        return _count([a.score.abstained for a in self.answers if a.question.answerable == answerable])

    def voice(self, rule: str) -> Count:
        return _count([getattr(a.score.voice, rule) for a in self.answers])

    def truncated(self) -> Count:
        return _count([a.record.get("finish_reason") == "length" for a in self.answers])

    def latency(self, q: float) -> float | None:
        return percentile([a.record["latency_ms"] for a in self.answers], q)

    def retrieve_p50(self) -> float | None:
        if self.route == Route.FINETUNED:
            return None
        return percentile(
            [a.record["timing"]["retrieve"] for a in self.answers if "retrieve" in a.record["timing"]], 50
        )

    def models(self) -> list[str]:
        return sorted({str(a.record.get("model")) for a in self.answers})

    def tokens(self, kind: str) -> float | None:
        counts = [a.record[kind] for a in self.answers if a.record.get(kind) is not None]
        return mean(counts) if counts else None


def summarize(out_dir: Path) -> tuple[dict[str, Any], list[Question], list[RouteSummary]]:
    config = read_config(out_dir)
    every_question = load_questions(Path(config["data"]))
    records = read_results(out_dir, every_question)
    asked_ids = {question_id for question_id, _ in records}
    questions = [q for q in every_question if q.id in asked_ids]
    unseen = frozenset(config.get("unseen_docs", ()))  # absent from run.json before unseen documents
    summaries = []
    for route in config["routes"]:
        answers = []
        for question in questions:
            record = records.get((question.id, route))
            if record and record["status"] == "ok":
                retrieved = record.get("answered_as", route) != Route.FINETUNED  # auto's choice
                sources = record["sources"] if retrieved else None
                scored = score(question, record["answer"], sources)
                answers.append(Answer(question, route, record, scored, unseen=question.doc_id in unseen))
        summaries.append(RouteSummary(route, sum(1 for q in questions if (q.id, route) in records), answers))
    return config, questions, summaries


def sampling_label(sampling: dict[str, Any] | None) -> str:
    """ ", sampling `{...}`" for a run that sent sampling fields of its own; else nothing."""
    return f", sampling `{json.dumps(sampling)}`" if sampling else ""


def markdown(config: dict[str, Any], questions: list[Question], summaries: list[RouteSummary]) -> str:
    answerable = [q for q in questions if q.answerable]
    by_split = {split: sum(1 for q in answerable if q.split == split) for split in SPLITS}
    unseen = sorted(config.get("unseen_docs", ()))
    on_unseen = sum(1 for q in answerable if q.split == "heldout" and q.doc_id in unseen)
    lines = [
        "# Answer quality: the routes on the same questions",
        "",
        f"Eval set `{config['data']}`: {len(questions)} questions, "
        f"{by_split['heldout']} answerable held-out ({on_unseen} of them on unseen documents), "
        f"{by_split['train']} answerable train, {len(questions) - len(answerable)} unanswerable. "
        f"Gateway {config['gateway']}, temperature 0, max_tokens {config['max_tokens']}, "
        f"adapter {config['adapter'] or 'the default'}, collection {config['collection'] or 'the default'}"
        f"{sampling_label(config.get('sampling'))}.",
        "",
        "Each rate: how many of how many, the percentage and its 95% Wilson interval.",
        "",
        "| route | answers | facts: held-out, seen docs | facts: held-out, unseen docs | facts: train "
        "| right document in sources | cites a source | cites the right document | abstains: unanswerable "
        "| abstains: answerable | voice: all rules | greeting | sign-off | format | cut at max_tokens "
        "| latency p50 ms | latency p95 ms | retrieve p50 ms | prompt tokens, mean | completion tokens, mean |",
        "|---|" + "---:|" * 19,
    ]
    for s in summaries:
        cells = [
            s.route,
            f"{len(s.answers)}/{s.asked}",
            *(format_rate(*s.facts(group)) for group in FACT_GROUPS),
            format_rate(*s.hit_rate()),
            format_rate(*s.citing("cites")),
            format_rate(*s.citing("cites_document")),
            format_rate(*s.abstention(answerable=False)),
            format_rate(*s.abstention(answerable=True)),
            format_rate(*s.voice("all")),
            format_rate(*s.voice("greeting")),
            format_rate(*s.voice("sign_off")),
            format_rate(*s.voice("format")),
            format_rate(*s.truncated()),
            format_number(s.latency(50)),
            format_number(s.latency(95)),
            format_number(s.retrieve_p50()),
            format_number(s.tokens("prompt_tokens")),
            format_number(s.tokens("completion_tokens")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "- **facts**: answerable questions whose answer contains every required fact (case-insensitive patterns). "
        "Unseen docs: the documents no fine-tuning example asks about or shows as a passage "
        f"({', '.join(unseen) or 'none given: n/a'}); the held-out questions on the others are the seen docs.",
        "- **right document in sources**: the question's document among the passages retrieved (not for finetuned).",
        "- **cites**: answers to answerable questions, of those that retrieved, with a `[n]` marker pointing to "
        "one of the prompt's sources; **the right document**: one points to a passage of the question's document. "
        "Answers that retrieved and cite a source the prompt did not have: "
        + (
            ", ".join(f"{s.route} {format_rate(*s.missing_citations())}" for s in summaries if s.missing_citations()[1])
            or "none retrieved"
        )
        + ".",
        "- **abstains**: the answer says it does not know. Right on unanswerable questions, wrong on answerable ones.",
        "- **voice**: the fine-tuning set's rules: greeting first, sign-off last, numbered steps or 1-3 sentences.",
        "- **latency**: request to whole answer at the client, answered requests only; the routes of each question "
        "were asked one after the other, so they shared the machine's load.",
        "",
        "Models that answered: " + "; ".join(f"{s.route}: {', '.join(s.models()) or 'none'}" for s in summaries) + ".",
        "",
        "![answer quality and latency per route](report.png)",
    ]
    failed = [s for s in summaries if len(s.answers) < s.asked]
    if failed:
        lines += ["", "Requests that failed (rerun the same command to retry them): "]
        lines[-1] += ", ".join(f"{s.route} {s.asked - len(s.answers)}" for s in failed) + "."
    lines += [
        "",
        *paired_tables(list(combinations(summaries, 2)), bool(unseen)),
        *_auto_against_fixed(summaries),
        *_disagreements(questions, summaries),
    ]
    return "\n".join(lines) + "\n"


PairedTable = tuple[str, Callable[[Answer], bool], Callable[[Answer], bool]]  # title, questions counted, right


def paired_tables(pairs: list[tuple[RouteSummary, RouteSummary]], with_unseen: bool) -> list[str]:
    """Each pair of routes on the questions both answered: fact accuracy on held-out questions
    (seen documents, then unseen ones) and abstention on unanswerable ones."""
    if not pairs:
        return []
    seen: PairedTable = (
        "facts: held-out, seen docs",
        lambda a: a.question.answerable and FACT_GROUPS[SEEN](a),
        _correct,
    )
    unseen: PairedTable = (
        "facts: held-out, unseen docs",
        lambda a: a.question.answerable and FACT_GROUPS[UNSEEN](a),
        _correct,
    )
    abstention: PairedTable = ("abstains: unanswerable", lambda a: not a.question.answerable, _abstained)
    tables = [seen, unseen, abstention] if with_unseen else [seen, abstention]
    lines = [
        "## Routes compared pair by pair",
        "",
        "Each row sets route A against route B on the questions both answered. Only A / only B: the questions one "
        "got right and the other did not. A - B: the difference of their rates in points, with its 95% interval "
        "(Newcombe's method for paired proportions). p: McNemar's exact test on the only-A / only-B questions, "
        "how likely a split at least this uneven would be if the two routes were equally good (below 0.05: "
        "unlikely to be chance).",
        "",
    ]
    for title, counted, right in tables:
        lines += [
            f"**{title}**",
            "",
            "| A vs B | questions | both right | only A | only B | A - B, points (95% CI) | McNemar p |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(_paired_row(a, b, counted, right) for a, b in pairs),
            "",
        ]
    return lines


def _correct(answer: Answer) -> bool:
    return answer.score.correct


def _abstained(answer: Answer) -> bool:
    return answer.score.abstained


def _paired_row(
    a: RouteSummary, b: RouteSummary, counted: Callable[[Answer], bool], right: Callable[[Answer], bool]
) -> str:
    theirs = {answer.question.id: answer for answer in b.answers if counted(answer)}
    pairs = [(mine, theirs[mine.question.id]) for mine in a.answers if counted(mine) and mine.question.id in theirs]
    if not pairs:
        return f"| {a.route} vs {b.route} | 0 | n/a | n/a | n/a | n/a | n/a |"
    c = compare_paired([right(mine) for mine, _ in pairs], [right(other) for _, other in pairs])
    points = f"{c.difference * 100:+.0f} ({c.low * 100:+.0f} to {c.high * 100:+.0f})"
    return (
        f"| {a.route} vs {b.route} | {c.n} | {c.both_right} | {c.only_a} | {c.only_b} | {points} "
        f"| {format_p(c.p_value)} |"
    )


def _auto_against_fixed(summaries: list[RouteSummary]) -> list[str]:
    """auto's choices, and its facts and abstention against each fixed route on the questions
    every route answered; the issue's goals: within 2 points of the best fixed route on
    answerable questions, and abstaining more often than rag on unanswerable ones."""
    auto = next((s for s in summaries if s.route == AUTO), None)
    fixed = [s for s in summaries if s.route != AUTO]
    if auto is None or not fixed:
        return []
    common = set.intersection(*({a.question.id for a in s.answers} for s in summaries))

    def on(s: RouteSummary, answerable: bool) -> list[Answer]:
        return [a for a in s.answers if a.question.id in common and a.question.answerable == answerable]

    def facts(s: RouteSummary) -> tuple[int, int]:
        return sum(a.score.correct for a in on(s, True)), len(on(s, True))

    def abstains(s: RouteSummary) -> tuple[int, int]:
        return sum(a.score.abstained for a in on(s, False)), len(on(s, False))

    def rate(count: tuple[int, int]) -> float | None:
        return count[0] / count[1] if count[1] else None

    def choices(answerable: bool) -> str:
        chosen = Counter(a.record.get("answered_as", AUTO) for a in on(auto, answerable))
        return ", ".join(f"{route} {n}" for route, n in sorted(chosen.items())) or "none"

    best = max(fixed, key=lambda s: rate(facts(s)) or 0)
    lines = [
        f"## auto against the fixed routes ({len(common)} questions every route answered)",
        "",
        f"auto chose, on answerable questions: {choices(True)}; on unanswerable ones: {choices(False)}.",
        "",
        "| route | facts: answerable | abstains: unanswerable |",
        "|---|---:|---:|",
        *(f"| {s.route} | {format_rate(*facts(s))} | {format_rate(*abstains(s))} |" for s in summaries),
        "",
    ]
    auto_rate, best_rate = rate(facts(auto)), rate(facts(best))
    if auto_rate is not None and best_rate is not None:
        points = (auto_rate - best_rate) * 100
        lines.append(
            f"- Answerable: auto {points:+.1f} points against {best.route}, the best fixed route "
            f"({'within' if points >= -2 else 'more than'} the 2 points the goal allows)."
        )
    rag = next((s for s in fixed if s.route == Route.RAG), None)
    if rag is not None and on(auto, False):
        auto_abstains, rag_abstains = abstains(auto)[0], abstains(rag)[0]
        verdict = "more often than" if auto_abstains > rag_abstains else "no more often than"
        lines.append(
            f"- Unanswerable: auto says it does not know {verdict} rag ({auto_abstains} against {rag_abstains})."
        )
    return [*lines, ""]


def _disagreements(questions: list[Question], summaries: list[RouteSummary]) -> list[str]:
    """A fixed sample (seed 0) of the questions some routes got right and others wrong."""
    by_question: dict[str, dict[str, Answer]] = {}
    for s in summaries:
        for answer in s.answers:
            by_question.setdefault(answer.question.id, {})[s.route] = answer
    routes = [s.route for s in summaries]
    split = [
        q
        for q in questions
        if len(answers := by_question.get(q.id, {})) == len(routes)
        and len({a.score.correct for a in answers.values()}) == 2
    ]
    lines = [f"## Where the routes disagree ({len(split)} of {len(by_question)} questions)", ""]
    for question in sorted(random.Random(0).sample(split, min(EXAMPLES, len(split))), key=lambda q: q.id):
        expected = question.answer or "(not in the knowledge base: the right answer says so)"
        lines += [f"**{question.id}** ({question.split}) {question.question} — expected: {expected}", ""]
        for route in routes:
            answer = by_question[question.id][route]
            text = " ⏎ ".join(answer.record["answer"].split("\n"))
            if len(text) > EXAMPLE_CHARS:
                text = text[:EXAMPLE_CHARS] + "…"
            lines.append(f"- {route} {'✓' if answer.score.correct else '✗'}: {text}")
        lines.append("")
    return lines


def chart(summaries: list[RouteSummary]) -> Figure:
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
    width = 0.8 / max(len(summaries), 1)
    for i, s in enumerate(summaries):
        values, below, above = zip(*(_bar(metric(s)) for metric in metrics.values()), strict=True)
        quality.bar(np.arange(len(metrics)) + i * width, values, width, yerr=[below, above], capsize=3, label=s.route)
        latency.bar(np.arange(2) + i * width, [scaled(s.latency(q), 1 / 1000) for q in (50, 95)], width, label=s.route)
    quality.set_xticks(np.arange(len(metrics)) + width * (len(summaries) - 1) / 2, list(metrics))
    quality.set_ylabel("% of answers (95% interval)")
    quality.set_ylim(0, 100)
    quality.set_title("Answer quality")
    quality.legend()
    latency.set_xticks(np.arange(2) + width * (len(summaries) - 1) / 2, ["p50", "p95"])
    latency.set_ylabel("seconds")
    latency.set_title("Latency, request to whole answer")
    return figure


def _bar(count: Count) -> tuple[float, float, float]:
    """A rate in percent and how far its 95% Wilson interval reaches below and above it; nan
    (no bar) for a rate of nothing."""
    k, n = count
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    low, high = wilson(k, n)
    return k / n * 100, (k / n - low) * 100, (high - k / n) * 100


def scaled(value: float | None, factor: float) -> float:
    """A value to draw, in the chart's unit; nan (no bar) for a value there is none of."""
    return float("nan") if value is None else value * factor


def build_report(out_dir: Path) -> tuple[Path, Path]:
    config, questions, summaries = summarize(out_dir)
    report, picture = out_dir / "report.md", out_dir / "report.png"
    report.write_text(markdown(config, questions, summaries), encoding="utf-8")
    chart(summaries).savefig(picture, dpi=100)
    return report, picture


if __name__ == "__main__":
    try:
        for path in build_report(Path(sys.argv[1])):
            print(path)
    except (BadEvalSet, EvalFailed) as exc:
        sys.exit(f"error: {exc}")
