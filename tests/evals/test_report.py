"""The report from recorded answers: every cell of the table computed from fixed answers, the
disagreements, the chart, and a failed request reported as such."""

import json
from pathlib import Path
from typing import Any

import pytest

from evals.report import build_report
from evals.run import EvalConfig
from evals.scoring import GREETING, SIGN_OFF

QUESTIONS: list[dict[str, Any]] = [
    {"id": "h1", "split": "heldout", "question": "How long is the link valid?", "doc_id": "signup",
     "answer": "24 hours", "facts": [r"24[ -]?(hours?|h\b)"]},
    {"id": "t1", "split": "train", "question": "What does Business cost?", "doc_id": "prices",
     "answer": "€17", "facts": [r"€ ?17\b"]},
    {"id": "h2", "split": "heldout", "question": "Is there a watch app?", "doc_id": None, "answer": None, "facts": []},
]  # fmt: skip
WORDING = {q["id"]: q["question"] for q in QUESTIONS}


def record(question: str, route: str, answer: str, sources: list[str], latency: float, **extra: Any) -> dict:
    retrieve = 0.0 if route == "finetuned" else 20.0
    return {
        "id": question, "route": route, "question": WORDING[question], "status": "ok",
        "model": "voice" if route == "finetuned" else "base", "answer": answer, "finish_reason": "stop",
        "sources": sources, "latency_ms": latency, "timing": {"retrieve": retrieve, "generate": latency - retrieve},
        "prompt_tokens": 900 if route != "finetuned" else 40, "completion_tokens": 30, **extra,
    }  # fmt: skip


def voiced(body: str) -> str:
    return f"{GREETING}\n{body}\n{SIGN_OFF}"


def new_run(tmp_path: Path, routes: tuple[str, ...], records: list[dict[str, Any]]) -> Path:
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / "run"
    out.mkdir()
    EvalConfig(gateway="http://127.0.0.1:1", data=str(data), routes=routes, max_tokens=64).check_resumable(out)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    records = [
        record("h1", "rag", "The link is valid for 24 hours [1].", ["signup", "other"], 1000),
        record("t1", "rag", "It costs €17 per user.", ["other"], 2000),
        record("h2", "rag", "The sources do not mention a watch app.", ["other"], 3000),
        record("h1", "finetuned", voiced("The link expires after 48 hours."), [], 500),
        record("t1", "finetuned", voiced("Business is €17 per user per month."), [], 600),
        {"id": "h2", "route": "finetuned", "question": WORDING["h2"], "status": "error", "error": "HTTP 504: deadline"},
    ]
    out = new_run(tmp_path, ("rag", "finetuned"), records)
    with (out / "results.jsonl").open("a") as results:
        results.write('{"id": "cut sh')
    return out


def row(report: str, route: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {route} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_every_cell_comes_from_the_recorded_answers(run_dir: Path) -> None:
    report_path, chart = build_report(run_dir)
    report = report_path.read_text()
    # answers, facts held-out, facts train, right document, abstains unanswerable, abstains answerable,
    # voice all, greeting, sign-off, format, cut, p50, p95, retrieve p50, prompt tokens, completion tokens
    assert row(report, "rag") == [
        "rag", "3/3", "100%", "100%", "50%", "100%", "0%", "0%", "0%", "0%", "100%", "0%",
        "2,000", "2,900", "20", "900", "30",
    ]  # fmt: skip
    assert row(report, "finetuned") == [
        "finetuned", "2/3", "0%", "100%", "n/a", "n/a", "0%", "100%", "100%", "100%", "100%", "0%",
        "550", "595", "n/a", "40", "30",
    ]  # fmt: skip
    assert "Requests that failed (rerun the same command to retry them): finetuned 1." in report
    # h1: rag right, finetuned wrong; t1 both right; h2 has no finetuned answer to compare.
    assert "## Where the routes disagree (1 of 3 questions)" in report
    assert "**h1** (heldout) How long is the link valid? — expected: 24 hours" in report
    assert "- finetuned ✗: Hi there, thanks for reaching out to Quillbyte Support! ⏎ The link expires" in report
    assert "Models that answered: rag: base; finetuned: voice." in report
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_auto_is_set_against_the_best_fixed_route_and_scored_on_what_it_chose(tmp_path: Path) -> None:
    records = [
        record("h1", "rag", "The link is valid for 24 hours.", ["signup"], 1000),
        record("t1", "rag", "It costs €17 per user.", ["prices"], 1000),
        record("h2", "rag", "Yes, there is a watch app.", ["other"], 1000),
        record("h1", "finetuned", voiced("The link expires after 48 hours."), [], 500),
        record("t1", "finetuned", voiced("It is €17."), [], 500),
        record("h2", "finetuned", voiced("I don't have that information."), [], 500),
        record("h1", "auto", "The link is valid for 24 hours.", ["signup"], 1000, answered_as="rag"),
        record("t1", "auto", voiced("It is €19."), [], 500, answered_as="finetuned"),
        record("h2", "auto", voiced("I don't have that information."), [], 500, answered_as="finetuned"),
    ]
    report = build_report(new_run(tmp_path, ("rag", "finetuned", "auto"), records))[0].read_text()
    assert "auto chose, on answerable questions: finetuned 1, rag 1; on unanswerable ones: finetuned 1." in report
    assert "| rag | 2/2 (100%) | 0/1 (0%) |" in report
    assert "| auto | 1/2 (50%) | 1/1 (100%) |" in report
    assert "- Answerable: auto -50.0 points against rag, the best fixed route (more than the 2 points" in report
    assert "- Unanswerable: auto says it does not know more often than rag (1 against 0)." in report
    # auto's right document counts only where it retrieved: h1, found.
    assert row(report, "auto")[4] == "100%"
