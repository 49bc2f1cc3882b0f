"""Every response shape the gateway produces, validated against OpenAI's own published schemas
(`openai_conformance.py`): completions on every route and every chunk of their streams, from the
real vLLM behind the real gateway; the model list; errors of each kind the gateway sends, from the
gateway in this process (the gateway makes them itself)."""

from typing import Any

import httpx
import pytest

from tests.gateway.openai_conformance import violations
from tests.utils.gateway import sse_events

CHAT = {"messages": [{"role": "user", "content": "How much does the Team plan cost?"}], "max_tokens": 8}
ROUTES = ("rag", "finetuned", "hybrid", "auto")


def test_the_schemas_refuse_what_strict_clients_refuse() -> None:
    """The check itself can fail: the two departures from OpenAI's schema that vLLM and ragft
    made before the gateway normalized them."""
    message: dict[str, Any] = {"role": "assistant", "content": "hi", "refusal": None, "annotations": None}
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "base",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    assert violations("CreateChatCompletionResponse", completion) == [
        "choices.0.message.annotations: None is not of type 'array'"
    ]
    assert violations("ErrorResponse", {"error": {"type": "x", "message": "m", "param": None}}) == [
        "error: 'code' is a required property"
    ]
    del message["annotations"]
    assert violations("CreateChatCompletionResponse", completion) == []


@pytest.mark.parametrize("route", ROUTES)
def test_a_completion_and_every_chunk_of_its_stream_conform(gateway_url: str, route: str) -> None:
    headers = {"X-Ragft-Route": route}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=300) as client:
        answered = client.post("/v1/chat/completions", json=CHAT)
        assert answered.status_code == 200, answered.text
        assert violations("CreateChatCompletionResponse", answered.json()) == []
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", "/v1/chat/completions", json=body) as streamed:
            events = sse_events(streamed)
    assert events[-1] == "[DONE]" and len(events) > 3
    for number, chunk in enumerate(events[:-1]):
        assert violations("CreateChatCompletionStreamResponse", chunk) == [], (number, chunk)


def test_the_model_list_conforms(gateway_url: str) -> None:
    listed = httpx.get(f"{gateway_url}/v1/models", timeout=30)
    assert listed.status_code == 200 and len(listed.json()["data"]) >= 2  # the base model and the adapter
    assert violations("ListModelsResponse", listed.json()) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("POST", "/v1/chat/completions", CHAT, {"X-Ragft-Route": "sideways"}, 400),
        ("POST", "/v1/chat/completions", CHAT, {"X-Ragft-Route": "finetuned", "X-Ragft-Adapter": "nope"}, 404),
        ("POST", "/v1/chat/completions", {"messages": []}, {}, 422),
        ("POST", "/v1/chat/completions", {**CHAT, "max_tokens": 10**6}, {}, 400),
        ("GET", "/v1/nowhere", None, {}, 404),
        ("GET", "/v1/ragft/collections/no-such-collection/documents", None, {}, 404),
        ("DELETE", "/v1/models", None, {}, 405),
    ],
)
def test_every_error_conforms(
    gateway_in_process: httpx.Client, method: str, path: str, body: Any, headers: dict[str, str], status: int
) -> None:
    response = gateway_in_process.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    assert violations("ErrorResponse", response.json()) == []
