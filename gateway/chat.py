"""One chat request on its route: retrieve (rag, hybrid), build the prompt, generate, and
return the completion or relay vLLM's events as they arrive."""

import asyncio
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Counter, Histogram
from starlette.types import Receive, Scope, Send

from gateway.access import Access
from gateway.budgets import Budget
from gateway.config import GatewaySettings
from gateway.contract import AUTO, COLLECTION_HEADER, DEGRADED_HEADER, EXPERIMENT_HEADER, ROUTE_HEADER, Route
from gateway.deps import Call
from gateway.plan import Plan
from gateway.prompt import grounded_messages, search_query
from gateway.runtime import Gateway, adapter_not_found
from gateway.schemas import ChatCompletion, ChatRequest
from gateway.store import Charge, Store
from ragft import sse
from ragft.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RagftError,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body,
)
from ragft.logging import get_logger
from ragft.web import FastJSONResponse
from services.retrieval.schemas import Hit

CHAT_REQUESTS = Counter(
    "ragft_gateway_chat_requests_total",
    "Chat completions by route and outcome (ok, or the error type).",
    ["route", "outcome"],
)
DEGRADED = Counter(
    "ragft_gateway_degraded_total",
    "Requests answered on a lesser route than asked, by the route asked and the part that was down.",
    ["route", "component"],
)
STAGE_SECONDS = Histogram(
    "ragft_gateway_stage_seconds",
    "Time per stage of a chat completion: retrieve, generate, ttft (streaming) and total.",
    ["route", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80),
)

TOKENS = Counter(
    "ragft_gateway_tokens_total",
    "Prompt and completion tokens by the route that answered, from vLLM's usage.",
    ["route", "kind"],
)
REQUEST_TOKENS = Histogram(
    "ragft_gateway_request_tokens",
    "Prompt and completion tokens per answered request, by route.",
    ["route", "kind"],
    buckets=(8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)

log = get_logger(__name__)

COMPLETIONS = "/v1/chat/completions"
# How long a stream's end may take to close the upstream and write its record, whatever cancels it.
FINAL_WRITES_S = 10
USAGE_CHUNK = re.compile(rb'"usage":\s*\{')
# vLLM's usage chunk has no choices; with continuous_usage_stats every other chunk has a usage too.
NO_CHOICES = re.compile(rb'"choices":\s*\[\s*\]')


@dataclass
class Timing:
    """Stage durations in ms, for the Server-Timing header, the stream's last event and the metrics."""

    route: str  # the route asked for, so auto's stages are its own
    started: float = field(default_factory=time.perf_counter)
    ms: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, since: float) -> None:
        seconds = time.perf_counter() - since
        self.ms[stage] = round(seconds * 1000, 1)
        STAGE_SECONDS.labels(self.route, stage).observe(seconds)

    def header(self) -> str:
        return ", ".join(f"{stage};dur={ms}" for stage, ms in self.ms.items())


@dataclass
class Completed:
    """A whole answer: vLLM's completion with the `ragft` object, and how it was made."""

    completion: dict[str, Any]
    plan: Plan
    timing: Timing
    usage: dict[str, int]  # vLLM's prompt and completion token counts


@dataclass
class Streamed:
    """An answer whose first token has come: its events, what they hold, and how it is made."""

    events: AsyncGenerator[bytes]
    held: AsyncExitStack
    plan: Plan
    timing: Timing

    @property
    def headers(self) -> dict[str, str]:
        return _headers(self.plan, self.timing)


