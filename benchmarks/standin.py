"""A stand-in for both upstreams that answers at once with fixed bodies, so that `bench-gateway`
measures the gateway and not the model: `uvicorn benchmarks.standin:app`. A bare ASGI app, the
fastest server Python offers here, so the direct baseline is as demanding as it can be."""

import json
from typing import Any

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


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole request body before answering
        more = (await receive()).get("more_body", False)
    path = scope["path"]
    body = SEARCH if path.endswith("/search") else COMPLETION if path.endswith("/completions") else b"{}"
    await send({"type": "http.response.start", "status": 200, "headers": JSON})
    await send({"type": "http.response.body", "body": body})
