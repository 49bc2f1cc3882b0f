"""What the locustfile checks and measures in one answer (gateway/client.py), and the
options it reads (loadtests/options.py), from `ragft loadtest`'s options to every request's
headers; no Locust, no stack."""

import json
import re
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from gateway.client import AnswerFailed, chat_body, check_response, read_stream, server_timing
from loadtests.options import Options, parse_weights
from loadtests.run import locust_env
from ragft.sample_data import EVAL_SET
from ragft_cli import app


def _event(payload: object) -> list[bytes]:
    return [b"data: " + json.dumps(payload).encode(), b""]


def _content(text: str) -> list[bytes]:
    return _event({"choices": [{"index": 0, "delta": {"content": text}}]})


def _clock(*readings: float) -> Iterator[float]:
    return iter(readings)


def _stream(*parts: list[bytes]) -> list[bytes]:
    return [line for part in parts for line in part]


def test_server_timing() -> None:
    header = "retrieve;dur=37.6, generate;dur=3400.1, total;dur=3438.0"
    assert server_timing(header) == {"retrieve": 37.6, "generate": 3400.1, "total": 3438.0}
    assert server_timing(None) == {}


def test_a_stream_measured_with_vllm_usage_and_the_gateway_timing() -> None:
    lines = _stream(
        _event({"choices": [{"delta": {"role": "assistant", "content": ""}}], "ragft": {"sources": []}}),
        _content("Hi"),
        _content(" there"),
        _content("!"),
        _event({"choices": [], "usage": {"prompt_tokens": 700, "completion_tokens": 5}}),
        _event({"choices": [], "ragft": {"timing": {"retrieve": 12.5, "ttft": 80.0, "generate": 300.0}}}),
        [b"data: [DONE]", b""],
    )
    # One clock reading per JSON event: role, 3 contents, usage, timing.
    clock = _clock(10.05, 10.1, 10.2, 10.5, 10.5, 10.5)
    answer = read_stream(lines, started=10.0, clock=lambda: next(clock))
    assert answer.ttft_ms == pytest.approx(100.0)  # the first event with content, not the role event
    assert answer.tokens == 5  # vLLM's count wins over the 3 chunks
    assert answer.prompt_tokens == 700
    assert answer.tokens_per_s == pytest.approx(4 / 0.4)  # tokens after the first / time after the first
    assert answer.timing == {"retrieve": 12.5, "ttft": 80.0, "generate": 300.0}


def test_without_usage_tokens_are_the_content_chunks() -> None:
    clock = _clock(1.0, 1.5)
    answer = read_stream(_stream(_content("a"), _content("b"), [b"data: [DONE]"]), 0.5, clock=lambda: next(clock))
    assert answer.tokens == 2
    assert answer.tokens_per_s == pytest.approx(2.0)
    assert answer.timing == {}


def test_an_error_event_or_a_cut_stream_fails_the_answer() -> None:
    error = {"error": {"type": "deadline_exceeded", "message": "the request took longer than 120 s"}}
    with pytest.raises(AnswerFailed, match="error event: deadline_exceeded: the request took longer"):
        read_stream(_stream(_content("a"), _event(error), [b"data: [DONE]"]), 0.0)
    with pytest.raises(AnswerFailed, match=r"without data: \[DONE\]"):
        read_stream(_stream(_content("a")), 0.0)


def _response(status: int, route: str | None, body: object) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if route is not None:
        response.headers["X-Ragft-Route"] = route
    response._content = json.dumps(body).encode()
    return response


def test_check_response_wants_a_200_from_the_route_asked_for() -> None:
    check_response(_response(200, "hybrid", {}), "hybrid")
    with pytest.raises(AnswerFailed, match="X-Ragft-Route is 'rag', not 'hybrid'"):
        check_response(_response(200, "rag", {}), "hybrid")
    with pytest.raises(AnswerFailed, match="X-Ragft-Route is None"):
        check_response(_response(200, None, {}), "rag")
    check_response(_response(200, "finetuned", {}), "auto")  # auto answers on the route it chose
    with pytest.raises(AnswerFailed, match="X-Ragft-Route is 'auto', not a route auto chooses"):
        check_response(_response(200, "auto", {}), "auto")
    unavailable = {"error": {"type": "upstream_unavailable", "message": "retrieval is down"}}
    with pytest.raises(AnswerFailed, match="HTTP 503: upstream_unavailable: retrieval is down"):
        check_response(_response(503, "rag", unavailable), "rag")


def test_weights_and_options_from_the_environment(tmp_path: Path) -> None:
    assert parse_weights("rag=2, finetuned=1") == {"rag": 2.0, "finetuned": 1.0}
    assert parse_weights("auto=1") == {"auto": 1.0}
    for bad in ("magic=1", "rag", "rag=-1", "rag=0"):
        with pytest.raises(ValueError):
            parse_weights(bad)
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "Q1?"}\n\n{"question": "Q2?"}\n')
    options = Options.from_env(
        {"LOADTEST_QUESTIONS": str(questions), "LOADTEST_STREAM": "1", "LOADTEST_MAX_TOKENS": "8"}
    )
    assert (options.questions, options.stream, options.max_tokens) == (["Q1?", "Q2?"], "1", 8)
    assert options.weights == {"rag": 1.0, "finetuned": 1.0, "hybrid": 1.0}
    assert len(Options.from_env({}).questions) == len(EVAL_SET.read_text().splitlines()) > 100  # the eval set
    with pytest.raises(ValueError, match="LOADTEST_STREAM"):
        Options.from_env({"LOADTEST_STREAM": "sometimes"})


