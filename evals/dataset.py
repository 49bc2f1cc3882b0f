"""The eval set: one JSON object per line (data/kb_questions.jsonl describes the fields)."""

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ragft.errors import UserFacingError

# dev: questions to choose thresholds on, never to report; asked only when named (`--split dev`).
SPLITS = ("heldout", "train", "dev")
# Questions are worded apart, a token Jaccard below this: each held-out question from every
# training question (training.grounded), and each dev question from every held-out one.
MAX_JACCARD = 0.6


class Entry(BaseModel):
    """One line of a JSONL data file: the eval set, the freshness set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str


class Question(Entry):
    split: Literal["heldout", "train", "dev"]
    question: str
    doc_id: str | None
    answer: str | None
    # Regular expressions a correct answer must all contain (see evals.scoring.normalize).
    facts: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        return self.doc_id is not None

    @field_validator("facts")
    @classmethod
    def _compiles(cls, facts: tuple[str, ...]) -> tuple[str, ...]:
        return compiled(facts)

    @model_validator(mode="after")
    def _facts_iff_answerable(self) -> "Question":
        if self.answerable != bool(self.facts):
            raise ValueError("an answerable question (doc_id set) needs facts; an unanswerable one (doc_id null) none")
        return self


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def check_dev(questions: list[Question]) -> None:
    """Refuses a dev question worded like a held-out one, naming both."""
    held_out = [(q, words(q.question)) for q in questions if q.split == "heldout"]
    for dev in (q for q in questions if q.split == "dev"):
        mine = words(dev.question)
        for question, theirs in held_out:
            if (similarity := jaccard(mine, theirs)) >= MAX_JACCARD:
                raise BadEvalSet(
                    f"dev question {dev.id} ({dev.question!r}) is worded like the held-out question {question.id} "
                    f"({question.question!r}): token Jaccard {similarity:.2f}, the limit is below {MAX_JACCARD}"
                )


def compiled(facts: tuple[str, ...]) -> tuple[str, ...]:
    """The fact patterns, each checked to be a regular expression."""
    for pattern in facts:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"fact {pattern!r} is not a regular expression: {exc}") from None
    return facts


class BadEvalSet(UserFacingError):
    pass


Record = TypeVar("Record", bound="Entry")


def load_questions(path: Path, splits: Iterable[str] = SPLITS) -> list[Question]:
    """The questions of `splits`, in file order; BadEvalSet names the line of any bad entry."""
    wanted = set(splits)
    if unknown := wanted - set(SPLITS):
        raise BadEvalSet(f"unknown split(s) {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    every = read_records(path, Question, "the eval set")
    check_dev(every)
    questions = [question for question in every if question.split in wanted]
    if not questions:
        raise BadEvalSet(f"{path} has no questions in the split(s) {', '.join(sorted(wanted))}")
    return questions


def read_records(path: Path, model: type[Record], what: str) -> list[Record]:
    """Every line of a JSONL file as `model`, in file order, each with its own `id`; BadEvalSet
    names the line of a bad one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadEvalSet(f"cannot read {what} {path}: {exc.strerror}") from None
    records: list[Record] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = model.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise BadEvalSet(f"{path}:{number}: {first_error(exc)}") from None
        if record.id in seen:
            raise BadEvalSet(f"{path}:{number}: the id {record.id!r} is used twice")
        seen.add(record.id)
        records.append(record)
    return records


def load_unseen_docs(path: Path) -> frozenset[str]:
    """The document ids of an unseen-documents file (data/unseen_docs.txt): one a line, blank
    lines and `#` comments skipped; BadEvalSet names the line of one that is not a single id or
    is listed twice."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadEvalSet(f"cannot read the unseen documents {path}: {exc.strerror}") from None
    ids: set[str] = set()
    for number, line in enumerate(lines, 1):
        doc_id = line.strip()
        if not doc_id or doc_id.startswith("#"):
            continue
        if len(doc_id.split()) > 1:
            raise BadEvalSet(f"{path}:{number}: {doc_id!r} is not one document id (one id a line)")
        if doc_id in ids:
            raise BadEvalSet(f"{path}:{number}: {doc_id!r} is listed twice")
        ids.add(doc_id)
    return frozenset(ids)


def in_run_order(questions: list[Question], seed: int = 0) -> list[Question]:
    """A fixed shuffle, so the first N questions (a run stopped early, or --limit N) are a fair
    sample of the set: held-out, train and unanswerable ones in proportion."""
    ordered = list(questions)
    random.Random(seed).shuffle(ordered)
    return ordered


def first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else str(error["msg"])
    return f"not JSON: {exc}"
