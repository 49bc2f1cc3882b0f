"""Token accounting: vLLM's usage, per route, in the gateway's metrics and the stream's last
ragft event. vLLM is the scripted stand-in, whose usage is known in advance (a prompt token per
character of the messages' JSON); the real vLLM's counts are checked in test_routes."""

import json
from pathlib import Path

import httpx

from tests.conftest import Processes
from tests.gateway.conftest import metric, sse_events
from tests.gateway.scripted_vllm import Answer, scripted_vllm

FINETUNED = {"X-Ragft-Route": "finetuned"}
USER = [{"role": "user", "content": "How do I reset my password?"}]
PROMPT_TOKENS = len(json.dumps(USER))
TOKENS = 'ragft_gateway_tokens_total{{kind="{kind}",route="finetuned"}}'


def test_tokens_are_counted_per_route_and_the_usage_chunk_reaches_only_clients_that_asked(
    processes: Processes, tmp_path: Path
) -> None:
    with (
        scripted_vllm(Answer(tokens=3)) as vllm,
        processes.gateway(tmp_path, None, RAGFT_GENERATION_URL=vllm.url, RAGFT_DEFAULT_ADAPTER="voice") as (url, _),
    ):
        chat = f"{url}/v1/chat/completions"
        plain = httpx.post(chat, json={"messages": USER}, headers=FINETUNED).json()
        relayed = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3, "total_tokens": PROMPT_TOKENS + 3}
        assert plain["usage"] == relayed
        with httpx.stream("POST", chat, json={"messages": USER, "stream": True}, headers=FINETUNED) as response:
            unasked = sse_events(response)
        asked_body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", chat, json=asked_body, headers=FINETUNED) as response:
            asked = sse_events(response)

        assert all(body["stream_options"] == {"include_usage": True} for body in vllm.bodies if body.get("stream"))
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3}
        assert not any("usage" in event for event in unasked[:-1])
        assert [event["usage"] for event in asked[:-1] if "usage" in event] == [relayed]
        for events in (unasked, asked):
            assert events[-2]["ragft"]["usage"] == usage and events[-1] == "[DONE]"
        assert metric(url, TOKENS.format(kind="prompt")) == 3 * PROMPT_TOKENS
        assert metric(url, TOKENS.format(kind="completion")) == 9
        buckets = 'ragft_gateway_request_tokens_count{kind="completion",route="finetuned"}'
        assert metric(url, buckets) == 3

        # vLLM's running usage on every chunk: the answer is whole, and counted once.
        continuous = {"messages": USER, "stream": True, "stream_options": {"continuous_usage_stats": True}}
        with httpx.stream("POST", chat, json=continuous, headers=FINETUNED) as response:
            events = sse_events(response)
        text = "".join(c["delta"].get("content", "") for e in events[:-1] for c in e.get("choices", []))
        assert text == "ok ok ok " and events[-2]["ragft"]["usage"] == usage
        assert metric(url, TOKENS.format(kind="completion")) == 12 and metric(url, buckets) == 4

        malformed = httpx.post(chat, json={"messages": USER, "stream": True, "stream_options": True})
        assert malformed.status_code == 422 and malformed.json()["error"]["param"] == "stream_options"