def test_chat_body_asks_for_the_usage_chunk_when_streaming() -> None:
    assert chat_body("Q?", max_tokens=64, stream=True)["stream_options"] == {"include_usage": True}
    plain = chat_body("Q?", max_tokens=64, stream=False)
    assert "stream_options" not in plain
    assert (plain["max_tokens"], plain["temperature"], plain["messages"][0]["content"]) == (64, 0, "Q?")


def _own_eval_set(path: Path, questions: int = 3) -> Path:
    """An eval set of one's own: the sample's first questions, in a file of its own."""
    path.write_text("".join(EVAL_SET.read_text().splitlines(keepends=True)[:questions]))
    return path


def test_the_collection_and_the_adapter_go_in_every_request_s_headers(tmp_path: Path) -> None:
    own = _own_eval_set(tmp_path / "own.jsonl")
    options = Options.from_env(
        {
            "LOADTEST_QUESTIONS": str(own),
            "LOADTEST_COLLECTION": "my-kb",
            "LOADTEST_ADAPTER": "my-voice",
            "LOADTEST_API_KEY": "k1",
        }
    )
    assert options.headers("hybrid") == {
        "X-Ragft-Route": "hybrid",
        "X-Ragft-Collection": "my-kb",
        "X-Ragft-Adapter": "my-voice",
        "Authorization": "Bearer k1",
    }
    assert options.described() == {"data": str(own), "questions": 3, "collection": "my-kb", "adapter": "my-voice"}
    # Unset or empty: no header, so the gateway's defaults apply.
    defaults = Options.from_env({"LOADTEST_COLLECTION": "", "LOADTEST_ADAPTER": ""})
    assert defaults.headers("rag") == {"X-Ragft-Route": "rag"}
    sample = {"data": str(EVAL_SET), "questions": len(EVAL_SET.read_text().splitlines()), "collection": None}
    assert defaults.described() == {**sample, "adapter": None}
    for bad in ("../etc", "my kb", "-kb", "k" * 65):
        with pytest.raises(ValueError, match=re.escape(f"LOADTEST_COLLECTION {bad!r} is not a collection name")):
            Options.from_env({"LOADTEST_COLLECTION": bad})


@pytest.fixture
def no_stack(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`ragft loadtest` with the stack and Locust left out: each call the command made, the
    stack's start ("up") and the run with the LOADTEST_* settings its users would read ("run")."""
    calls: list[dict[str, Any]] = []

    def gateway_up(url: str, **_: Any) -> nullcontext[None]:
        calls.append({"up": url})
        return nullcontext()

    def run_load_test(gateway: str, *, out_dir: Path, env: dict[str, str], **_: Any) -> tuple[Path, Path]:
        calls.append({"run": env})
        return out_dir / "report.md", out_dir / "report.png"

    monkeypatch.setattr("ragft_cli.loadtest.gateway_up", gateway_up)
    monkeypatch.setattr("loadtests.run.run_load_test", run_load_test)
    return calls


def test_the_command_s_data_collection_and_adapter_reach_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stack: list[dict[str, Any]]
) -> None:
    _own_eval_set(tmp_path / "own.jsonl")
    monkeypatch.chdir(tmp_path)  # a path relative to here, where Locust does not run
    monkeypatch.setenv("LOADTEST_ADAPTER", "from-the-shell")  # an option left out still wins over it
    ask = ["loadtest", "--gateway", "http://127.0.0.1:8000", "--out", str(tmp_path / "run")]
    done = CliRunner().invoke(app, [*ask, "--data", "own.jsonl", "--collection", "my-kb"])
    assert done.exit_code == 0, done.output
    users = Options.from_env(locust_env(no_stack[-1]["run"]))  # what every Locust user reads
    assert users.data == tmp_path / "own.jsonl" and len(users.questions) == 3
    assert users.headers("rag") == {"X-Ragft-Route": "rag", "X-Ragft-Collection": "my-kb"}

    done = CliRunner().invoke(app, [*ask, "--adapter", "my-voice"])
    assert done.exit_code == 0, done.output
    users = Options.from_env(locust_env(no_stack[-1]["run"]))
    assert users.data == EVAL_SET and users.collection is None
    assert users.headers("finetuned") == {"X-Ragft-Route": "finetuned", "X-Ragft-Adapter": "my-voice"}


def test_the_command_refuses_a_bad_eval_set_or_collection_before_the_stack_starts(
    tmp_path: Path, no_stack: list[dict[str, Any]]
) -> None:
    out = tmp_path / "run"
    old_format = tmp_path / "questions.jsonl"
    old_format.write_text('{"question": "Q1?"}\n')  # what the users once read: a question, nothing more
    for data, said in (
        (old_format, "questions.jsonl:1: id: Field required"),
        (tmp_path / "missing.jsonl", "cannot read the eval set"),
    ):
        # A wide terminal: the message's line is not wrapped inside the path, however long tmp_path is.
        refused = CliRunner().invoke(app, ["loadtest", "--data", str(data), "--out", str(out)], env={"COLUMNS": "1000"})
        assert refused.exit_code == 1 and said in " ".join(refused.output.split()), refused.output
    refused = CliRunner().invoke(app, ["loadtest", "--collection", "../etc", "--out", str(out)])
    assert refused.exit_code == 2
    assert "--collection '../etc' is not a collection name" in " ".join(refused.output.split()), refused.output
    assert no_stack == [] and not out.exists()
