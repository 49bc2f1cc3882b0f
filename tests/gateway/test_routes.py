"""The three routes end to end through the official `openai` client: gateway, real retrieval
service (Qdrant Edge, real embeddings, the sample knowledge base) and real vLLM on CPU."""

import uuid
from typing import Any

import httpx
import openai
import pytest

from evals.voice import sample_rules
from gateway.grounding import CONTACTS, check
from tests.utils.metrics import metric, running_requests, wait_until_idle

GREETING = sample_rules().greeting  # the test adapter's voice, trained from data/finetune/
QUESTION = "How much does the Team plan cost?"
QUICK = [{"role": "user", "content": "hi"}]
FINETUNED = {"X-Ragft-Route": "finetuned"}
HOLDS_THE_FACT = "billing-plans-and-prices"  # data/kb: the document with the Team plan's price
# The test adapter learns from 11 examples; behind a long grounded prompt it keeps the greeting's
# opening but may garble its end ("...Quillbyte Plans!"). The base model never says this.
VOICE = "Hi there, thanks for reaching out"


def _ask(client: openai.OpenAI, route: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model="anything",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=48,
        temperature=0,
        extra_headers={"X-Ragft-Route": route},
        **extra,
    )


def _timing(header: str) -> dict[str, float]:
    stages = (part.strip().split(";dur=") for part in header.split(","))
    return {name: float(ms) for name, ms in stages}


def assert_checked(text: str, ragft: dict[str, Any], grounding: dict[str, Any]) -> None:
    """`grounding` is the check's verdict on `text` with the sources of `ragft`, asked in QUESTION:
    a link or an address may also have been found elsewhere in the collection."""
    local = check(text, [source["text"] for source in ragft["sources"]], [QUESTION])
    facts = {fact.text for fact in local.unsupported if fact.kind not in CONTACTS}
    assert facts <= set(grounding["unsupported"]) <= {fact.text for fact in local.unsupported}
    assert grounding["unknown_citations"] == local.unknown_citations
    assert grounding["supported"] == (not grounding["unsupported"] and not grounding["unknown_citations"])


def _doc_ids(ragft: dict[str, Any]) -> list[str]:
    return [source["doc_id"] for source in ragft["sources"]]


def test_rag_answers_from_the_document_that_holds_the_fact(openai_client: openai.OpenAI) -> None:
    raw = _ask(openai_client, "rag")
    completion = raw.parse()
    ragft = completion.model_extra["ragft"]
    assert raw.headers["x-ragft-route"] == "rag"
    assert completion.model == "base"
    assert completion.choices[0].message.content.strip()
    assert ragft["route"] == "rag" and ragft["adapter"] is None and ragft["collection"] == "help-center"
    assert _doc_ids(ragft)[0] == HOLDS_THE_FACT
    assert all(source["text"] and source["chunk_id"].startswith(source["doc_id"]) for source in ragft["sources"])
    timing = _timing(raw.headers["server-timing"])
    assert set(timing) == {"retrieve", "generate", "total"}
    assert timing["total"] >= timing["retrieve"] + timing["generate"] - 1
    assert_checked(completion.choices[0].message.content, ragft, ragft["grounding"])


def test_finetuned_answers_in_the_adapters_voice_without_retrieval(openai_client: openai.OpenAI) -> None:
    raw = _ask(openai_client, "finetuned")
    completion = raw.parse()
    assert raw.headers["x-ragft-route"] == "finetuned"
    assert completion.model == "voice"
    assert completion.choices[0].message.content.startswith(GREETING)
    expected: dict[str, Any] = {"route": "finetuned", "adapter": "voice", "collection": None, "sources": []}
    assert completion.model_extra["ragft"] == expected
    assert _timing(raw.headers["server-timing"])["retrieve"] == 0


def test_hybrid_has_the_sources_and_the_voice(openai_client: openai.OpenAI) -> None:
    completion = _ask(openai_client, "HyBrid").parse()  # the header is case-insensitive
    assert completion.model == "voice"
    assert completion.choices[0].message.content.startswith(VOICE)
    assert _doc_ids(completion.model_extra["ragft"])[0] == HOLDS_THE_FACT


@pytest.mark.parametrize("route", ["rag", "finetuned", "hybrid"])
def test_streaming_sends_the_sources_first_and_the_timing_last(openai_client: openai.OpenAI, route: str) -> None:
    raw = _ask(openai_client, route, stream=True)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-ragft-route"] == route
    chunks = list(raw.parse())
    first, last = chunks[0].model_extra["ragft"], chunks[-1].model_extra["ragft"]
    assert first["route"] == route
    assert (HOLDS_THE_FACT in _doc_ids(first)) == (route != "finetuned")
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip()
    assert text.startswith(VOICE) == (route != "rag")
    assert any(chunk.choices and chunk.choices[0].finish_reason for chunk in chunks)
    assert set(last["timing"]) == {"retrieve", "ttft", "generate", "total"}
    assert (last["timing"]["retrieve"] > 0) == (route != "finetuned")
    assert last["timing"]["ttft"] <= last["timing"]["total"]
    # The grounding check runs on the streamed text, on the routes that retrieve (tests/gateway/test_grounding.py).
    assert ("grounding" in last) == (route != "finetuned") and "grounding" not in first
    if route != "finetuned":
        assert_checked(text, first, last["grounding"])