@dataclass
class AnswerRecord:
    """The store's record of one answer (gateway/store.py), written before the answer goes out,
    so feedback on it always finds it. A store that fails costs the record, never the answer."""

    store: Store
    tenant: str
    request_id: str
    budgets: tuple[Budget, ...]  # the key's, charged with the answer's tokens in the same write
    started: float = field(default_factory=time.perf_counter)

    async def opened(self, plan: Plan) -> None:
        await self._kept(self.store.opened(self.tenant, self.request_id, _asked(plan)))

    async def answered(self, plan: Plan, outcome: str, usage: dict[str, int]) -> None:
        """A whole answer, or a refusal, in one write."""
        ended = _asked(plan) | self._ended(outcome, usage)
        await self._kept(self.store.opened(self.tenant, self.request_id, ended, self._charge(usage)))

    async def finished(self, outcome: str, usage: dict[str, int], ttft_ms: float | None, spent: dict[str, int]) -> None:
        """A stream's end: its usage chunk's counts, if it came, and what it `spent` for the budgets."""
        ended = self._ended(outcome, usage) | ({"ttft_ms": ttft_ms} if ttft_ms is not None else {})
        await self._kept(self.store.finished(self.tenant, self.request_id, ended, self._charge(spent)))

    def _charge(self, usage: dict[str, int]) -> Charge | None:
        return Charge(self.budgets, sum(usage.values())) if self.budgets else None

    def _ended(self, outcome: str, usage: dict[str, int]) -> dict[str, str | float]:
        return {"outcome": outcome, "latency_ms": round((time.perf_counter() - self.started) * 1000, 1), **usage}

    @staticmethod
    async def _kept(write: Awaitable[None]) -> None:
        try:
            await write
        except UpstreamUnavailable as exc:
            log.warning("the answer's record was not kept", error=exc.message)


def _asked(plan: Plan) -> dict[str, str | float]:
    arm = plan.arm
    return {
        "experiment": arm.experiment if arm else "",
        "arm": arm.route if arm else plan.asked,
        "user": arm.user if arm else "",
        "route": plan.route.value,
    }


def answer_id(suffix: str = "") -> str:
    """The id an answer is recorded under: the request id, and the route's within /v1/compare."""
    request_id = structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex
    return f"{request_id}-{suffix}" if suffix else str(request_id)


async def chat(request: ChatRequest, plan: Plan, call: Call) -> Response:
    await call.check_budgets()
    answered = await recorded_answer(request, plan, call, answer_id())
    if isinstance(answered, Streamed):
        return EventStream(answered.events, answered.held, answered.headers)
    return FastJSONResponse(answered.completion, headers=_headers(answered.plan, answered.timing))


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
        plan, sources = await _retrieve(request, plan, gateway, timing, deadline)
        messages = grounded_messages(request.messages, sources) if plan.route.retrieves else request.messages
        body = request.upstream_body(plan.model, messages, default_max_tokens=settings.max_tokens_limit)
        if plan.route is Route.RAG:
            body.setdefault("frequency_penalty", settings.rag_frequency_penalty)
        if request.stream:
            if record and record.budgets:  # a stream cut before its usage chunk is charged what vLLM reported by then
                body["stream_options"]["continuous_usage_stats"] = True
            deadlines = (ttft_at, deadline)
            streaming = _Streaming(gateway, timing, deadlines, held.pop_all(), request.wants_usage, record)
            return await _stream(body, plan, sources, streaming)
        started = time.perf_counter()
        with _adapter_named(plan):
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
    return Completed(completion, plan, timing, usage)


def check_limits(request: ChatRequest, settings: GatewaySettings) -> None:
    """The request limits that need the settings; the schema checks the rest."""
    if len(request.messages) > settings.max_messages:
        raise PayloadTooLarge(
            f"{len(request.messages)} messages; the limit is {settings.max_messages}", param="messages"
        )
    for number, message in enumerate(request.messages):
        if len(message.text) > settings.max_message_chars:
            raise PayloadTooLarge(
                f"message {number} has {len(message.text)} characters; the limit is {settings.max_message_chars}",
                param=f"messages.{number}.content",
            )
    for name in ("max_tokens", "max_completion_tokens"):
        asked = getattr(request, name)
        if asked is not None and asked > settings.max_tokens_limit:
            raise InvalidRequest(f"{name} is {asked}; the limit is {settings.max_tokens_limit}", param=name)


