"""The evidence-coverage threshold chosen on the dev split and applied to the held-out one, from
recorded answers; and the dev split kept apart from the held-out one."""

import json
from pathlib import Path
from typing import Any

import pytest

from evals.calibrate import choose, report
from evals.dataset import BadEvalSet, load_questions
from evals.report_summary import summarize
from evals.run import EvalConfig

DONT_KNOW = "I don't have that information."
QUESTIONS: list[dict[str, Any]] = [
    *({"id": f"d{i}", "split": "dev", "question": f"What is the limit of plan {i}?", "doc_id": "limits",
       "answer": "10 GB", "facts": [r"\b10 ?gb"]} for i in range(10)),
    *({"id": f"n{i}", "split": "dev", "question": f"What is the limit of the Premium plan {i}?", "doc_id": None,
       "answer": None, "facts": []} for i in range(4)),
    {"id": "h1", "split": "heldout", "question": "How big can an upload be?", "doc_id": "limits", "answer": "10 GB",
     "facts": [r"\b10 ?gb"]},
    {"id": "h2", "split": "heldout", "question": "Is there a Gold tier?", "doc_id": None, "answer": None, "facts": []},
]  # fmt: skip


def run(tmp_path: Path, name: str, answers: dict[str, tuple[str, float]]) -> Path:
    """A recorded rag run: each question's answer and the evidence coverage the gateway recorded."""
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / name
    out.mkdir()
    EvalConfig("http://127.0.0.1:1", str(data), ("rag",), max_tokens=64).check_resumable(out)
    wording = {q["id"]: q["question"] for q in QUESTIONS}
    records = [
        {"id": i, "route": "rag", "question": wording[i], "status": "ok", "model": "base", "answer": answer,
         "finish_reason": "stop", "sources": ["limits"], "latency_ms": 1.0, "timing": {}, "prompt_tokens": 9,
         "completion_tokens": 9, "grounding": {"supported": True, "evidence_coverage": coverage}}
        for i, (answer, coverage) in answers.items()
    ]  # fmt: skip
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def test_the_highest_threshold_that_refuses_at_most_a_tenth_of_the_answerable_dev_questions(tmp_path: Path) -> None:
    answerable = {f"d{i}": ("It is 10 GB.", 0.5 + i / 20) for i in range(10)}  # coverage 0.50 to 0.95
    near_misses = {f"n{i}": ("It is 10 GB.", 0.4 + i / 10) for i in range(4)}  # 0.4 to 0.7
    dev = run(tmp_path, "dev", answerable | near_misses)
    _, _, summaries = summarize(dev)
    assert choose(summaries) == 0.55  # withholds d0 (0.50) only: 1 of 10
    heldout = run(tmp_path, "heldout", {"h1": ("It is 10 GB.", 0.9), "h2": ("Gold costs €5.", 0.3)})
    lines = report(dev, heldout).splitlines()
    assert lines[0] == "# RAGFT_MIN_EVIDENCE_COVERAGE chosen on dev: 0.550"
    assert "| rag | 0.550 | 2/4 (50%, 15-85%) | 1/10 (10%, 2-40%) | 2/14 (14%, 4-40%) |" in lines
    assert "| rag | 0.000 | 0/1 (0%, 0-79%) | 0/1 (0%, 0-79%) | 1/2 (50%, 9-91%) |" in lines  # held-out, before
    assert "| rag | 0.550 | 1/1 (100%, 21-100%) | 0/1 (0%, 0-79%) | 0/2 (0%, 0-66%) |" in lines  # and after


def test_the_models_own_abstentions_are_withheld_whatever_the_threshold_and_do_not_use_up_its_allowance(
    tmp_path: Path,
) -> None:
    answers = {f"d{i}": (DONT_KNOW, 0.3) for i in range(2)}  # refused by the model itself
    answers |= {f"d{i}": ("It is 10 GB.", 0.5 + i / 20) for i in range(2, 10)}  # coverage 0.60 to 0.95
    _, _, summaries = summarize(run(tmp_path, "dev", answers | {"n0": ("It is 10 GB.", 0.4)}))
    assert choose(summaries) == 0.65  # withholds d2 (0.60) beside the model's own 2: one more of 10


def test_a_dev_question_worded_like_a_held_out_one_is_refused_naming_both(tmp_path: Path) -> None:
    data = tmp_path / "eval.jsonl"
    close = {**QUESTIONS[-2], "id": "d99", "split": "dev", "question": "How big can an upload be, roughly?"}
    data.write_text("".join(json.dumps(q) + "\n" for q in [*QUESTIONS, close]))
    with pytest.raises(BadEvalSet, match=r"dev question d99 .* held-out question h1 .*Jaccard 0\.86"):
        load_questions(data, ["heldout"])
