"""The eval set: one JSON object per line (data/kb_questions.jsonl describes the fields)."""

import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

SPLITS = ("heldout", "train")


class Question(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    split: Literal["heldout", "train"]
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
        for pattern in facts:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"fact {pattern!r} is not a regular expression: {exc}") from None
        return facts

    @model_validator(mode="after")
    def _facts_iff_answerable(self) -> "Question":
        if self.answerable != bool(self.facts):
            raise ValueError("an answerable question (doc_id set) needs facts; an unanswerable one (doc_id null) none")
        return self


class BadEvalSet(Exception):
    pass


def load_questions(path: Path, splits: Iterable[str] = SPLITS) -> list[Question]:
    """The questions of `splits`, in file order; BadEvalSet names the line of any bad entry."""
    wanted = set(splits)
    if unknown := wanted - set(SPLITS):
        raise BadEvalSet(f"unknown split(s) {', '.join(sorted(unknown))}; choose from {', '.join(SPLITS)}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BadEvalSet(f"cannot read the eval set {path}: {exc.strerror}") from None
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            question = Question.model_validate(json.loads(line))
        except (ValueError, ValidationError) as exc:
            raise BadEvalSet(f"{path}:{number}: {first_error(exc)}") from None
        if question.id in seen:
            raise BadEvalSet(f"{path}:{number}: the id {question.id!r} is used twice")
        seen.add(question.id)
        if question.split in wanted:
            questions.append(question)
    if not questions:
        raise BadEvalSet(f"{path} has no questions in the split(s) {', '.join(sorted(wanted))}")
    return questions


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
