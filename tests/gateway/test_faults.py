"""Bad input and failing upstreams: a clear error in the standard shape, and nothing hangs.

The gateway's own answers (bad input, keys, a stand-in that fails) come from the gateway in this
process (`start_gateway_in_process`); a real process stays where only one proves the point: a
retrieval process stopped, the real vLLM cut at the deadline or killed with SIGKILL."""

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest

from ragft import sse
from ragft.process import free_port, stop_process, wait_until_ready
from tests.gateway.scripted_vllm import served
from tests.utils.gateway import GatewayStarter, InProcessStarter, sse_events
from tests.utils.metrics import wait_until_idle
from tests.utils.processes import Processes, embedded_env

USER = [{"role": "user", "content": "How do I reset my password?"}]


def _post(
    gateway: httpx.Client, body: Any = None, *, content: bytes | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return gateway.post("/v1/chat/completions", json=body, content=content, headers=headers)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("body", "headers", "status", "param", "says"),
    [
        ({"messages": USER}, {"X-Ragft-Route": "fine-tuned"}, 400, "X-Ragft-Route", "rag, finetuned, hybrid"),
        ({"messages": USER}, {"X-Ragft-Route": "finetuned", "X-Ragft-Adapter": "nope"}, 404, "X-Ragft-Adapter", "nope"),
        ({"messages": USER}, {"X-Ragft-Route": "hybrid", "X-Ragft-Adapter": ""}, 400, "X-Ragft-Adapter", "needs"),
        ({"messages": USER}, {"X-Ragft-Collection": "no-such-kb"}, 404, "X-Ragft-Collection", "no-such-kb"),
        ({"messages": USER}, {"X-Ragft-Collection": "../etc"}, 400, "X-Ragft-Collection", "not a collection name"),
        ({"messages": []}, {}, 422, "messages", "at least 1"),
        ({"messages": "hello"}, {}, 422, "messages", "valid list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, {}, 422, "messages.0.role", "'user'"),
        ({"messages": [{"role": "user", "content": 42}]}, {}, 422, "messages.0.content", "string"),
        ({"messages": [{"role": "user", "content": "  "}]}, {}, 400, "messages", "no user message has text"),
        ({"messages": USER, "temperature": "hot"}, {}, 422, "temperature", "number"),
        ({"messages": USER, "max_tokens": 0}, {}, 422, "max_tokens", "greater than or equal to 1"),
        ({"messages": USER, "max_tokens": 100000}, {"X-Ragft-Route": "finetuned"}, 400, "max_tokens", "limit is 1024"),
        ({"messages": USER, "max_completion_tokens": 1025}, {}, 400, "max_completion_tokens", "limit is 1024"),
        ({"messages": USER * 65}, {}, 413, "messages", "65 messages; the limit is 64"),
        ({"messages": [{"role": "user", "content": "x" * 32_001}]}, {}, 413, "messages.0.content", "limit is 32000"),
        ({"messages": [{"role": "user", "content": "x" * 30_000}] * 40}, {}, 413, "body", "limit of 1048576 bytes"),
        ({"messages": USER, "n": 3}, {}, 422, "n", "less than or equal to 1"),
        ([1, 2], {}, 422, "body", "valid dictionary"),
    ],
)
def test_bad_requests_get_a_clear_4xx(
    gateway_in_process: httpx.Client, body: Any, headers: dict[str, str], status: int, param: str | None, says: str
) -> None:
    error = _error(_post(gateway_in_process, body, headers=headers), status)
    # A union's error names the branch too: messages.0.content.str
    assert error["param"] == param or error["param"].startswith(f"{param}.")
    assert says in error["message"]


def test_a_body_that_is_not_json(gateway_in_process: httpx.Client) -> None:
    error = _error(
        _post(gateway_in_process, content=b'{"messages": [', headers={"content-type": "application/json"}), 422
    )
    assert "not valid JSON" in error["message"]


def test_api_keys_guard_the_api_but_not_health(start_gateway_in_process: InProcessStarter) -> None:
    with start_gateway_in_process(RAGFT_API_KEYS="key-one, key-two") as gateway:
        missing = gateway.get("/v1/models")
        assert _error(missing, 401)["type"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert _error(_post(gateway, {"messages": USER}, headers={"Authorization": "Bearer key-three"}), 401)
        assert _error(_post(gateway, {"messages": USER}, headers={"Authorization": "Basic key-one"}), 401)
        client = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="key-two", max_retries=0, http_client=gateway.app_client
        )
        assert "base" in {model.id for model in client.models.list()}
        for path in ("/healthz", "/readyz", "/metrics"):
            assert gateway.get(path).status_code == 200
        # Every API route the gateway publishes, so a new one cannot forget the key.
        published = gateway.get("/openapi.json").json()["paths"]
        api = [(method, path) for path, methods in published.items() if path.startswith("/v1") for method in methods]
        assert len(api) >= 9, api
        for method, path in api:
            concrete = path.replace("{name}", "help-center").replace("{doc_id}", "a-doc")
            refused = gateway.request(method, concrete, json={"messages": USER})
            assert _error(refused, 401)["type"] == "unauthorized", (method, path)


def test_retrieval_down_fails_rag_and_hybrid_fast_while_finetuned_answers(
    processes: Processes, start_gateway: GatewayStarter, tmp_path: Path
) -> None:
    port = free_port()
    retrieval_url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path, RAGFT_RETRIEVAL_PORT=str(port))
    with (
        processes.serve("serve", "retrieval", env=env, ready=f"{retrieval_url}/readyz") as retrieval,
        start_gateway(RAGFT_RETRIEVAL_URL=retrieval_url) as url,
        httpx.Client(base_url=url, timeout=60) as gateway,
    ):
        assert httpx.get(f"{url}/readyz").status_code == 200
        retrieval.terminate()  # a real upstream process, stopped
        retrieval.wait(timeout=20)
        for route in ("rag", "hybrid"):
            started = time.monotonic()
            down = _post(gateway, {"messages": USER}, headers={"X-Ragft-Route": route})
            assert time.monotonic() - started < 5  # refused connection: no waiting for a timeout
            assert _error(down, 503)["type"] == "upstream_unavailable"
            assert "retrieval" in down.json()["error"]["message"]
            assert int(down.headers["retry-after"]) > 0
        answered = _post(gateway, {"messages": USER, "max_tokens": 8}, headers={"X-Ragft-Route": "finetuned"})
        assert answered.status_code == 200
        not_ready = httpx.get(f"{url}/readyz")
        assert _error(not_ready, 503)["type"] == "not_ready"
        assert "retrieval" in not_ready.json()["error"]["message"]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'ragft_gateway_upstream_errors_total{type="upstream_unavailable",upstream="retrieval"}' in metrics


