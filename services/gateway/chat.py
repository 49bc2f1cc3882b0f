"""One chat request on its route: retrieve (rag, hybrid), build the prompt, generate, and
return the completion or relay vLLM's events as they arrive."""

import json
import re
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import Counter, Histogram
from starlette.types import Receive, Scope, Send

from ragft.errors import InvalidRequest, NotFound, RagftError, UnknownRoute, UpstreamFailed, error_body
from ragft.settings import COLLECTION_NAME
from services.gateway.config import GatewaySettings, Route
from services.gateway.prompt import grounded_messages, search_query
from services.gateway.runtime import Gateway, adapter_not_found
from services.gateway.schemas import ChatRequest, Source

CHAT_REQUESTS = Counter(
    "ragft_gateway_chat_requests_total",
    "Chat completions by route and outcome (ok, or the error type).",
    ["route", "outcome"],
)
STAGE_SECONDS = Histogram(
    "ragft_gateway_stage_seconds",
    "Time per stage of a chat completion: retrieve, generate, ttft (streaming) and total.",
    ["route", "stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80),
)

COMPLETIONS = "/v1/chat/completions"
DONE = b"data: [DONE]\n\n"
ROUTES = ", ".join(Route)


@dataclass
class Plan:
    """What the headers ask for: the route, and the collection and adapter it uses."""

    route: Route
    collection: str | None
    adapter: str | None
    model: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], settings: GatewaySettings) -> "Plan":
        raw = headers.get("x-ragft-route", settings.default_route.value)
        try:
            route = Route(raw.strip().lower())
        except ValueError:
            raise UnknownRoute(
                f"X-Ragft-Route {raw!r} is not a route; use one of: {ROUTES}", param="X-Ragft-Route"
            ) from None
        collection = headers.get("x-ragft-collection", settings.collection) if route.retrieves else None
        if collection is not None and not re.match(COLLECTION_NAME, collection):
            raise InvalidRequest(
                f"X-Ragft-Collection {collection!r} is not a collection name: letters, digits, _ and -",
                param="X-Ragft-Collection",
            )
        adapter = headers.get("x-ragft-adapter", settings.default_adapter) if route.uses_adapter else None
        if adapter is not None and not adapter.strip():
            raise InvalidRequest(f"the {route.value} route needs an adapter name", param="X-Ragft-Adapter")
        return cls(route, collection, adapter, adapter or settings.served_model_name)

    def ragft(self, sources: list[Source]) -> dict[str, Any]:
        return {
            "route": self.route.value,
            "adapter": self.adapter,
            "collection": self.collection,
            "sources": [source.model_dump() for source in sources],
        }


@dataclass
class Timing:
    """Stage durations in ms, for the Server-Timing header, the stream's last event and the metrics."""

    route: Route
    started: float = field(default_factory=time.perf_counter)
    ms: dict[str, float] = field(default_factory=dict)

    def record(self, stage: str, since: float) -> None:
        seconds = time.perf_counter() - since
        self.ms[stage] = round(seconds * 1000, 1)
        STAGE_SECONDS.labels(self.route.value, stage).observe(seconds)

    def header(self) -> str:
        return ", ".join(f"{stage};dur={ms}" for stage, ms in self.ms.items())


async def chat(request: ChatRequest, plan: Plan, gateway: Gateway, deadline: float) -> Response:
    timing = Timing(plan.route)
    try:
        sources = await _retrieve(request, plan, gateway, timing, deadline)
        messages = grounded_messages(request.messages, sources) if plan.route.retrieves else request.messages
        body = request.upstream_body(plan.model, messages)
        if request.stream:
            return await _stream(body, plan, sources, gateway, timing, deadline)
        started = time.perf_counter()
        with _adapter_named(plan):
            completion = await gateway.generation.json("POST", COMPLETIONS, deadline=deadline, body=body)
        if not isinstance(completion, dict):
            raise UpstreamFailed(f"the generation service answered with a {type(completion).__name__}, not an object")
        timing.record("generate", started)
        timing.record("total", timing.started)
    except RagftError as exc:
        CHAT_REQUESTS.labels(plan.route.value, exc.type).inc()
        raise
    CHAT_REQUESTS.labels(plan.route.value, "ok").inc()
    completion["ragft"] = plan.ragft(sources)
    return JSONResponse(completion, headers=_headers(plan, timing))


