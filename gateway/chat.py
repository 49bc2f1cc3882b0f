"""One chat request on its route: retrieve (rag, hybrid, auto) with the fallbacks the settings
allow, build the prompt, generate, and return the whole completion or its stream."""

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi.responses import Response

from gateway.access import Access
from gateway.contract import AUTO, COLLECTION_HEADER, DEGRADED_HEADER, EXPERIMENT_HEADER, ROUTE_HEADER, Route
from gateway.deps import Call
from gateway.evidence import evidence
from gateway.grounding import verdict
from gateway.limits import check_limits
from gateway.metrics import CHAT_REQUESTS, DEGRADED, Timing, count_tokens
from gateway.plan import Plan
from gateway.prompt import grounded_messages, search_query
from gateway.record import AnswerRecord, answer_id
from gateway.runtime import COMPLETIONS, Gateway, adapter_named
from gateway.schemas import ChatCompletion, ChatRequest
from gateway.stream import EventStream, Streamed, Streaming, stream
from ragft.errors import InvalidRequest, NotFound, RagftError, UpstreamFailed, UpstreamTimeout, UpstreamUnavailable
from ragft.logging import get_logger
from ragft.web import FastJSONResponse
from services.retrieval.schemas import SearchResponse

log = get_logger(__name__)
NOTHING = SearchResponse(hits=[])  # what a route that does not search found


@dataclass
class Completed:
    """A whole answer: vLLM's completion with the `ragft` object, and how it was made."""

    completion: dict[str, Any]
    plan: Plan
    timing: Timing
    usage: dict[str, int]  # vLLM's prompt and completion token counts


async def chat(request: ChatRequest, plan: Plan, call: Call) -> Response:
    await call.check_budgets()
    answered = await recorded_answer(request, plan, call, answer_id())
    headers = _headers(answered.plan, answered.timing)
    if isinstance(answered, Streamed):
        return EventStream(answered.events, answered.held, headers)
    return FastJSONResponse(answered.completion, headers=headers)


async def recorded_answer(request: ChatRequest, plan: Plan, call: Call, recorded_as: str) -> Completed | Streamed:
    """`answer`, and its record when the gateway has a store: a whole answer's or a refusal's
    here, a stream's as it goes."""
    store = call.gateway.store
    record = AnswerRecord(store, call.tenant, recorded_as, call.caller.budgets) if store else None
    try:
        answered = await answer(request, plan, call.caller, call.gateway, call.deadline, record)
    except RagftError as exc:
        if record:
            await record.answered(plan, exc.type, {})
        raise
    if record and isinstance(answered, Completed):
        await record.answered(answered.plan, "ok", answered.usage)
    return answered


