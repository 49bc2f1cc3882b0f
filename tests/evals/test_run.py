"""The runner against the stand-in gateway (tests/loadtests/fake_gateway.py) for what the real
stack cannot be made to do on cue: fail every other request, or every request. The real stack's
run is in tests/gateway/test_eval.py."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evals.dataset import Question
from evals.run import EvalConfig, EvalFailed, read_results, run_eval
from ragft.http import NotLoopback
from ragft.process import free_port
from ragft_cli import app
from tests.loadtests.fake_gateway import start_fake_gateway

QUESTIONS = [
    Question(id=f"q{n}", split="heldout", question=f"Question {n}?", doc_id=None, answer=None, facts=())
    for n in range(1, 5)
]


def quiet(_: str) -> None:
    pass


def config(gateway: str, **options: object) -> EvalConfig:
    settings: dict = {"data": "/eval.jsonl", "routes": ("rag", "finetuned"), "max_tokens": 8, **options}
    return EvalConfig(gateway=gateway, **settings)


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_failed_requests_are_recorded_and_only_they_are_asked_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_fake_gateway(FAKE_GATEWAY_FAIL_EVERY="2") as url:
        assert run_eval(config(url), QUESTIONS, out, say=quiet) == 4  # every second request of 8
        recorded = lines(out)
        assert [(r["id"], r["route"], r["status"]) for r in recorded[:2]] == [
            ("q1", "rag", "ok"),
            ("q1", "finetuned", "error"),
        ]
        assert "HTTP 503" in recorded[1]["error"]
        second = run_eval(config(url), QUESTIONS, out, say=quiet)
    assert len(lines(out)) == 8 + 4  # the four failures asked again, nothing else
    assert second == 2
    results = read_results(out, QUESTIONS)
    assert len(results) == 8 and sum(r["status"] == "ok" for r in results.values()) == 6
    ok = results["q1", "rag"]
    assert ok["answer"].startswith("ok") and ok["completion_tokens"] == 8 and ok["timing"]["retrieve"] > 0
    assert ok["model"] == "fake" and ok["question"] == "Question 1?"
    # The grounding check's verdict, as the gateway sent it; none on the route that does not retrieve.
    assert ok["grounding"] == {"supported": True, "unsupported": [], "unknown_citations": []}
    finetuned = [r for (_, route), r in results.items() if route == "finetuned" and r["status"] == "ok"]
    assert finetuned and all(r["grounding"] is None for r in finetuned)


def test_concurrent_requests_are_all_recorded_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_fake_gateway(FAKE_GATEWAY_TOKEN_S="0.05") as url:
        assert (
            run_eval(config(url, routes=("rag", "finetuned", "hybrid")), QUESTIONS, out, concurrency=5, say=quiet) == 0
        )
    keys = [(r["id"], r["route"]) for r in lines(out)]
    assert sorted(keys) == sorted((q.id, route) for q in QUESTIONS for route in ("rag", "finetuned", "hybrid"))


def test_a_run_stops_when_requests_keep_failing_and_keeps_what_it_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_fake_gateway(FAKE_GATEWAY_FAIL_EVERY="1") as url, pytest.raises(EvalFailed, match="5 requests in a row"):
        run_eval(config(url), QUESTIONS, out, say=quiet)
    assert len(lines(out)) == 5


def test_a_line_cut_short_by_a_crash_is_asked_again_and_the_file_stays_readable(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_fake_gateway() as url:
        run_eval(config(url), QUESTIONS[:1], out, say=quiet)
        whole = (out / "results.jsonl").read_text().splitlines()
        (out / "results.jsonl").write_text(whole[0] + "\n" + whole[1][:25])  # killed while writing the second
        said: list[str] = []
        run_eval(config(url), QUESTIONS[:1], out, say=said.append)
    assert said == [f"Resuming {out}: 1 answers recorded, 1 to ask"]
    assert set(read_results(out, QUESTIONS)) == {("q1", "rag"), ("q1", "finetuned")}
    assert len((out / "results.jsonl").read_text().splitlines()) == 3  # the cut line stays, alone


def test_an_edited_question_is_asked_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    edited = [QUESTIONS[0].model_copy(update={"question": "Question one, reworded?"})]
    with start_fake_gateway() as url:
        run_eval(config(url), QUESTIONS[:1], out, say=quiet)
        run_eval(config(url), edited, out, say=quiet)
    assert [r["question"] for r in read_results(out, edited).values()] == ["Question one, reworded?"] * 2


def test_resuming_with_other_settings_is_refused_and_more_routes_are_a_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with start_fake_gateway() as url:
        assert run_eval(config(url), QUESTIONS[:1], out, say=quiet) == 0
        with pytest.raises(EvalFailed, match="max_tokens differ"):
            run_eval(config(url, max_tokens=16), QUESTIONS[:1], out, say=quiet)
        said: list[str] = []
        run_eval(config(url, routes=("hybrid", "rag")), QUESTIONS[:1], out, say=said.append)
    assert said == [f"Resuming {out}: 2 answers recorded, 1 to ask"]
    assert json.loads((out / "run.json").read_text())["routes"] == ["rag", "finetuned", "hybrid"]
    assert [r["route"] for r in lines(out)] == ["rag", "finetuned", "hybrid"]


def test_other_unseen_documents_are_a_resume_and_the_latest_are_recorded(tmp_path: Path) -> None:
    """They change how the report splits the facts, not the answers."""
    config("http://127.0.0.1:1", unseen_docs=("data-export",)).check_resumable(tmp_path)
    config("http://127.0.0.1:1", unseen_docs=("data-export", "offline-mode")).check_resumable(tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["unseen_docs"] == ["data-export", "offline-mode"]
    with pytest.raises(EvalFailed, match="max_tokens differ"):
        config("http://127.0.0.1:1", max_tokens=16, unseen_docs=("data-export",)).check_resumable(tmp_path)


def test_other_sampling_is_refused_and_a_run_recorded_before_sampling_sent_none(tmp_path: Path) -> None:
    config("http://127.0.0.1:1").check_resumable(tmp_path)
    recorded = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({k: v for k, v in recorded.items() if k != "sampling"}))
    config("http://127.0.0.1:1").check_resumable(tmp_path)
    with pytest.raises(EvalFailed, match="sampling differ"):
        config("http://127.0.0.1:1", sampling={"repetition_penalty": 1.2}).check_resumable(tmp_path)


def test_a_gateway_that_does_not_answer_stops_the_run_at_once(tmp_path: Path) -> None:
    with pytest.raises(EvalFailed, match="does not answer"):
        run_eval(config(f"http://127.0.0.1:{free_port()}"), QUESTIONS, tmp_path / "run", say=quiet)


def test_traffic_goes_to_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(NotLoopback, match="loopback only"):
        run_eval(config("http://example.com:8000"), QUESTIONS, tmp_path / "run", say=quiet)
    assert not (tmp_path / "run").exists()


def test_the_command_refuses_bad_options_before_asking_anything(tmp_path: Path) -> None:
    out = tmp_path / "run"
    bad_route = CliRunner().invoke(app, ["eval", "--routes", "rag,fast", "--out", str(out)])
    assert bad_route.exit_code == 2 and "choose from rag, finetuned, hybrid" in " ".join(bad_route.output.split())
    bad_split = CliRunner().invoke(app, ["eval", "--split", "test", "--out", str(out)])
    assert bad_split.exit_code == 1 and "unknown split(s) test" in " ".join(bad_split.output.split())
    missing = CliRunner().invoke(app, ["eval", "--unseen-docs", str(tmp_path / "unseen.txt"), "--out", str(out)])
    assert missing.exit_code == 1 and "cannot read the unseen documents" in " ".join(missing.output.split())
    for sampling, said in (("[1]", "not a JSON object"), ("{", "not JSON"), ('{"temperature": 1}', "set temperature")):
        bad = CliRunner().invoke(app, ["eval", "--sampling", sampling, "--out", str(out)])
        assert bad.exit_code == 2 and said in " ".join(bad.output.split()), bad.output
    no_voice = CliRunner().invoke(app, ["eval", "--voice", str(tmp_path / "voice.json"), "--out", str(out)])
    assert no_voice.exit_code == 1 and "cannot read the voice rules" in " ".join(no_voice.output.split())
    assert not out.exists()


def test_the_command_scores_the_voice_named_else_the_adapter_s_else_reads_n_a(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGFT_ADAPTERS_DIR", str(tmp_path / "adapters"))  # no adapter in it
    monkeypatch.setenv("RAGFT_DEFAULT_ADAPTER", "acme")
    voice = tmp_path / "voice.json"
    voice.write_text(json.dumps({"greeting": "Hi!", "sign_off": "Bye.", "max_steps": 6, "max_sentences": 3}))
    out = tmp_path / "run"
    with start_fake_gateway() as url:
        ask = ["eval", "--gateway", url, "--routes", "finetuned", "--limit", "1", "--out", str(out)]
        named = CliRunner().invoke(app, [*ask, "--voice", str(voice)])
        assert named.exit_code == 0, named.output
        assert json.loads((out / "run.json").read_text())["voice"]["origin"] == f"--voice {voice}"
        adapters = CliRunner().invoke(app, ask)  # a resume: nothing asked again, the latest voice scored
    assert adapters.exit_code == 0, adapters.output
    reason = f"no adapter 'acme' in {tmp_path / 'adapters'} to read the voice of"
    assert f"Voice not scored: {reason}" in " ".join(adapters.output.split())
    report = (out / "report.md").read_text()
    assert f"- **voice**: n/a, no rules to score it on: {reason}." in report
    assert len(lines(out)) == 1