async def _retrieve(
    request: ChatRequest, plan: Plan, gateway: Gateway, timing: Timing, deadline: float
) -> list[Source]:
    if plan.collection is None:
        timing.ms["retrieve"] = 0.0  # in the header, so every route reports the same stages
        return []
    query = search_query(request.messages, gateway.settings.max_query_chars)
    if not query:
        raise InvalidRequest(
            f"the {plan.route.value} route searches with the user's message, and no user message has text",
            param="messages",
        )
    started = time.perf_counter()
    sources = await gateway.search(plan.collection, query, deadline=deadline)
    timing.record("retrieve", started)
    return sources


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
    return {"X-Ragft-Route": plan.route.value, "Server-Timing": timing.header()}


async def _stream(
    body: dict[str, Any], plan: Plan, sources: list[Source], gateway: Gateway, timing: Timing, deadline: float
) -> Response:
    """Errors up to vLLM's response headers are HTTP errors; after them, error events."""
    started = time.perf_counter()
    upstream = AsyncExitStack()
    with _adapter_named(plan):
        response = await upstream.enter_async_context(
            gateway.generation.open("POST", COMPLETIONS, deadline=deadline, body=body)
        )
    # vLLM names its chunks after the request id too, so the whole stream has one id.
    chunk_id = f"chatcmpl-{structlog.contextvars.get_contextvars().get('request_id', uuid.uuid4().hex)}"
    role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    first = _chunk(chunk_id, plan.model, [role], plan.ragft(sources))
    events = _relay(response, first, chunk_id, gateway, plan, timing, started, deadline, upstream)
    return EventStream(events, upstream, headers=_headers(plan, timing))


async def _relay(
    response: aiohttp.ClientResponse,
    first: bytes,
    chunk_id: str,
    gateway: Gateway,
    plan: Plan,
    timing: Timing,
    generate_started: float,
    deadline: float,
    upstream: AsyncExitStack,
) -> AsyncGenerator[bytes]:
    """vLLM's events one by one as they arrive. The stream ends with `[DONE]` only after vLLM's
    own `[DONE]`; anything else (deadline, broken or cut stream) ends with an error event first."""
    outcome = "client_closed"
    try:
        yield first
        while True:
            try:
                async with gateway.generation.failures(deadline):
                    event = await _next_event(response)
            except RagftError as exc:
                outcome = exc.type
                yield _event(error_body(exc.type, exc.message))
                yield DONE
                return
            if "ttft" not in timing.ms:  # vLLM's first event comes with the first token
                timing.record("ttft", timing.started)
            if event == DONE:
                timing.record("generate", generate_started)
                timing.record("total", timing.started)
                outcome = "ok"
                yield _chunk(chunk_id, plan.model, [], {"timing": timing.ms})
                yield DONE
                return
            yield event
    finally:
        CHAT_REQUESTS.labels(plan.route.value, outcome).inc()
        if outcome != "ok":
            response.close()  # so vLLM sees the disconnect and stops generating
        await upstream.aclose()


async def _next_event(response: aiohttp.ClientResponse) -> bytes:
    try:
        event = await response.content.readuntil(b"\n\n")
    except (ValueError, HttpProcessingError) as exc:  # an event beyond aiohttp's buffer limit
        raise UpstreamFailed(f"the generation service sent an oversized event: {exc}") from exc
    if not event.endswith(b"\n\n"):
        raise UpstreamFailed("the generation service closed the stream before the answer was complete")
    return event


def _chunk(chunk_id: str, model: str, choices: list[dict[str, Any]], ragft: dict[str, Any]) -> bytes:
    """A `chat.completion.chunk` of ragft's own: the sources first, the timing last."""
    return _event(
        {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "ragft": ragft,
        }
    )


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class EventStream(StreamingResponse):
    """An SSE response that closes its events and the upstream request however it ends, so a
    client that disconnects (even before the first event) stops vLLM at once, not when garbage
    is collected."""

    def __init__(self, events: AsyncGenerator[bytes], upstream: AsyncExitStack, headers: dict[str, str]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.events = events
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()
            await self.upstream.aclose()  # a no-op when the events closed it
