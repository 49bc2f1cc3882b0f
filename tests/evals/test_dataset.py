"""The eval set: the file's own consistency (facts in the answer and in the document, held-out
questions worded apart from the fine-tuning set) and the loader's errors for a bad file."""

import json
import re
from pathlib import Path

import pytest

from evals.dataset import BadEvalSet, Question, in_run_order, load_questions
from evals.scoring import normalize, states_facts
from services.retrieval.loaders import load_document

REPO = Path(__file__).resolve().parents[2]
EVAL_SET = REPO / "data" / "kb_questions.jsonl"
WORD = re.compile(r"[a-z0-9]+")
# A term each unanswerable question turns on, which no article may contain.
UNANSWERABLE_KEYS = {
    "h101": r"smart ?watch|wear ?os|watchos",
    "h102": r"student|discount",
    "h103": r"\bfonts?\b|typeface",
    "h104": r"referr|affiliate",
    "h105": r"transcri|dictat|\bvoice\b",
    "h106": r"send later|schedul\w* (an? )?(email|send|note)",
    "h107": r"\btags?\b|tagging",
    "h108": r"handwrit|stylus|apple pencil",
    "h109": r"lifetime licen|one-time (purchase|payment)|perpetual",
    "h110": r"password manager|auto-?fill|1password|bitwarden",
    "h111": r"hipaa|business associate",
    "h112": r"\bsdks?\b|python|client librar",
    "h113": r"word count|number of words|how many words",
    "h114": r"screen reader|voiceover|nvda|accessibilit",
    "h115": r"right-to-left|\brtl\b|arabic|hebrew",
    "h116": r"resell|white[ -]label",
    "h117": r"\bgift",
    "h118": r"spell",
    "h119": r"terraform",
    "h120": r"eidas|qualified electronic",
}


def words(text: str) -> set[str]:
    return set(WORD.findall(text.lower()))


@pytest.fixture(scope="module")
def questions() -> list[Question]:
    return load_questions(EVAL_SET)


def test_the_eval_set_has_both_splits_and_unanswerable_questions(questions: list[Question]) -> None:
    heldout = [q for q in questions if q.split == "heldout"]
    assert len(questions) >= 100
    assert sum(q.answerable for q in heldout) >= 100
    assert sum(not q.answerable for q in heldout) >= 10
    assert sum(q.split == "train" for q in questions) >= 20


@pytest.fixture(scope="module")
def documents() -> dict[str, str]:
    """Each article's text as ingested, normalized as answers are."""
    kb = REPO / "data" / "kb"
    loaded = (load_document(path, kb) for path in kb.iterdir())
    return {doc.id: normalize(doc.text) for doc in loaded}


def test_every_fact_is_in_its_reference_answer_and_its_document(
    questions: list[Question], documents: dict[str, str]
) -> None:
    for q in questions:
        if q.answerable:
            assert q.doc_id in documents, q.id
            assert states_facts(q, q.answer or ""), q.id
            assert states_facts(q, documents[q.doc_id or ""]), q.id


def test_unanswerable_questions_are_not_answered_by_any_article(
    questions: list[Question], documents: dict[str, str]
) -> None:
    unanswerable = {q.id: q for q in questions if not q.answerable}
    assert set(unanswerable) == set(UNANSWERABLE_KEYS)
    for question_id, term in UNANSWERABLE_KEYS.items():
        assert re.search(term, normalize(unanswerable[question_id].question)), question_id
        assert not [doc for doc, text in documents.items() if re.search(term, text)], question_id


def test_no_answerable_question_is_scored_right_on_a_refusal(questions: list[Question]) -> None:
    refusal = "I don't have that information in the Quillbyte help center. Please write to support@quillbyte.app."
    assert [q.id for q in questions if q.answerable and states_facts(q, refusal)] == []


def test_held_out_questions_are_worded_apart_from_the_fine_tuning_set(questions: list[Question]) -> None:
    turns = [
        words(message["content"])
        for line in (REPO / "data" / "finetune" / "train.jsonl").read_text().splitlines()
        for message in json.loads(line)["messages"]
        if message["role"] == "user"
    ]
    for q in questions:
        if q.split == "heldout":
            mine = words(q.question)
            closest = max(len(mine & turn) / len(mine | turn) for turn in turns)
            assert closest < 0.6, q.id


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":1: not JSON"),
        ('{"id": "a", "split": "heldout", "question": "q", "doc_id": "d", "answer": "x", "facts": []}', "needs facts"),
        ('{"id": "a", "split": "heldout", "question": "q", "doc_id": "d", "answer": "x", "facts": ["("]}', "facts"),
        ('{"id": "a", "split": "dev", "question": "q", "doc_id": null, "answer": null, "facts": []}', "split"),
        ('{"id": "a", "question": "q", "doc_id": null, "answer": null, "facts": []}', "split: Field required"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(BadEvalSet, match=re.escape(message)):
        load_questions(path)


def test_duplicate_ids_unknown_splits_and_missing_files_are_refused(tmp_path: Path) -> None:
    line = '{"id": "a", "split": "heldout", "question": "q", "doc_id": null, "answer": null, "facts": []}'
    path = tmp_path / "eval.jsonl"
    path.write_text(f"{line}\n{line}\n")
    with pytest.raises(BadEvalSet, match=r"eval.jsonl:2: the id 'a' is used twice"):
        load_questions(path)
    path.write_text(f"{line}\n")
    with pytest.raises(BadEvalSet, match="unknown split"):
        load_questions(path, ["dev"])
    with pytest.raises(BadEvalSet, match="no questions in the split"):
        load_questions(path, ["train"])
    with pytest.raises(BadEvalSet, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


def test_the_run_order_is_a_fixed_shuffle_whose_start_covers_every_kind(questions: list[Question]) -> None:
    ordered = in_run_order(questions)
    assert ordered == in_run_order(questions) and sorted(q.id for q in ordered) == sorted(q.id for q in questions)
    assert ordered != questions
    first = ordered[:40]
    assert {q.split for q in first} == {"heldout", "train"} and any(not q.answerable for q in first)
