"""Token accounting: vLLM's usage, per route, in the gateway's metrics and the stream's last
ragft event. The gateway runs in this process; vLLM is the scripted stand-in, whose usage is known
in advance (a prompt token per character of the messages' JSON); the real vLLM's counts are
checked in test_routes."""

import json

from tests.gateway.scripted_vllm import Answer, scripted_vllm
from tests.utils.gateway import InProcessStarter, sse_events
from tests.utils.metrics import metric

FINETUNED = {"X-Ragft-Route": "finetuned"}
USER = [{"role": "user", "content": "How do I reset my password?"}]
PROMPT_TOKENS = len(json.dumps(USER))
TOKENS = 'ragft_gateway_tokens_total{{kind="{kind}",route="finetuned"}}'


def test_tokens_are_counted_per_route_and_the_usage_chunk_reaches_only_clients_that_asked(
    start_gateway_in_process: InProcessStarter,
) -> None:
    with (
        scripted_vllm(Answer(tokens=3)) as vllm,
        start_gateway_in_process(RAGFT_GENERATION_URL=vllm.url) as gateway,
    ):
        chat = "/v1/chat/completions"
        plain = gateway.post(chat, json={"messages": USER}, headers=FINETUNED).json()
        relayed = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3, "total_tokens": PROMPT_TOKENS + 3}
        assert plain["usage"] == relayed
        with gateway.stream("POST", chat, json={"messages": USER, "stream": True}, headers=FINETUNED) as response:
            unasked = sse_events(response)
        asked_body = {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
        with gateway.stream("POST", chat, json=asked_body, headers=FINETUNED) as response:
            asked = sse_events(response)

        assert all(body["stream_options"] == {"include_usage": True} for body in vllm.bodies if body.get("stream"))
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 3}
        assert not any("usage" in event for event in unasked[:-1])
        assert [event["usage"] for event in asked[:-1] if "usage" in event] == [relayed]
        for events in (unasked, asked):
            assert events[-2]["ragft"]["usage"] == usage and events[-1] == "[DONE]"
        assert metric(gateway, TOKENS.format(kind="prompt")) == 3 * PROMPT_TOKENS
        assert metric(gateway, TOKENS.format(kind="completion")) == 9
        buckets = 'ragft_gateway_request_tokens_count{kind="completion",route="finetuned"}'
        assert metric(gateway, buckets) == 3

        # vLLM's running usage on every chunk: the answer is whole, and counted once.
        continuous = {"messages": USER, "stream": True, "stream_options": {"continuous_usage_stats": True}}
        with gateway.stream("POST", chat, json=continuous, headers=FINETUNED) as response:
            events = sse_events(response)
        text = "".join(c["delta"].get("content", "") for e in events[:-1] for c in e.get("choices", []))
        assert text == "ok ok ok " and events[-2]["ragft"]["usage"] == usage
        assert metric(gateway, TOKENS.format(kind="completion")) == 12 and metric(gateway, buckets) == 4

        malformed = gateway.post(chat, json={"messages": USER, "stream": True, "stream_options": True})
        assert malformed.status_code == 422 and malformed.json()["error"]["param"] == "stream_options"
