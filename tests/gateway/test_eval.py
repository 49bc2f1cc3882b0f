"""`ragft eval` end to end: a handful of questions from the real eval set through the session's
real gateway, retrieval service and vLLM, then a resume that asks nothing again."""

import json
import os
from pathlib import Path

from evals.dataset import load_questions
from evals.voice import sample_rules
from ragft.sample_data import EVAL_SET
from tests.utils.processes import Processes

GREETING = sample_rules().greeting  # the test adapter's voice, trained from data/finetune/
CHOSEN = ("h001", "h101")  # one answerable, one the knowledge base does not cover


def test_a_short_eval_scores_every_route_and_resumes(processes: Processes, gateway_url: str, tmp_path: Path) -> None:
    questions = {q.id: q for q in load_questions(EVAL_SET)}
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(questions[i].model_dump_json() + "\n" for i in CHOSEN))
    out = tmp_path / "run"
    sampling = '{"stop": ["\\n\\n"]}'  # reaches vLLM: no answer holds a blank line
    # Two at a time: an uncached grounded prompt on the adapter took ~30 s on a 2-core AVX2 CPU in
    # float32 (before ragft's CPU LoRA ops), so eight at once overran the gateway's 120 s deadline.
    command = ("eval", "--data", str(data), "--gateway", gateway_url, "--out", str(out), "--max-tokens", "48",
               "--sampling", sampling, "--concurrency", "2")  # fmt: skip

    first = processes.run(*command, env=dict(os.environ), timeout=1200)
    assert first.returncode == 0, first.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["route"]) for r in records) == sorted(
        (i, route) for i in CHOSEN for route in ("rag", "finetuned", "hybrid")
    )
    assert all(r["status"] == "ok" and r["answer"] and r["completion_tokens"] for r in records)
    assert not any("\n\n" in r["answer"] for r in records)
    by_key = {(r["id"], r["route"]): r for r in records}
    assert questions["h001"].doc_id in by_key["h001", "rag"]["sources"]
    assert by_key["h001", "finetuned"]["sources"] == [] and by_key["h001", "finetuned"]["timing"]["retrieve"] == 0
    assert by_key["h001", "finetuned"]["answer"].startswith(GREETING)
    assert by_key["h001", "rag"]["prompt_tokens"] > 4 * by_key["h001", "finetuned"]["prompt_tokens"]

    report = (out / "report.md").read_text()
    assert f"sampling `{sampling}`" in report
    for route in ("rag", "finetuned", "hybrid"):
        assert f"| {route} | 2/2 |" in report
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG")

    again = processes.run(*command, env=dict(os.environ), timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "6 answers recorded, 0 to ask" in again.stderr
    assert len((out / "results.jsonl").read_text().splitlines()) == len(records)