async def _retrieve(
    request: ChatRequest, plan: Plan, gateway: Gateway, timing: Timing, deadline: float
) -> tuple[Plan, list[Hit]]:
    """The plan that will run, and its sources. auto chooses its route from the search; hybrid
    goes on without sources when retrieval is down and the degradation policy says so, and auto
    always does."""
    if plan.collection is None:
        timing.ms["retrieve"] = 0.0  # in the header, so every route reports the same stages
        return plan, []
    query = search_query(request.messages, gateway.settings.max_query_chars)
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
        return plan.finetuned(exc.message), []
    except (UpstreamUnavailable, UpstreamFailed, UpstreamTimeout) as exc:
        fails = plan.route is Route.RAG or gateway.settings.hybrid_without_retrieval == "fail"
        if plan.asked != AUTO and fails:
            raise
        DEGRADED.labels(plan.asked, "retrieval").inc()
        log.warning("answering without retrieval", route=plan.asked, error=exc.message)
        timing.record("retrieve", started)
        return plan.without_retrieval(exc), []
    timing.record("retrieve", started)
    if plan.asked == AUTO:
        plan = plan.chosen(found, gateway.settings.auto_min_keyword_score)
        if plan.route is Route.FINETUNED:
            return plan, []
    return plan, found.hits


@contextmanager
def _adapter_named(plan: Plan) -> Iterator[None]:
    """vLLM's 404 for an unknown model, told in the terms of the request's header."""
    try:
        yield
    except NotFound as exc:
        if plan.adapter is None:
            raise
        raise adapter_not_found(plan.adapter) from exc


def _headers(plan: Plan, timing: Timing) -> dict[str, str]:
    headers = {ROUTE_HEADER: plan.route.value, "Server-Timing": timing.header()}
    if plan.degraded:
        headers[DEGRADED_HEADER] = plan.degraded["component"]
    if plan.arm:
        headers[EXPERIMENT_HEADER] = plan.arm.header()
    return headers


@dataclass
class _Streaming:
    """What a stream carries from the request to its last event."""

    gateway: Gateway
    timing: Timing
    deadlines: tuple[float, float]  # the first token's, then the whole request's
    held: AsyncExitStack  # closed when the stream ends, however it ends
    usage_asked: bool
    record: AnswerRecord | None


async def _stream(body: dict[str, Any], plan: Plan, sources: list[Hit], streaming: _Streaming) -> Streamed:
    """Waits for vLLM's first event (by the time-to-first-token limit, then the deadline), so
    every failure up to the first token is an HTTP error; after it, failures are error events."""
    gateway, timing, held = streaming.gateway, streaming.timing, streaming.held
    ttft_at, deadline = streaming.deadlines
    limit = f"the time-to-first-token limit ({gateway.settings.ttft_s:g} s)" if ttft_at < deadline else "the deadline"
    started = time.perf_counter()
    try:
        with _adapter_named(plan):
            response = await held.enter_async_context(
                gateway.generation.open("POST", COMPLETIONS, deadline=ttft_at, body=body, limit=limit)
            )
        if response.content_type != "text/event-stream":  # aiohttp cannot read events from it
            raise UpstreamFailed(f"the generation service answered a stream with {response.content_type!r}")
        async with gateway.generation.failures(ttft_at, limit):
            pending = await _next_event(response)
    except BaseException:
        await held.aclose()
        raise
    timing.record("ttft", timing.started)
    # vLLM names its chunks after the request id too, so the whole stream has one id.
    chunk_id = f"chatcmpl-{structlog.contextvars.get_contextvars().get('request_id', uuid.uuid4().hex)}"
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    first = _chunk(chunk_id, plan.model, [role], plan.ragft(sources))
    if streaming.record:
        await streaming.record.opened(plan)
    relay = _Relay(response, chunk_id, plan, started, streaming)
    return Streamed(relay.events(first, pending), held, plan, timing)


