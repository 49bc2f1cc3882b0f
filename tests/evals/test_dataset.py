"""The eval set: the file's own consistency (facts in the answer and in the document, held-out
questions worded apart from the fine-tuning set) and the loader's errors for a bad file."""

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from evals.dataset import BadEvalSet, Question, in_run_order, load_questions, load_unseen_docs
from evals.scoring import normalize, states_facts
from ragft.settings import REPO
from services.retrieval.loaders import load_document
from training.grounded import Example, check_held_out, read_examples, refusal
from training.lora import load_conversations


@dataclass(frozen=True)
class EvalData:
    """A knowledge base with its eval set and fine-tuning set, and what each must hold."""

    folder: Path  # holds kb/ and the unseen-documents file
    eval_set: Path
    finetune_set: Path
    # A term each unanswerable question turns on, which no article may contain.
    unanswerable_keys: dict[str, str]
    # At least this many: questions, answerable held-out ones, unanswerable ones, train ones.
    counts: tuple[int, int, int, int]
    unseen_docs: int  # exactly this many

    @property
    def kb(self) -> Path:
        return self.folder / "kb"


QUILLBYTE = EvalData(
    folder=REPO / "data",
    eval_set=REPO / "data" / "kb_questions.jsonl",
    finetune_set=REPO / "data" / "finetune" / "train.jsonl",
    unanswerable_keys={
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
        # The dev split's near misses: a plan, an error code, a platform or a value it does not have.
        "d021": r"premium",
        "d022": r"starter",
        "d023": r"\bpro\b",
        "d024": r"growth",
        "d025": r"essentials",
        "d026": r"qb-1160",
        "d027": r"qb-2090",
        "d028": r"qb-4091",
        "d029": r"qb-7350",
        "d030": r"qb-3012",
        "d031": r"chromebook|chrome ?os",
        "d032": r"snapdragon",
        "d033": r"flatpak|\bsnap\b",
        "d034": r"huawei|harmonyos",
        "d035": r"\bslack\b",
        "d036": r"\buk\b|united kingdom",
        "d037": r"shortest",
        "d038": r"payload size|size of a webhook",
        "d039": r"how many oauth",
        "d040": r"authenticator apps",
    },
    counts=(100, 100, 10, 20),
    unseen_docs=8,
)
# The second knowledge base (data/veloway/README.md), on which the own-data path is tried.
VELOWAY = EvalData(
    folder=REPO / "data" / "veloway",
    eval_set=REPO / "data" / "veloway" / "questions.jsonl",
    finetune_set=REPO / "data" / "veloway" / "finetune" / "train.jsonl",
    unanswerable_keys={
        "h031": r"\btrams?\b",
        "h032": r"student|discount",
        "h033": r"cargo",
        "h034": r"child|\bkids?\b",
        "h035": r"airport",
        "h036": r"reserv",
        "h037": r"smart ?watch|wearable",
        "h038": r"corporate|employ",
    },
    counts=(48, 30, 8, 10),
    unseen_docs=2,
)


@pytest.fixture(scope="module", params=[QUILLBYTE, VELOWAY], ids=["quillbyte", "veloway"])
def eval_data(request: pytest.FixtureRequest) -> EvalData:
    data: EvalData = request.param
    return data


@pytest.fixture(scope="module")
def questions(eval_data: EvalData) -> list[Question]:
    return load_questions(eval_data.eval_set)


@pytest.fixture(scope="module")
def examples(eval_data: EvalData) -> list[Example]:
    return read_examples(eval_data.finetune_set, load_conversations(eval_data.finetune_set))


def test_the_eval_set_has_both_splits_and_unanswerable_questions(
    eval_data: EvalData, questions: list[Question]
) -> None:
    heldout = [q for q in questions if q.split == "heldout"]
    total, answerable, unanswerable, train = eval_data.counts
    assert len(questions) >= total
    assert sum(q.answerable for q in heldout) >= answerable
    assert sum(not q.answerable for q in heldout) >= unanswerable
    assert sum(q.split == "train" for q in questions) >= train


