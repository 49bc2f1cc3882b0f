"""A stand-in for the gateway that keeps its contract at a known, small cost, for the locustfile's
own tests and for recording the report's fixture: `uvicorn tests.loadtests.fake_gateway:app`.

Like benchmarks/standin.py it is a bare ASGI app, but it answers as the gateway does: the
`X-Ragft-Route` header, `Server-Timing` (retrieve, generate, total), and for `"stream": true` an
SSE stream with the `ragft` sources first, one token per event, vLLM's usage chunk when
`stream_options.include_usage` is set, `ragft.timing` last (with `ragft.grounding`, the
verdict on the routes that retrieve, which the non-streamed answer's `ragft` holds too) and
`data: [DONE]`.

Costs: retrieve 4 ms (rag, hybrid; 0 for finetuned), then 2 ms per token (FAKE_GATEWAY_TOKEN_S),
min(max_tokens, 16) tokens. FAKE_GATEWAY_ROUTE answers every request with that route in the header (to test the check);
FAKE_GATEWAY_FAIL_EVERY=N answers every Nth request with a 503 in the gateway's error shape. `auto`
answers as hybrid, as the real gateway does for a question its knowledge base covers."""

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ragft import sse
from ragft.process import free_port, stop_process, wait_until_ready
from ragft.settings import REPO

RETRIEVE_S = 0.004
TOKEN_S = float(os.environ.get("FAKE_GATEWAY_TOKEN_S", "0.002"))
MAX_TOKENS = 16
FORCED_ROUTE = os.environ.get("FAKE_GATEWAY_ROUTE", "")
FAIL_EVERY = int(os.environ.get("FAKE_GATEWAY_FAIL_EVERY", "0"))
COUNTER = itertools.count(1)


async def _body(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _json(send: Any, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), *headers]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    event = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": "fake", "choices": choices, **extra}
    return sse.encode(event)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await _body(receive)
    if scope["path"] in ("/healthz", "/readyz"):
        await _json(send, 200, {"status": "ok"}, [])
        return
    started = time.perf_counter()
    request_headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
    route = request_headers.get("x-ragft-route", "rag").lower().replace("auto", "hybrid")
    if route not in ("rag", "finetuned", "hybrid"):
        await _json(send, 400, {"error": {"type": "invalid_request", "message": "bad route"}}, [])
        return
    if FAIL_EVERY and next(COUNTER) % FAIL_EVERY == 0:
        error = {"error": {"type": "upstream_unavailable", "message": "the generation service is not ready"}}
        await _json(send, 503, error, [(b"retry-after", b"5")])
        return
    request = json.loads(body)
    tokens = min(int(request.get("max_tokens") or MAX_TOKENS), MAX_TOKENS)
    retrieve = 0.0
    if route != "finetuned":
        await asyncio.sleep(RETRIEVE_S)
        retrieve = (time.perf_counter() - started) * 1000
    ragft = {"route": route, "adapter": None, "collection": None, "sources": []}
    # The grounding check's verdict rides on the routes that retrieve; "ok ok" states nothing to check.
    verdict = {"supported": True, "unsupported": [], "unknown_citations": []}
    grounding = {"grounding": verdict} if route != "finetuned" else {}
    headers = [(b"x-ragft-route", (FORCED_ROUTE or route).encode())]
    generate_started = time.perf_counter()
    if not request.get("stream"):
        await asyncio.sleep(TOKEN_S * tokens)
        generate = (time.perf_counter() - generate_started) * 1000
        total = (time.perf_counter() - started) * 1000
        timing = f"retrieve;dur={retrieve:.1f}, generate;dur={generate:.1f}, total;dur={total:.1f}"
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": "fake",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok " * tokens}, "finish_reason": "length"}
            ],
            "usage": {"prompt_tokens": 40, "completion_tokens": tokens, "total_tokens": 40 + tokens},
            "ragft": ragft | grounding,
        }
        await _json(send, 200, completion, [*headers, (b"server-timing", timing.encode())])
        return
    stream_headers = [
        (b"content-type", b"text/event-stream"),
        (b"server-timing", f"retrieve;dur={retrieve:.1f}".encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": stream_headers + headers})

    async def event(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    await event(
        _chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], ragft=ragft)
    )
    ttft = None
    for _ in range(tokens):
        await asyncio.sleep(TOKEN_S)
        ttft = ttft or (time.perf_counter() - started) * 1000
        await event(_chunk([{"index": 0, "delta": {"content": "ok "}, "finish_reason": None}]))
    if (request.get("stream_options") or {}).get("include_usage"):
        await event(_chunk([], usage={"prompt_tokens": 40, "completion_tokens": tokens, "total_tokens": 40 + tokens}))
    generate = (time.perf_counter() - generate_started) * 1000
    total = (time.perf_counter() - started) * 1000
    spent = {"retrieve": retrieve, "ttft": ttft, "generate": generate, "total": total}
    await event(_chunk([], ragft={"timing": spent} | grounding))
    await send({"type": "http.response.body", "body": sse.DONE})


@contextmanager
def start_fake_gateway(**settings: str) -> Iterator[str]:
    """The fake gateway on a free port, with FAKE_GATEWAY_* settings."""
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.loadtests.fake_gateway:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO, start_new_session=True, env={**os.environ, **settings},
    )  # fmt: skip
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout=30, process=fake)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(fake, timeout=2, group=True)  # uvicorn would wait for the answers Locust gave up on
