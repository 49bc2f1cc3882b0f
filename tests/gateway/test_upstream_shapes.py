"""Upstream answers the gateway does not expect: a stand-in for both upstreams (a real retrieval
service or vLLM cannot be made to send these) answers every path the gateway calls with a wrong
shape, wrong types, truncated JSON or an unexpected status, as a retrieval service of another
version would during a rolling deploy. No answer of the gateway may be a 500: a broken answer is
a 502 that names the upstream, and every error has OpenAI's error shape. The gateway runs in this
process."""

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.gateway.openai_conformance import violations
from tests.gateway.scripted_vllm import served
from tests.utils.gateway import InProcessStarter

COLLECTION = "help-center"
# (status, body) the stand-in answers to every request, whatever its path.
WRONG_SHAPES = [
    b"{}",
    b"[]",
    b"null",
    b'"text"',
    b"<html>502 Bad Gateway</html>",
    b'{"collections": [{"name": "help-center"}], "hits": [{"doc_id": "a"}], "documents": [{}], "total": 1,'
    b' "choices": [{"index": 0}], "data": [{"id": "base"}], "object": "list"}',
    b'{"collections": "all", "hits": 3, "documents": {}, "total": "many", "choices": {}, "data": "base",'
    b' "object": 1, "deleted": [], "chunks": "two", "id": 7, "created": "now", "model": null}',
    b'{"hits": [{"doc_id": "a", "chunk_id": "a#0", "score": "high", "text": 1, "metadata": []}]}',
    b'{"collections": [{"name": "help-center", "documents": 50',
]
STATUSES = [201, 204, 302, 401, 409, 418, 429, 500, 502, 503, 599]
CHAT = {"messages": [{"role": "user", "content": "How much does the Team plan cost?"}], "max_tokens": 4}
CALLS: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = [
    *[
        ("POST", "/v1/chat/completions", {**CHAT, "stream": stream}, {"X-Ragft-Route": route})
        for route in ("rag", "finetuned", "hybrid", "auto")
        for stream in (False, True)
    ],
    ("POST", "/v1/compare", {**CHAT, "routes": ["rag", "finetuned", "hybrid", "auto"]}, {}),
    ("GET", "/v1/models", None, {}),
    ("GET", "/v1/ragft/collections", None, {}),
    ("POST", f"/v1/ragft/collections/{COLLECTION}/search", {"query": "Team plan"}, {}),
    ("GET", f"/v1/ragft/collections/{COLLECTION}/documents", None, {}),
    ("GET", f"/v1/ragft/collections/{COLLECTION}/documents/billing", None, {}),
    ("DELETE", f"/v1/ragft/collections/{COLLECTION}/documents/billing", None, {}),
    ("POST", f"/v1/ragft/collections/{COLLECTION}/documents", {"id": "billing", "text": "Team: €9."}, {}),
]


class WrongUpstream(ThreadingHTTPServer):
    """Answers every request with `status` and `body`, whatever was asked, and counts requests."""

    status = 200
    body = b"{}"
    requests = 0


class _Handler(BaseHTTPRequestHandler):
    server: WrongUpstream

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        self.send_response(self.server.status)
        if self.server.status == 302:
            self.send_header("Location", self.path)  # a loop, if the gateway followed it
        if self.server.status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        if self.server.status != 204:
            self.wfile.write(self.server.body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in_and_gateway(start_gateway_in_process: InProcessStarter) -> Iterator[tuple[WrongUpstream, httpx.Client]]:
    upstream = WrongUpstream(("127.0.0.1", 0), _Handler)
    with served(upstream) as url:
        # The breaker stays closed, so every case reaches the stand-in and is judged on its answer.
        settings = {"RAGFT_RETRIEVAL_URL": url, "RAGFT_GENERATION_URL": url, "RAGFT_BREAKER_FAILURES": "1000000"}
        with start_gateway_in_process(**settings) as gateway:
            yield upstream, gateway


def ask_everything(gateway: httpx.Client) -> list[tuple[str, int, Any]]:
    """Every call, with its status and its error body (or its SSE text)."""
    answers = []
    for method, path, body, headers in CALLS:
        response = gateway.request(method, path, json=body, headers=headers)
        is_json = response.headers.get("content-type", "").startswith("application/json")
        answers.append((f"{method} {path} {headers}", response.status_code, response.json() if is_json else None))
    return answers


def check_answers(answers: list[tuple[str, int, Any]], upstream_said: str) -> None:
    for call, status, body in answers:
        assert status != 500, (upstream_said, call, body)
        if status >= 400:
            assert violations("ErrorResponse", body) == [], (upstream_said, call, body)
        if call.startswith("POST /v1/compare") and status == 200:
            for route in body["results"]:
                assert route["status"] != 500, (upstream_said, route)


@pytest.mark.parametrize("body", WRONG_SHAPES, ids=range(len(WRONG_SHAPES)))
def test_a_wrong_or_truncated_answer_is_a_502_naming_the_upstream(
    stand_in_and_gateway: tuple[WrongUpstream, httpx.Client], body: bytes
) -> None:
    upstream, gateway = stand_in_and_gateway
    upstream.status, upstream.body = 200, body
    asked = upstream.requests
    answers = ask_everything(gateway)
    assert upstream.requests >= asked + len(CALLS)  # the stand-in, not the gateway, answered them
    check_answers(answers, body.decode())
    for call, status, error in answers:
        if error is not None and status != 200:  # a stream relays what came after its first event
            assert status == 502, (body, call, error)
            assert error["error"]["type"] == "upstream_error"
            assert "retrieval service" in error["error"]["message"] or "generation service" in error["error"]["message"]


@pytest.mark.parametrize("status", STATUSES)
def test_an_unexpected_status_is_never_a_500(
    stand_in_and_gateway: tuple[WrongUpstream, httpx.Client], status: int
) -> None:
    upstream, gateway = stand_in_and_gateway
    upstream.status, upstream.body = status, json.dumps({"error": {"message": f"status {status}"}}).encode()
    answers = ask_everything(gateway)
    check_answers(answers, f"HTTP {status}")
    if status < 300 or status >= 500:  # a success with no usable body, or the upstream's failure
        assert {code for _, code, _ in answers if code != 200} <= {502, 503}, answers
