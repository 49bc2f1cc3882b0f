"""A stand-in for both upstreams that answers at once with fixed bodies, so that `bench-gateway`
measures the gateway and not the model: `uvicorn benchmarks.standin:app`. A bare ASGI app, the
fastest server Python offers here, so the direct baseline is as demanding as it can be. A
streamed completion sends TOKENS chunks, one every TOKEN_S, as a model would."""

import asyncio
import json
from typing import Any

from ragft import sse

TOKENS = 16
TOKEN_S = 0.02

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": "voice",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi there, thanks for reaching out to Quillbyte Support!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
    }
).encode()
HIT = {
    "doc_id": "billing-plans-and-prices",
    "chunk_id": "billing-plans-and-prices#0",
    "score": 0.03,
    "title": "Plans",
    "metadata": {},
}
SEARCH = json.dumps({"hits": [{**HIT, "text": "The Team plan costs 10 euros per seat per month. " * 8}] * 4}).encode()
JSON = [(b"content-type", b"application/json")]
EVENTS = [(b"content-type", b"text/event-stream")]


def _chunk(content: str, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish_reason}
    return sse.encode({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0,
                       "model": "voice", "choices": [choice]})  # fmt: skip


async def _stream(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": EVENTS})
    for token in range(TOKENS):
        await asyncio.sleep(TOKEN_S)
        last = token == TOKENS - 1
        await send({"type": "http.response.body", "body": _chunk(" word", "stop" if last else None), "more_body": True})
    await send({"type": "http.response.body", "body": sse.DONE})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:  # read the whole request body before answering
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    path = scope["path"]
    if path.endswith("/completions") and b'"stream": true' in body.replace(b'"stream":true', b'"stream": true'):
        await _stream(send)
        return
    body = SEARCH if path.endswith("/search") else COMPLETION if path.endswith("/completions") else b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": body})
