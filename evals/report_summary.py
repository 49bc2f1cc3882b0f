"""A recorded eval run's answers, scored and gathered per route: what the eval report counts of
each route (facts, retrieval, citations, abstention, the grounding check, voice, latency, tokens)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from pydantic import ValidationError

from evals.dataset import Question, first_error, load_questions
from evals.run import EvalFailed, read_config, read_results
from evals.scoring import Score, score
from evals.stats import percentile
from evals.voice import SAMPLE_VOICE, RecordedVoice, sample_rules
from gateway.contract import Route
from ragft.settings import REPO


@dataclass(frozen=True)
class Answer:
    question: Question
    route: str
    record: dict[str, Any]
    score: Score
    unseen: bool  # its question is about a document no fine-tuning example is about

    @property
    def unsupported(self) -> bool | None:
        """The gateway's grounding check: True where it marked the answer unsupported by its
        sources; None where the answer carries no verdict (it did not retrieve, or was recorded
        before the gateway checked)."""
        verdict = self.record.get("grounding")
        return None if verdict is None else not verdict["supported"]


def retrieves(record: dict[str, Any], route: str) -> bool:
    """Whether a recorded answer was given from passages: on auto, as it chose."""
    return bool(record.get("answered_as", route) != Route.FINETUNED)


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

    def confidently_wrong(self) -> Count:
        """Held-out answers that neither state the facts nor abstain (an unanswerable question
        answered is one): the error a support bot must not make."""
        heldout = [a for a in self.answers if a.question.split == "heldout"]
        return _count([not (a.score.correct or a.score.abstained) for a in heldout])

    def _judged(self) -> list[Answer]:
        return [a for a in self.answers if a.unsupported is not None]

    def grounding(self) -> Count:
        """Answers the grounding check marked unsupported, of those that carry its verdict."""
        return _count([a.unsupported is True for a in self._judged()])

    def unsupported_wrong(self) -> Count:
        """Of the answerable questions' answers marked unsupported, those wrong by the facts: the
        check's precision."""
        return _count([not a.score.correct for a in self._judged() if a.question.answerable and a.unsupported])

    def wrong_marked(self) -> Count:
        """Of the answerable questions' answers wrong by the facts, abstentions aside, those
        marked unsupported: the check's recall."""
        wrong = [a for a in self._judged() if a.question.answerable and not a.score.correct and not a.score.abstained]
        return _count([a.unsupported is True for a in wrong])

    def why_unjudged(self) -> str | None:
        """Why answers of this route carry no grounding verdict; None where every one that retrieved does."""
        retrieving = [a for a in self.answers if retrieves(a.record, self.route)]
        if not retrieving:
            return "no answer retrieved"
        unjudged = [a for a in retrieving if a.unsupported is None]
        if not unjudged:
            return None
        before = sum("grounding" not in a.record for a in unjudged)
        older = "all" if before == len(unjudged) else str(before)
        return f"{len(unjudged)} of {len(retrieving)} answers that retrieved carry none" + (
            f", {older} recorded before the gateway checked grounding" if before else ""
        )

    def voice(self, rule: str) -> Count:
        """Answers that follow `rule` of the voice, of those scored on one (none: n/a)."""
        return _count([getattr(a.score.voice, rule) for a in self.answers if a.score.voice is not None])

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


def recorded_voice(config: dict[str, Any]) -> RecordedVoice:
    """The voice rules a run recorded, or why it has none. Runs recorded before voice rules were
    data were all scored on the sample's, which they are again."""
    if "voice" not in config:
        origin = f"{SAMPLE_VOICE.relative_to(REPO)} (the sample's: runs recorded before voice rules were data used it)"
        return RecordedVoice(rules=sample_rules(), origin=origin)
    if config["voice"] is None:
        return RecordedVoice(rules=None, origin="this run recorded no voice rules")
    try:
        return RecordedVoice.model_validate(config["voice"])
    except ValidationError as exc:
        raise EvalFailed(f"the voice in the run's settings is damaged ({first_error(exc)}): not a run folder") from None


def summarize(out_dir: Path) -> tuple[dict[str, Any], list[Question], list[RouteSummary]]:
    config = read_config(out_dir)
    rules = recorded_voice(config).rules
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
                sources = record["sources"] if retrieves(record, route) else None
                scored = score(question, record["answer"], sources, rules)
                answers.append(Answer(question, route, record, scored, unseen=question.doc_id in unseen))
        summaries.append(RouteSummary(route, sum(1 for q in questions if (q.id, route) in records), answers))
    return config, questions, summaries
