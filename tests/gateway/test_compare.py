"""`POST /v1/compare` with the scripted vLLM and no retrieval service: finetuned answers while
rag and hybrid fail, each in its own result, plain and streamed. The three answers from the real
stack are checked in test_routes. The gateway runs in this process."""

import json
from contextlib import AbstractContextManager

import httpx

from ragft.process import free_port
from tests.gateway.scripted_vllm import Answer, scripted_vllm
from tests.utils.gateway import InProcessStarter, sse_events

USER = [{"role": "user", "content": "How do I reset my password?"}]


def _gateway(start: InProcessStarter, vllm_url: str) -> AbstractContextManager[httpx.Client]:
    nowhere = f"http://127.0.0.1:{free_port()}"
    return start(RAGFT_GENERATION_URL=vllm_url, RAGFT_RETRIEVAL_URL=nowhere)


def test_each_route_gets_its_answer_or_its_own_error(start_gateway_in_process: InProcessStarter) -> None:
    with scripted_vllm(Answer(tokens=3)) as vllm, _gateway(start_gateway_in_process, vllm.url) as gateway:
        compared = gateway.post("/v1/compare", json={"messages": USER})
        assert compared.status_code == 200, compared.text
        results = {result["route"]: result for result in compared.json()["results"]}
        assert list(results) == ["rag", "finetuned", "hybrid"]
        finetuned = results["finetuned"]
        assert finetuned["status"] == 200 and finetuned["answer"] == "ok ok ok "
        assert finetuned["usage"] == {"prompt_tokens": len(json.dumps(USER)), "completion_tokens": 3}
        assert set(finetuned["timing"]) == {"retrieve", "generate", "total"}
        assert finetuned["ragft"]["adapter"] == "voice" and finetuned["ragft"]["sources"] == []
        for route in ("rag", "hybrid"):
            assert results[route]["status"] == 503
            assert "retrieval service is unreachable" in results[route]["error"]["message"]
        assert [body["model"] for body in vllm.bodies] == ["voice"]  # rag and hybrid never generated

        only = gateway.post("/v1/compare", json={"messages": USER, "routes": ["FINETUNED"]})
        assert [result["route"] for result in only.json()["results"]] == ["finetuned"]


def test_a_streamed_comparison_tags_every_event_with_its_route(start_gateway_in_process: InProcessStarter) -> None:
    with scripted_vllm(Answer(tokens=4)) as vllm, _gateway(start_gateway_in_process, vllm.url) as gateway:
        body = {"messages": USER, "stream": True, "routes": ["rag", "finetuned"]}
        with gateway.stream("POST", "/v1/compare", json=body) as response:
            events = sse_events(response)
    assert events[-1] == "[DONE]"
    by_route: dict[str, list[dict]] = {"rag": [], "finetuned": []}
    for event in events[:-1]:
        by_route[event["route"]].append(event)
    assert [list(event) for event in by_route["rag"]] == [["route", "error"], ["route", "done"]]
    finetuned = by_route["finetuned"]
    assert finetuned[0]["answered_as"] == "finetuned" and set(finetuned[0]["timing"]) == {"retrieve", "ttft"}
    assert finetuned[-1] == {"route": "finetuned", "done": True}
    text = "".join(c["delta"].get("content", "") for e in finetuned[1:-1] for c in e["chunk"]["choices"])
    assert text == "ok " * 4
    assert finetuned[-2]["chunk"]["ragft"]["usage"]["completion_tokens"] == 4


def test_unknown_or_repeated_routes_are_refused_with_the_valid_ones(start_gateway_in_process: InProcessStarter) -> None:
    with scripted_vllm() as vllm, _gateway(start_gateway_in_process, vllm.url) as gateway:
        unknown = gateway.post("/v1/compare", json={"messages": USER, "routes": ["rag", "magic"]})
        repeated = gateway.post("/v1/compare", json={"messages": USER, "routes": ["rag", "RAG"]})
        empty = gateway.post("/v1/compare", json={"messages": USER, "routes": []})
        too_long = gateway.post("/v1/compare", json={"messages": USER, "max_tokens": 10**6})
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "routes"
    assert "rag, finetuned, hybrid, auto" in unknown.json()["error"]["message"]
    assert repeated.status_code == 400 and "twice" in repeated.json()["error"]["message"]
    assert empty.status_code == 422
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"  # once, not per route
    assert vllm.calls == 0