def test_hybrid_answers_as_finetuned_when_the_policy_says_so_and_says_it_did(
    start_gateway_in_process: InProcessStarter,
) -> None:
    # Nothing listens on the retrieval port: a stopped retrieval service, as the test above shows.
    dead = f"http://127.0.0.1:{free_port()}"
    with start_gateway_in_process(RAGFT_RETRIEVAL_URL=dead, RAGFT_HYBRID_WITHOUT_RETRIEVAL="finetuned") as gateway:
        hybrid = {"X-Ragft-Route": "hybrid"}
        answered = _post(gateway, {"messages": USER, "max_tokens": 8}, headers=hybrid)
        assert answered.status_code == 200, answered.text
        assert answered.headers["x-ragft-degraded"] == "retrieval"
        assert answered.headers["x-ragft-route"] == "finetuned"
        ragft = answered.json()["ragft"]
        assert (ragft["route"], ragft["adapter"], ragft["sources"]) == ("finetuned", "voice", [])
        assert ragft["degraded"]["component"] == "retrieval"
        assert ragft["degraded"]["requested_route"] == "hybrid"
        assert "unreachable" in ragft["degraded"]["message"]
        body = {"messages": USER, "max_tokens": 8, "stream": True}
        with gateway.stream("POST", "/v1/chat/completions", json=body, headers=hybrid) as r:
            assert r.headers["x-ragft-degraded"] == "retrieval"
            events = sse_events(r)
        assert events[0]["ragft"]["degraded"]["component"] == "retrieval"
        assert events[-1] == "[DONE]" and "error" not in events[-2]
        # rag has no lesser route: it still fails loudly.
        assert _error(_post(gateway, {"messages": USER}, headers={"X-Ragft-Route": "rag"}), 503)
        metrics = gateway.get("/metrics").text
        assert 'ragft_gateway_degraded_total{component="retrieval",route="hybrid"} 2.0' in metrics


def test_generation_down_is_a_503(start_gateway_in_process: InProcessStarter) -> None:
    # Nothing listens on the port: what a stopped vLLM looks like to the gateway, without the
    # 40-second restart of the session's real one.
    with start_gateway_in_process(RAGFT_GENERATION_URL=f"http://127.0.0.1:{free_port()}") as gateway:
        for route in ("rag", "finetuned", "hybrid"):
            down = _post(gateway, {"messages": USER, "stream": route == "hybrid"}, headers={"X-Ragft-Route": route})
            assert "generation" in _error(down, 503)["message"]
            assert down.headers["retry-after"]
        assert _error(gateway.get("/v1/models"), 503)


LONG = {"messages": USER, "max_tokens": 1000, "ignore_eos": True}  # within RAGFT_MAX_TOKENS_LIMIT