async def answer(
    request: ChatRequest,
    plan: Plan,
    access: Access,
    gateway: Gateway,
    deadline: float,
    record: AnswerRecord | None,
) -> Completed | Streamed:
    """One chat request on its route: the whole completion, or the stream once its first token came."""
    settings = gateway.settings
    check_limits(request, settings)
    timing = Timing(plan.asked)
    ttft_at = min(deadline, asyncio.get_running_loop().time() + settings.ttft_s)
    held = AsyncExitStack()  # the admission slot, then the upstream response
    try:
        if plan.collection is not None:
            access.check_read(plan.collection, param=COLLECTION_HEADER)
        held.enter_context(gateway.admission.slot())
        query = search_query(request.messages, settings.max_query_chars)  # the search's, and the evidence's
        plan, found = await _retrieve(query, plan, gateway, timing, deadline)
        budget = settings.rag_evidence_chars if plan.route is Route.RAG else settings.hybrid_evidence_chars
        given = evidence(found, query, budget)
        sources = given.passages
        messages = grounded_messages(request.messages, sources) if plan.route.retrieves else request.messages
        body = request.upstream_body(plan.model, messages, default_max_tokens=settings.max_tokens_limit)
        if plan.route is Route.RAG:
            body.setdefault("frequency_penalty", settings.rag_frequency_penalty)
        find = partial(_holding, gateway, plan.collection, deadline)
        grounded = partial(
            verdict,
            plan.route.value,
            plan.grounding,
            sources=sources,
            messages=request.messages,
            find=find,
            domains=found.allowed_domains,
            coverage=(given.coverage, settings.min_evidence_coverage),
        )
        if request.stream:
            if record and record.budgets:  # a stream cut before its usage chunk is charged what vLLM reported by then
                body["stream_options"]["continuous_usage_stats"] = True
            deadlines = (ttft_at, deadline)
            streaming = Streaming(gateway, timing, deadlines, held.pop_all(), request.wants_usage, record)
            if plan.route.retrieves:
                streaming.check = grounded
                streaming.abstention = settings.abstention if plan.grounding == "abstain" else None
            return await stream(body, plan, sources, streaming)
        started = time.perf_counter()
        with adapter_named(plan.adapter):
            reply = await gateway.generation.json("POST", COMPLETIONS, ChatCompletion, deadline=deadline, body=body)
        timing.record("generate", started)
        timing.record("total", timing.started)
    except RagftError as exc:
        CHAT_REQUESTS.labels(plan.asked, exc.type).inc()
        raise
    finally:
        await held.aclose()
    CHAT_REQUESTS.labels(plan.asked, "ok").inc()
    completion = reply.model_dump(mode="json")
    usage = count_tokens(plan.route, completion.get("usage"))
    completion["ragft"] = plan.ragft(sources)
    if plan.route.retrieves:
        message = completion["choices"][0]["message"]
        grounding = completion["ragft"]["grounding"] = await grounded(answer=message.get("content") or "")
        if grounding["abstained"]:
            message["content"] = settings.abstention
    return Completed(completion, plan, timing, usage)


async def _retrieve(
    query: str, plan: Plan, gateway: Gateway, timing: Timing, deadline: float
) -> tuple[Plan, SearchResponse]:
    """The plan that will run, and what its search found. auto chooses its route from the search; hybrid
    goes on without sources when retrieval is down and the degradation policy says so, and auto
    always does."""
    if plan.collection is None:
        timing.ms["retrieve"] = 0.0  # in the header, so every route reports the same stages
        return plan, NOTHING
    if not query:
        raise InvalidRequest(
            f"the {plan.asked} route searches with the user's message, and no user message has text",
            param="messages",
        )
    started = time.perf_counter()
    try:
        found = await gateway.search(plan.collection, query, deadline=deadline, keyword_score=plan.asked == AUTO)
    except NotFound as exc:
        if plan.asked != AUTO:
            raise
        timing.record("retrieve", started)
        return plan.finetuned(exc.message), NOTHING
    except (UpstreamUnavailable, UpstreamFailed, UpstreamTimeout) as exc:
        fails = plan.route is Route.RAG or gateway.settings.hybrid_without_retrieval == "fail"
        if plan.asked != AUTO and fails:
            raise
        DEGRADED.labels(plan.asked, "retrieval").inc()
        log.warning("answering without retrieval", route=plan.asked, error=exc.message)
        timing.record("retrieve", started)
        return plan.without_retrieval(exc), NOTHING
    timing.record("retrieve", started)
    if plan.asked == AUTO:
        plan = plan.chosen(found, gateway.settings.auto_min_keyword_score)
        if plan.route is Route.FINETUNED:
            return plan, NOTHING
    return plan, found


async def _holding(gateway: Gateway, collection: str | None, deadline: float, text: str) -> list[str]:
    """The passages of `collection` that hold `text` (a link or an address) word for word, by a
    keyword search; none when the search fails: the grounding check then calls it unsupported."""
    if collection is None:
        return []
    try:
        found = await gateway.search(collection, text, deadline=deadline, mode="keyword")
    except RagftError as exc:
        log.warning("grounding lookup failed", collection=collection, error=exc.message)
        return []
    return [hit.text for hit in found.hits if text.lower() in hit.text.lower()]


def _headers(plan: Plan, timing: Timing) -> dict[str, str]:
    headers = {ROUTE_HEADER: plan.route.value, "Server-Timing": timing.header()}
    if plan.degraded:
        headers[DEGRADED_HEADER] = plan.degraded["component"]
    if plan.arm:
        headers[EXPERIMENT_HEADER] = plan.arm.header()
    return headers