@pytest.fixture(scope="module")
def documents(eval_data: EvalData) -> dict[str, str]:
    """Each article's text as ingested, normalized as answers are."""
    loaded = (load_document(path, eval_data.kb) for path in eval_data.kb.iterdir())
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
    eval_data: EvalData, questions: list[Question], documents: dict[str, str]
) -> None:
    unanswerable = {q.id: q for q in questions if not q.answerable}
    assert set(unanswerable) == set(eval_data.unanswerable_keys)
    for question_id, term in eval_data.unanswerable_keys.items():
        assert re.search(term, normalize(unanswerable[question_id].question)), question_id
        assert not [doc for doc, text in documents.items() if re.search(term, text)], question_id


def test_no_answerable_question_is_scored_right_on_the_datas_refusal(
    questions: list[Question], examples: list[Example]
) -> None:
    """The refusal the fine-tuning set teaches, the grounded examples' answer without their document."""
    answer = refusal(examples)
    assert [q.id for q in questions if q.answerable and states_facts(q, answer)] == []


def test_the_fine_tuning_set_keeps_clear_of_what_the_eval_holds_out(
    eval_data: EvalData, questions: list[Question], examples: list[Example]
) -> None:
    """No training question worded like a held-out one, none about an unseen document, and
    every single-turn in-scope example names the document it draws on."""
    check_held_out(examples, questions, load_unseen_docs(eval_data.folder / "unseen_docs.txt"))
    documents = {path.stem for path in eval_data.kb.iterdir()}
    assert {e.doc_id for e in examples if e.doc_id} <= documents
    in_scope = [e for e in examples if e.single_turn and "don't have that information" not in e.answer]
    assert in_scope and all(e.doc_id for e in in_scope)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":1: not JSON"),
        ('{"id": "a", "split": "heldout", "question": "q", "doc_id": "d", "answer": "x", "facts": []}', "needs facts"),
        ('{"id": "a", "split": "heldout", "question": "q", "doc_id": "d", "answer": "x", "facts": ["("]}', "facts"),
        ('{"id": "a", "split": "test", "question": "q", "doc_id": null, "answer": null, "facts": []}', "split"),
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
        load_questions(path, ["test"])
    with pytest.raises(BadEvalSet, match="no questions in the split"):
        load_questions(path, ["train"])
    with pytest.raises(BadEvalSet, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl")


def test_the_run_order_is_a_fixed_shuffle_whose_start_covers_every_kind(questions: list[Question]) -> None:
    ordered = in_run_order(questions)
    assert ordered == in_run_order(questions) and sorted(q.id for q in ordered) == sorted(q.id for q in questions)
    assert ordered != questions
    first = ordered[:40]
    assert {q.split for q in first} == {q.split for q in questions} and any(not q.answerable for q in first)


def test_every_unseen_document_has_held_out_questions_and_no_train_ones(
    eval_data: EvalData, questions: list[Question]
) -> None:
    """A typo in the unseen-documents file would leave its column short; a train question (a
    fact fine-tuning teaches) about an unseen document would contradict it."""
    unseen = load_unseen_docs(eval_data.folder / "unseen_docs.txt")
    assert len(unseen) == eval_data.unseen_docs
    for doc_id in unseen:
        assert any(eval_data.kb.glob(f"{doc_id}.*")), doc_id
        splits = {q.split for q in questions if q.doc_id == doc_id}
        assert "heldout" in splits and "train" not in splits, doc_id


def test_unseen_documents_skip_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "unseen.txt"
    path.write_text("# documents fine-tuning never saw\n\ndata-export\n  offline-mode  \n")
    assert load_unseen_docs(path) == {"data-export", "offline-mode"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("data-export\ndata-export offline-mode\n", r":2: 'data-export offline-mode' is not one document id"),
        ("# header\ndata-export\n\ndata-export\n", r":4: 'data-export' is listed twice"),
    ],
)
def test_a_bad_unseen_documents_file_names_its_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "unseen.txt"
    path.write_text(text)
    with pytest.raises(BadEvalSet, match=error):
        load_unseen_docs(path)


def test_a_missing_unseen_documents_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BadEvalSet, match="cannot read the unseen documents"):
        load_unseen_docs(tmp_path / "missing.txt")