def test_the_deadline_gives_504_before_streaming_and_an_error_event_after(
    start_gateway: GatewayStarter, generation_url: str
) -> None:
    with start_gateway(RAGFT_DEADLINE_S="2") as url, httpx.Client(base_url=url, timeout=60) as gateway:
        started = time.monotonic()
        assert _error(_post(gateway, LONG, headers={"X-Ragft-Route": "finetuned"}), 504)["type"] == "upstream_timeout"
        assert time.monotonic() - started < 10
        headers = {"X-Ragft-Route": "finetuned"}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**LONG, "stream": True}, headers=headers) as r:
            assert r.status_code == 200
            events = sse_events(r)
        assert "ragft" in events[0]
        assert events[-2]["error"]["type"] == "upstream_timeout"
        assert events[-1] == "[DONE]"
        assert wait_until_idle(generation_url) == 0  # the cut requests no longer generate


def test_vllm_killed_mid_stream_and_mid_request(
    processes: Processes,
    start_gateway: GatewayStarter,
    generation_env: dict[str, str],
    base_model: Path,
    tmp_path: Path,
) -> None:
    """A vLLM of its own (the base model alone), killed with SIGKILL, engine processes and all,
    while it streams one answer and generates another."""
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    env = {**generation_env, "RAGFT_GENERATION_PORT": str(free_port()), "RAGFT_ADAPTERS_DIR": str(adapters)}
    vllm_url = f"http://127.0.0.1:{env['RAGFT_GENERATION_PORT']}"
    launcher = processes.spawn("serve", "generation", env=env, own_group=True)
    try:
        wait_until_ready(f"{vllm_url}/health", timeout=300, process=launcher)
        vllm = psutil.Process(launcher.pid).children()[0]  # the launcher starts vLLM in a group of its own
        base = {"X-Ragft-Route": "finetuned", "X-Ragft-Adapter": "base"}
        with (
            start_gateway(RAGFT_GENERATION_URL=vllm_url) as url,
            httpx.Client(base_url=url, timeout=60) as gateway,
            ThreadPoolExecutor(1) as pool,
        ):
            plain = pool.submit(_post, gateway, LONG, headers=base)
            body = {**LONG, "stream": True}
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=base, timeout=60) as r:
                events = (d.decode() for line in r.iter_lines() if (d := sse.data(line)) is not None)
                started = [next(events) for _ in range(6)]  # ragft's event, then tokens: vLLM is generating
                os.killpg(vllm.pid, signal.SIGKILL)
                rest = list(events)
            assert launcher.wait(timeout=30) != 0  # the launcher reports vLLM's death
            assert '"content"' in started[-1]
            assert rest[-1] == "[DONE]"
            error = json.loads(rest[-2])["error"]
            assert error["type"] == "upstream_error"
            assert "generation service" in error["message"]
            cut = plain.result()  # a connection dropped before the answer's first byte
            assert _error(cut, 503)["type"] == "upstream_unavailable"
            assert "generation" in cut.json()["error"]["message"]
    finally:
        stop_process(launcher, timeout=30, group=True)


class _BrokenVllm(BaseHTTPRequestHandler):
    """A stand-in for vLLM that fails on cue: a stream sends two tokens, then the connection
    drops; a plain completion is not JSON."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if body.get("stream") else "application/json")
        self.end_headers()
        if not body.get("stream"):
            self.wfile.write(b"<html>not json</html>")
            return
        for token in ("Hel", "lo"):
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "voice",
                     "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}  # fmt: skip
            self.wfile.write(sse.encode(chunk))
        self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_vllm() -> Iterator[str]:
    with served(ThreadingHTTPServer(("127.0.0.1", 0), _BrokenVllm)) as url:
        yield url


def test_an_upstream_that_dies_mid_stream_ends_with_an_error_not_a_clean_finish(
    start_gateway_in_process: InProcessStarter, broken_vllm: str
) -> None:
    with start_gateway_in_process(RAGFT_GENERATION_URL=broken_vllm) as gateway:
        body = {"messages": USER, "stream": True}
        with gateway.stream("POST", "/v1/chat/completions", json=body, headers={"X-Ragft-Route": "finetuned"}) as r:
            events = sse_events(r)
        assert [e["choices"][0]["delta"]["content"] for e in events[1:3]] == ["Hel", "lo"]
        assert events[3]["error"]["type"] == "upstream_error"
        assert "before the answer was complete" in events[3]["error"]["message"]
        assert events[4:] == ["[DONE]"]
        # The official client raises rather than returning a truncated answer as if it were whole.
        client = openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0, http_client=gateway.app_client
        )
        with pytest.raises(openai.APIError, match="before the answer was complete"):
            for _ in client.chat.completions.create(model="voice", messages=USER, stream=True):  # type: ignore[arg-type]
                pass


def test_an_upstream_answer_that_is_not_json_is_a_502(
    start_gateway_in_process: InProcessStarter, broken_vllm: str
) -> None:
    with start_gateway_in_process(RAGFT_GENERATION_URL=broken_vllm) as gateway:
        error = _error(_post(gateway, {"messages": USER}, headers={"X-Ragft-Route": "finetuned"}), 502)
        assert error["type"] == "upstream_error"
        assert "Invalid JSON" in error["message"]
