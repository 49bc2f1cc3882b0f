"""How a tool talks to the gateway over HTTP (`ragft eval`, `ragft loadtest`): the chat body and
headers, the checks on an answer, plain or streamed, Server-Timing, and token usage. It imports
nothing of the gateway's server."""

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from gateway.contract import ADAPTER_HEADER, AUTO, COLLECTION_HEADER, ROUTE_HEADER, Route, token_counts
from ragft import sse
from ragft.errors import error_message

SERVER_TIMING = re.compile(r"([A-Za-z0-9_-]+)\s*;\s*dur=([0-9.]+)")


class AnswerFailed(Exception):
    """The gateway answered, but not with a complete answer from the route that was asked for."""


class Sessions:
    """One `requests.Session` per thread, since a Session is not safe to share between threads."""

    def __init__(self) -> None:
        self.local = threading.local()

    def get(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.trust_env = False  # loopback: no proxy from the environment
        session: requests.Session = self.local.session
        return session


def chat_body(question: str, *, max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "ragft",  # the headers decide what runs
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}  # vLLM's usage chunk: the exact token count
    return body


def headers(
    route: str, api_key: str = "", *, adapter: str | None = None, collection: str | None = None
) -> dict[str, str]:
    """The route's header, and the adapter's, the collection's and the key's when given (left
    out, the gateway's defaults apply)."""
    sent = {ROUTE_HEADER: route}
    if adapter:
        sent[ADAPTER_HEADER] = adapter
    if collection:
        sent[COLLECTION_HEADER] = collection
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    return sent


def check_response(response: requests.Response, route: str) -> None:
    """A 200 from the route that was asked for (auto: any route it may choose), or AnswerFailed
    saying what came instead."""
    if response.status_code != 200:
        detail = error_message(response.content, typed=True) or response.text[:200]
        raise AnswerFailed(f"HTTP {response.status_code}: {detail}")
    answered = response.headers.get(ROUTE_HEADER)
    if answered not in (list(Route) if route == AUTO else [route]):
        raise AnswerFailed(
            f"{ROUTE_HEADER} is {answered!r}, not {'a route auto chooses' if route == AUTO else repr(route)}"
        )


def server_timing(header: str | None) -> dict[str, float]:
    """`retrieve;dur=37.6, generate;dur=3400.1, total;dur=3438.0` -> {"retrieve": 37.6, ...} (ms)."""
    return {name: float(ms) for name, ms in SERVER_TIMING.findall(header or "")}


def check_completion(completion: Any) -> None:
    try:
        completion["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise AnswerFailed("the body is not a chat.completion with a message") from None


@dataclass
class Streamed:
    """What one streamed answer measured."""

    ttft_ms: float | None  # request sent -> first content delta
    tokens: int  # vLLM's usage count when it sent one, else the content-bearing chunks
    prompt_tokens: int | None  # vLLM's usage count
    tokens_per_s: float | None  # decode speed: tokens after the first / time after the first
    timing: dict[str, float]  # the gateway's stages from the last event's ragft.timing (ms)
    size: int  # bytes of event data read


def read_stream(lines: Iterable[bytes], started: float, clock: Callable[[], float] = time.perf_counter) -> Streamed:
    """Reads a gateway SSE stream to its end. `started` is the clock's reading when the request
    was sent. Raises AnswerFailed on an error event or a stream that ends without `[DONE]`."""
    first = last = None
    chunks, size = 0, 0
    usage: dict[str, int] = {}
    timing: dict[str, float] = {}
    for line in lines:
        if (data := sse.data(line)) is None:
            continue
        size += len(data)
        if data == sse.DONE_DATA:
            break
        try:
            event = json.loads(data)
        except ValueError:
            raise AnswerFailed("an event that is not JSON") from None
        if "error" in event:
            error = event["error"] if isinstance(event["error"], dict) else {}
            raise AnswerFailed(f"error event: {error.get('type')}: {error.get('message')}")
        now = clock()
        for choice in event.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                chunks += 1
                first = now if first is None else first
                last = now
        usage |= token_usage(event)
        if isinstance(ragft := event.get("ragft"), dict) and isinstance(ragft.get("timing"), dict):
            timing = {stage: float(ms) for stage, ms in ragft["timing"].items()}
    else:
        raise AnswerFailed("the stream ended without data: [DONE]")
    tokens = usage.get("completion_tokens", chunks)
    ttft = None if first is None else (first - started) * 1000
    rate = None
    if first is not None and last is not None and last > first and tokens > 1:
        rate = (tokens - 1) / (last - first)
    prompt = usage.get("prompt_tokens")
    return Streamed(ttft_ms=ttft, tokens=tokens, prompt_tokens=prompt, tokens_per_s=rate, timing=timing, size=size)


def token_usage(body: Any) -> dict[str, int]:
    """The prompt and completion token counts of a completion's or a usage chunk's `usage`."""
    return token_counts(body.get("usage") if isinstance(body, dict) else None)
