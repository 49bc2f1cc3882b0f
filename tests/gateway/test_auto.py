"""`X-Ragft-Route: auto` against the real retrieval service with the sample knowledge base; vLLM
is the scripted stand-in, to see which model and prompt each choice sends (the real vLLM's
answers on auto are checked in test_routes)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gateway.config import GatewaySettings
from ragft.process import free_port
from tests.gateway.scripted_vllm import ScriptedVllm, scripted_vllm
from tests.utils.gateway import sse_events
from tests.utils.metrics import metric
from tests.utils.processes import Processes

# Best BM25 score per query term in the sample knowledge base: 3.2 and 1.0; the threshold is 1.6.
COVERED = "Can we pay by wire transfer instead of card?"
UNCOVERED = "Is there a Quillbyte app for smartwatches?"
AUTO = {"X-Ragft-Route": "auto"}
AUTO_OK = 'ragft_gateway_chat_requests_total{outcome="ok",route="auto"}'


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, processes: Processes, retrieval_url: str
) -> Iterator[tuple[str, ScriptedVllm]]:
    settings = {"RAGFT_RETRIEVAL_URL": retrieval_url, "RAGFT_DEFAULT_ADAPTER": "voice"}
    with (
        scripted_vllm() as vllm,
        processes.gateway(tmp_path_factory.mktemp("auto"), None, RAGFT_GENERATION_URL=vllm.url, **settings) as (url, _),
    ):
        yield url, vllm


def _ask(url: str, question: str, headers: dict[str, str]) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": question}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def _prompt(vllm: ScriptedVllm) -> str:
    return "\n".join(message["content"] for message in vllm.bodies[-1]["messages"])


def test_a_covered_question_goes_to_hybrid_with_the_search_that_decided(stack: tuple[str, ScriptedVllm]) -> None:
    url, vllm = stack
    answered = _ask(url, COVERED, AUTO)
    assert answered.status_code == 200, answered.text
    ragft = answered.json()["ragft"]
    reason = ragft["route_reason"]
    assert answered.headers["x-ragft-route"] == "hybrid", reason
    assert ragft["route"] == "hybrid" and ragft["adapter"] == "voice"  # the default adapter
    assert reason["chosen"] == "hybrid" and reason["keyword_score"] >= reason["min_keyword_score"] == 1.6
    assert reason["top_score"] == ragft["sources"][0]["score"] and reason["covered_route"] == "hybrid"
    assert "billing-invoices-and-payment-methods" in [source["doc_id"] for source in ragft["sources"]]
    assert vllm.bodies[-1]["model"] == "voice"
    assert all(source["text"] in _prompt(vllm) for source in ragft["sources"])  # the one search fed the prompt
    assert "frequency_penalty" not in vllm.bodies[-1]  # only rag, the base model, gets the default


def test_a_covered_question_goes_to_rag_when_set_so_unless_an_adapter_is_named(
    tmp_path: Path, processes: Processes, retrieval_url: str
) -> None:
    settings = {"RAGFT_RETRIEVAL_URL": retrieval_url, "RAGFT_DEFAULT_ADAPTER": "voice"}
    with (
        scripted_vllm() as vllm,
        processes.gateway(
            tmp_path, None, RAGFT_GENERATION_URL=vllm.url, RAGFT_AUTO_COVERED_ROUTE="rag", **settings
        ) as (url, _),
    ):
        ragft = _ask(url, COVERED, AUTO).json()["ragft"]
        assert ragft["route"] == "rag" and ragft["adapter"] is None
        assert ragft["route_reason"]["covered_route"] == "rag" and vllm.bodies[-1]["model"] == "base"
        assert vllm.bodies[-1]["frequency_penalty"] == GatewaySettings().rag_frequency_penalty > 0  # rag's default

        named = _ask(url, COVERED, AUTO | {"X-Ragft-Adapter": "voice"}).json()["ragft"]
        assert named["route"] == "hybrid" and vllm.bodies[-1]["model"] == "voice" and named["sources"]


def test_a_frequency_penalty_the_request_sets_is_kept(stack: tuple[str, ScriptedVllm]) -> None:
    url, vllm = stack
    body = {"messages": [{"role": "user", "content": COVERED}], "frequency_penalty": 0}
    answered = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"X-Ragft-Route": "rag"}, timeout=30)
    assert answered.status_code == 200, answered.text
    assert vllm.bodies[-1]["frequency_penalty"] == 0


def test_an_uncovered_question_goes_to_finetuned_and_says_why(stack: tuple[str, ScriptedVllm]) -> None:
    url, vllm = stack
    answered = _ask(url, UNCOVERED, AUTO)
    ragft = answered.json()["ragft"]
    reason = ragft["route_reason"]
    assert answered.headers["x-ragft-route"] == "finetuned" and ragft["route"] == "finetuned"
    assert reason["chosen"] == "finetuned" and reason["keyword_score"] < reason["min_keyword_score"]
    assert "does not cover" in reason["because"]
    assert ragft["sources"] == [] and ragft["adapter"] == "voice"
    assert vllm.bodies[-1]["model"] == "voice" and _prompt(vllm) == UNCOVERED  # no passages in the prompt
    assert "retrieve" in answered.headers["server-timing"]


def test_a_missing_or_empty_collection_falls_back_to_finetuned(
    stack: tuple[str, ScriptedVllm], retrieval_url: str
) -> None:
    url, _ = stack
    empty = f"empty-{free_port()}"
    assert httpx.put(f"{retrieval_url}/v1/collections/{empty}").status_code == 201
    try:
        reasons = {}
        for collection in (empty, "no-such-collection"):
            answered = _ask(url, COVERED, AUTO | {"X-Ragft-Collection": collection})
            assert answered.status_code == 200, answered.text
            assert answered.json()["ragft"]["route"] == "finetuned"
            reasons[collection] = answered.json()["ragft"]["route_reason"]["because"]
    finally:
        httpx.delete(f"{retrieval_url}/v1/collections/{empty}")
    assert "has no passages" in reasons[empty]
    assert "does not exist" in reasons["no-such-collection"]


def test_a_streamed_auto_answer_carries_the_reason_first_and_counts_as_auto(stack: tuple[str, ScriptedVllm]) -> None:
    url, _ = stack
    before = metric(url, AUTO_OK, default=0)
    body: dict[str, Any] = {"messages": [{"role": "user", "content": UNCOVERED}], "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=AUTO, timeout=30) as response:
        assert response.headers["x-ragft-route"] == "finetuned"
        events = sse_events(response)
    assert events[0]["ragft"]["route_reason"]["chosen"] == "finetuned" and events[-1] == "[DONE]"
    assert metric(url, AUTO_OK, default=0) == before + 1


def test_auto_can_be_the_default_route_and_a_wrong_default_stops_the_start(
    processes: Processes, tmp_path: Path, retrieval_url: str
) -> None:
    with (
        scripted_vllm() as vllm,
        processes.gateway(
            tmp_path, None, RAGFT_GENERATION_URL=vllm.url, RAGFT_RETRIEVAL_URL=retrieval_url, RAGFT_DEFAULT_ROUTE="Auto"
        ) as (url, _),
    ):
        answered = _ask(url, UNCOVERED, {})  # no X-Ragft-Route
    assert answered.json()["ragft"]["route_reason"]["chosen"] == "finetuned"
    with pytest.raises(ValidationError, match="'magic' is not a route; use one of: rag, finetuned, hybrid, auto"):
        GatewaySettings(default_route="magic")


def test_auto_answers_as_finetuned_when_retrieval_is_down(processes: Processes, tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with (
        scripted_vllm() as vllm,
        processes.gateway(tmp_path, None, RAGFT_GENERATION_URL=vllm.url, RAGFT_RETRIEVAL_URL=nowhere) as (url, _),
    ):
        answered = _ask(url, COVERED, AUTO)
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-ragft-degraded"] == "retrieval"
    ragft = answered.json()["ragft"]
    assert ragft["route"] == "finetuned" and ragft["degraded"]["requested_route"] == "auto"
    assert ragft["route_reason"]["because"].startswith("retrieval failed")
