"""The eval report's report.md: a row per route, every rate with its 95% interval; the routes
compared pair by pair on the same questions; auto against the fixed routes; then the questions
where the routes disagree."""

import json
import random
from collections import Counter
from collections.abc import Callable
from itertools import combinations
from typing import Any

from evals.dataset import SPLITS, Question
from evals.markdown import format_number, format_p, format_rate, table
from evals.report_summary import FACT_GROUPS, SEEN, UNSEEN, Answer, RouteSummary, recorded_voice
from evals.stats import compare_paired
from evals.voice import RecordedVoice
from gateway.contract import AUTO, Route

EXAMPLES = 8
EXAMPLE_CHARS = 300
COLUMNS = (
    "route",
    "answers",
    *(f"facts: {group}" for group in FACT_GROUPS),
    "right document in sources",
    "cites a source",
    "cites the right document",
    "abstains: unanswerable",
    "abstains: answerable",
    "confidently wrong: held-out",
    "grounding: unsupported",
    "unsupported, wrong",
    "wrong, marked",
    "voice: all rules",
    "greeting",
    "sign-off",
    "format",
    "cut at max_tokens",
    "latency p50 ms",
    "latency p95 ms",
    "retrieve p50 ms",
    "prompt tokens, mean",
    "completion tokens, mean",
)
PAIRED_COLUMNS = ("A vs B", "questions", "both right", "only A", "only B", "A - B, points (95% CI)", "McNemar p")


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
        f"{by_split['train']} answerable train, "
        + (f"{by_split['dev']} answerable dev, " if by_split["dev"] else "")
        + f"{len(questions) - len(answerable)} unanswerable. "
        f"Gateway {config['gateway']}, temperature 0, max_tokens {config['max_tokens']}, "
        f"adapter {config['adapter'] or 'the default'}, collection {config['collection'] or 'the default'}"
        f"{sampling_label(config.get('sampling'))}.",
        "",
        "Each rate: how many of how many, the percentage and its 95% Wilson interval.",
        "",
        *table(COLUMNS, (_cells(s) for s in summaries)),
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
        "- **confidently wrong**: held-out answers that neither state the facts nor abstain (on an unanswerable "
        "question, any answer that does not abstain).",
        grounding_note(summaries),
        voice_note(recorded_voice(config)),
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


def voice_note(voice: RecordedVoice) -> str:
    """What the voice columns score: the rules and where they came from, or why they read n/a."""
    if voice.rules is None:
        return (
            f"- **voice**: n/a, no rules to score it on: {voice.origin}. `ragft eval --voice FILE` names a voice "
            "file (data/finetune/README.md describes one)."
        )
    rules = voice.rules
    return (
        f"- **voice**: the rules of {voice.origin}: greeting `{rules.greeting}` first, sign-off `{rules.sign_off}` "
        f"last, numbered steps (at most {rules.max_steps}) or one line of 1-{rules.max_sentences} sentences."
    )


def grounding_note(summaries: list[RouteSummary]) -> str:
    """What the grounding columns count, and why answers carry no verdict."""
    unjudged = [f"{s.route} ({why})" for s in summaries if (why := s.why_unjudged())]
    return (
        "- **grounding: unsupported**: answers the gateway's grounding check marked unsupported (a number, amount, "
        "time, code, quoted span, link or e-mail address in none of its sources, or a `[n]` pointing to no source), "
        "of the answers that carry its verdict (those that retrieved). **unsupported, wrong**: of the answerable "
        "questions' answers it marked, those that miss a required fact: its precision (target: at least 80%). "
        "**wrong, marked**: of the answerable questions' answers that miss a fact and do not abstain, those it "
        "marked: its recall (target: at least 60%). Answers without a verdict: "
        + ("; ".join(unjudged) or "none that retrieved")
        + "."
    )


def _cells(s: RouteSummary) -> list[str]:
    return [
        s.route,
        f"{len(s.answers)}/{s.asked}",
        *(format_rate(*s.facts(group)) for group in FACT_GROUPS),
        format_rate(*s.hit_rate()),
        format_rate(*s.citing("cites")),
        format_rate(*s.citing("cites_document")),
        format_rate(*s.abstention(answerable=False)),
        format_rate(*s.abstention(answerable=True)),
        format_rate(*s.confidently_wrong()),
        format_rate(*s.grounding()),
        format_rate(*s.unsupported_wrong()),
        format_rate(*s.wrong_marked()),
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
            *table(PAIRED_COLUMNS, (_paired_cells(a, b, counted, right) for a, b in pairs)),
            "",
        ]
    return lines


def _correct(answer: Answer) -> bool:
    return answer.score.correct


def _abstained(answer: Answer) -> bool:
    return answer.score.abstained


def _paired_cells(
    a: RouteSummary, b: RouteSummary, counted: Callable[[Answer], bool], right: Callable[[Answer], bool]
) -> list[str]:
    theirs = {answer.question.id: answer for answer in b.answers if counted(answer)}
    pairs = [(mine, theirs[mine.question.id]) for mine in a.answers if counted(mine) and mine.question.id in theirs]
    if not pairs:
        return [f"{a.route} vs {b.route}", "0", *["n/a"] * 5]
    c = compare_paired([right(mine) for mine, _ in pairs], [right(other) for _, other in pairs])
    points = f"{c.difference * 100:+.0f} ({c.low * 100:+.0f} to {c.high * 100:+.0f})"
    return [
        f"{a.route} vs {b.route}",
        str(c.n),
        str(c.both_right),
        str(c.only_a),
        str(c.only_b),
        points,
        format_p(c.p_value),
    ]


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
        *table(
            ("route", "facts: answerable", "abstains: unanswerable"),
            ([s.route, format_rate(*facts(s)), format_rate(*abstains(s))] for s in summaries),
        ),
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