@dataclass
class _Relay:
    response: aiohttp.ClientResponse
    chunk_id: str
    plan: Plan
    generate_started: float
    streaming: _Streaming

    async def events(self, first: bytes, pending: bytes) -> AsyncGenerator[bytes]:
        """Our first event, then vLLM's events one by one as they arrive. The stream ends with
        `[DONE]` only after vLLM's own `[DONE]`; anything else (deadline, broken or cut stream)
        ends with an error event first."""
        streaming, timing = self.streaming, self.streaming.timing
        outcome = "client_closed"
        event = pending
        usage: dict[str, int] = {}
        try:
            yield first
            while event != sse.DONE:
                if (reported := _usage(event)) is not None:
                    usage = count_tokens(self.plan.route, reported)
                if reported is None or streaming.usage_asked:
                    yield event
                try:
                    async with streaming.gateway.generation.failures(streaming.deadlines[1]):
                        event = await _next_event(self.response)
                except RagftError as exc:
                    outcome = exc.type
                    yield sse.encode(error_body(exc.type, exc.message))
                    yield sse.DONE
                    return
            timing.record("generate", self.generate_started)
            timing.record("total", timing.started)
            outcome = "ok"
            yield _chunk(self.chunk_id, self.plan.model, [], {"timing": timing.ms, "usage": usage})
            yield sse.DONE
        finally:
            CHAT_REQUESTS.labels(self.plan.asked, outcome).inc()
            if outcome != "ok":
                self.response.close()  # so vLLM sees the disconnect and stops generating
            # Shielded: a client that leaves cancels the response's task, and with it every await here.
            with anyio.move_on_after(FINAL_WRITES_S, shield=True):
                await streaming.held.aclose()
                if streaming.record:
                    # A stream cut before vLLM's usage chunk is charged the usage its last chunk reported.
                    spent = usage or token_counts(_usage(event, running=True))
                    await streaming.record.finished(outcome, usage, timing.ms.get("ttft"), spent)


async def _next_event(response: aiohttp.ClientResponse) -> bytes:
    try:
        event = await response.content.readuntil(b"\n\n")
    except (ValueError, HttpProcessingError) as exc:  # an event beyond aiohttp's buffer limit
        raise UpstreamFailed(f"the generation service sent an oversized event: {exc}") from exc
    if not event.endswith(b"\n\n"):
        raise UpstreamFailed("the generation service closed the stream before the answer was complete")
    return event


def count_tokens(route: Route, usage: Any) -> dict[str, int]:
    """Records vLLM's usage for the route; returns the prompt and completion counts it held."""
    counted = token_counts(usage)
    for name, tokens in counted.items():
        kind = name.removesuffix("_tokens")
        TOKENS.labels(route.value, kind).inc(tokens)
        REQUEST_TOKENS.labels(route.value, kind).observe(tokens)
    return counted


def token_counts(usage: Any) -> dict[str, int]:
    """The prompt and completion counts of vLLM's `usage`, those it holds."""
    if not isinstance(usage, dict):
        return {}
    return {
        name: tokens for name in ("prompt_tokens", "completion_tokens") if isinstance(tokens := usage.get(name), int)
    }


def _usage(event: bytes, *, running: bool = False) -> Any:
    """The usage of vLLM's usage chunk (no choices, `"usage":{...}`), else None; `running`: the
    usage so far that `continuous_usage_stats` puts on every chunk too. Only events with a usage
    object are parsed, and those with content are relayed as they are."""
    if not USAGE_CHUNK.search(event) or not (running or NO_CHOICES.search(event)):
        return None
    try:
        chunk = sse.decode(event)
        return chunk["usage"] if running or not chunk["choices"] else None
    except (ValueError, KeyError, TypeError):
        return None


def _chunk(chunk_id: str, model: str, choices: list[dict[str, Any]], ragft: dict[str, Any]) -> bytes:
    """A `chat.completion.chunk` of ragft's own: the sources first, the timing last."""
    return sse.encode(
        {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "ragft": ragft,
        }
    )


class EventStream(StreamingResponse):
    """An SSE response that closes its events and what they hold (the upstream request, the
    admission slot) however it ends, so a client that disconnects (even before the first event)
    stops vLLM at once, not when garbage is collected."""

    def __init__(self, events: AsyncGenerator[bytes], held: AsyncExitStack, headers: dict[str, str]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.events = events
        self.held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()
            await self.held.aclose()  # a no-op when the events closed it
