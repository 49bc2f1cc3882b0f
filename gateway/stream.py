"""A streamed answer: wait for vLLM's first event, then relay its events as they arrive, with
ragft's own first and last chunks, and record how the stream ended however it ends."""

import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.contract import token_counts
from gateway.metrics import CHAT_REQUESTS, Timing, count_tokens
from gateway.plan import Plan
from gateway.record import AnswerRecord
from gateway.runtime import COMPLETIONS, Gateway, adapter_named
from ragft import sse
from ragft.errors import RagftError, UpstreamFailed, error_body
from services.retrieval.schemas import Hit

# How long a stream's end may take to close the upstream and write its record, whatever cancels it.
FINAL_WRITES_S = 10
USAGE_CHUNK = re.compile(rb'"usage":\s*\{')
# vLLM's usage chunk has no choices; with continuous_usage_stats every other chunk has a usage too.
NO_CHOICES = re.compile(rb'"choices":\s*\[\s*\]')


@dataclass
class Streamed:
    """An answer whose first token has come: its events, what they hold, and how it is made."""

    events: AsyncGenerator[bytes]
    held: AsyncExitStack
    plan: Plan
    timing: Timing


@dataclass
class Streaming:
    """What a stream carries from the request to its last event."""

    gateway: Gateway
    timing: Timing
    deadlines: tuple[float, float]  # the first token's, then the whole request's
    held: AsyncExitStack  # closed when the stream ends, however it ends
    usage_asked: bool
    record: AnswerRecord | None
    # The grounding check of an answer that retrieved: its verdict goes in the last event.
    check: Callable[..., Awaitable[dict[str, Any]]] | None = None
    # Under the abstain policy: the answer is held until checked, then sent, or this instead.
    abstention: str | None = None


async def stream(body: dict[str, Any], plan: Plan, sources: list[Hit], streaming: Streaming) -> Streamed:
    """Waits for vLLM's first event (by the time-to-first-token limit, then the deadline), so
    every failure up to the first token is an HTTP error; after it, failures are error events."""
    gateway, timing, held = streaming.gateway, streaming.timing, streaming.held
    ttft_at, deadline = streaming.deadlines
    limit = f"the time-to-first-token limit ({gateway.settings.ttft_s:g} s)" if ttft_at < deadline else "the deadline"
    started = time.perf_counter()
    try:
        with adapter_named(plan.adapter):
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
    streaming: Streaming

    async def events(self, first: bytes, pending: bytes) -> AsyncGenerator[bytes]:
        """Our first event, then vLLM's events one by one as they arrive. The stream ends with
        `[DONE]` only after vLLM's own `[DONE]`; anything else (deadline, broken or cut stream)
        ends with an error event first."""
        streaming, timing = self.streaming, self.streaming.timing
        outcome = "client_closed"
        event = pending
        usage: dict[str, int] = {}
        answer: list[str] = []
        held: list[bytes] = []  # the answer's events, under the abstain policy, until it is checked
        try:
            yield first
            while event != sse.DONE:
                if (reported := _usage(event)) is not None:
                    usage = count_tokens(self.plan.route, reported)
                if reported is None or streaming.usage_asked:
                    if streaming.abstention is None:
                        yield event
                    else:
                        held.append(event)
                if streaming.check and reported is None:
                    answer.append(_content(event))
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
            last: dict[str, Any] = {"timing": timing.ms, "usage": usage}
            if streaming.check:
                last["grounding"] = await streaming.check(answer="".join(answer))
            if streaming.abstention is not None and last["grounding"]["abstained"]:
                held = [*self._abstention(streaming.abstention), *(e for e in held if _usage(e) is not None)]
            for event in held:
                yield event
            yield _chunk(self.chunk_id, self.plan.model, [], last)
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

    def _abstention(self, text: str) -> list[bytes]:
        """The abstention as the content of a stream: its text, then the finish."""
        model = self.plan.model
        delta = {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
        return [
            _chunk(self.chunk_id, model, [delta]),
            _chunk(self.chunk_id, model, [{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        ]


async def _next_event(response: aiohttp.ClientResponse) -> bytes:
    try:
        event = await response.content.readuntil(b"\n\n")
    except (ValueError, HttpProcessingError) as exc:  # an event beyond aiohttp's buffer limit
        raise UpstreamFailed(f"the generation service sent an oversized event: {exc}") from exc
    if not event.endswith(b"\n\n"):
        raise UpstreamFailed("the generation service closed the stream before the answer was complete")
    return event


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


def _content(event: bytes) -> str:
    """The text a content event adds to the answer ("" for any other event)."""
    try:
        return str(sse.decode(event)["choices"][0]["delta"].get("content") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _chunk(chunk_id: str, model: str, choices: list[dict[str, Any]], ragft: dict[str, Any] | None = None) -> bytes:
    """A `chat.completion.chunk` of ragft's own: the sources first; the timing, the usage and the
    grounding verdict last."""
    return sse.encode(
        {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            **({"ragft": ragft} if ragft is not None else {}),
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