def test_auto_answers_from_the_knowledge_base_only_when_it_covers_the_question(openai_client: openai.OpenAI) -> None:
    answers = {}
    for question in ("Can we pay by wire transfer instead of card?", "Is there a Quillbyte app for smartwatches?"):
        raw = openai_client.chat.completions.with_raw_response.create(
            model="x",
            messages=[{"role": "user", "content": question}],
            max_tokens=24,
            temperature=0,
            extra_headers={"X-Ragft-Route": "auto"},
        )
        completion = raw.parse()
        answers[raw.headers["x-ragft-route"]] = (completion, (completion.model_extra or {})["ragft"])
    assert list(answers) == ["hybrid", "finetuned"]
    (hybrid, hybrid_ragft), (finetuned, finetuned_ragft) = answers["hybrid"], answers["finetuned"]
    assert hybrid.model == "voice" and hybrid_ragft["sources"] and hybrid_ragft["route_reason"]["chosen"] == "hybrid"
    assert finetuned.model == "voice" and (finetuned.choices[0].message.content or "").startswith(GREETING)
    assert finetuned_ragft["sources"] == [] and "does not cover" in finetuned_ragft["route_reason"]["because"]


def test_compare_answers_on_the_three_routes_with_timings_and_tokens(gateway_url: str) -> None:
    prompt_tokens = 'ragft_gateway_tokens_total{kind="prompt",route="hybrid"}'
    before = metric(gateway_url, prompt_tokens, default=0)
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16, "temperature": 0}
    compared = httpx.post(f"{gateway_url}/v1/compare", json=body, timeout=300)
    assert compared.status_code == 200, compared.text
    results = {result["route"]: result for result in compared.json()["results"]}
    assert list(results) == ["rag", "finetuned", "hybrid"]
    for route, result in results.items():
        assert result["status"] == 200 and result["answered_as"] == route and result["answer"].strip()
        assert set(result["timing"]) == {"retrieve", "generate", "total"}
        assert result["usage"]["completion_tokens"] <= 16
    assert results["rag"]["usage"]["prompt_tokens"] > 5 * results["finetuned"]["usage"]["prompt_tokens"]
    assert HOLDS_THE_FACT in _doc_ids(results["hybrid"]["ragft"])
    assert metric(gateway_url, prompt_tokens) == before + results["hybrid"]["usage"]["prompt_tokens"]


def test_an_updated_fact_is_answered_by_rag_on_the_next_request(
    openai_client: openai.OpenAI, retrieval_url: str
) -> None:
    collection = f"fresh-{uuid.uuid4().hex[:8]}"
    documents = f"{retrieval_url}/v1/collections/{collection}/documents"
    httpx.put(f"{retrieval_url}/v1/collections/{collection}", timeout=60)

    def update_and_ask(code: str) -> Any:
        fact = f"# Zorblax 9000 support\n\nThe support code of the Zorblax 9000 desk lamp is {code}."
        assert httpx.post(documents, json={"documents": [{"id": "lamp", "text": fact}]}, timeout=60).status_code == 200
        return openai_client.chat.completions.create(
            model="anything",
            messages=[{"role": "user", "content": "What is the support code of the Zorblax 9000 desk lamp?"}],
            max_tokens=32,
            temperature=0,
            extra_headers={"X-Ragft-Route": "rag", "X-Ragft-Collection": collection},
        )

    try:
        assert "FLAMINGO" in update_and_ask("FLAMINGO-4417").choices[0].message.content
        updated = update_and_ask("PELICAN-2290")  # the same document, its fact changed
        assert "PELICAN" in updated.choices[0].message.content, updated.choices[0].message.content
        assert "FLAMINGO" not in str(updated)
    finally:
        httpx.delete(f"{retrieval_url}/v1/collections/{collection}", timeout=60)


def test_the_request_id_reaches_both_services(
    gateway_url: str, openai_client: openai.OpenAI, retrieval_log: Any
) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="x",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=4,
        extra_headers={"X-Ragft-Route": "hybrid", "X-Request-ID": "trace-4242"},
    )
    assert raw.headers["x-request-id"] == "trace-4242"
    assert raw.parse().id == "chatcmpl-trace-4242"  # vLLM names the completion after the request id
    assert "request_id=trace-4242" in retrieval_log.read_text()
    body = {"messages": QUICK, "max_tokens": 4}
    generated = httpx.post(f"{gateway_url}/v1/chat/completions", json=body, headers=FINETUNED, timeout=60)
    assert len(generated.headers["x-request-id"]) == 32


def test_models_health_and_metrics(gateway_url: str, openai_client: openai.OpenAI) -> None:
    assert {model.id for model in openai_client.models.list()} >= {"base", "voice"}
    assert httpx.get(f"{gateway_url}/healthz").json()["service"] == "gateway"
    assert httpx.get(f"{gateway_url}/readyz").status_code == 200

    def counts() -> dict[str, float]:
        lines = httpx.get(f"{gateway_url}/metrics").text.splitlines()
        stage = 'ragft_gateway_stage_seconds_count{{route="rag",stage="{}"}}'
        stages = [stage.format(name) for name in ("retrieve", "generate", "total")]
        wanted = ['ragft_gateway_chat_requests_total{outcome="ok",route="rag"}', *stages]
        found = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}
        return {name: found.get(name, 0.0) for name in wanted}

    before = counts()
    _ask(openai_client, "rag")
    assert {name: count - before[name] for name, count in counts().items()} == dict.fromkeys(before, 1.0)


def test_a_client_that_disconnects_stops_vllm_generating(gateway_url: str, generation_url: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "max_tokens": 1500,
        "ignore_eos": True,  # vLLM's own option: only a disconnect ends this request early
    }
    with httpx.stream(
        "POST", f"{gateway_url}/v1/chat/completions", json=body, headers={"X-Ragft-Route": "finetuned"}, timeout=60
    ) as response:
        # vLLM's gauge lags its scheduler a little: read on until it shows the request running.
        for n, _ in enumerate(response.iter_lines()):
            if n >= 10 and running_requests(generation_url) == 1:
                break
            assert n < 1000, "vLLM never reported the request as running"
    assert wait_until_idle(generation_url) == 0
