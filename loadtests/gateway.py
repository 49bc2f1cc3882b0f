"""Talking to the gateway, without Locust (importing locust monkey-patches the whole process with
gevent, so the runner, the report and the tests stay clear of it): the options the locustfile
reads from the environment, the request body, the checks on an answer, Server-Timing, and what a
streamed answer measured."""

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ragft import sse
from services.gateway.config import AUTO, ROUTE_NAMES, Route

STREAM_MODES = ("0", "1", "mixed")
QUESTIONS = Path(__file__).resolve().parent.parent / "data" / "kb_questions.jsonl"
SERVER_TIMING = re.compile(r"([A-Za-z0-9_-]+)\s*;\s*dur=([0-9.]+)")


class AnswerFailed(Exception):
    """The gateway answered, but not with a complete answer from the route that was asked for."""


def parse_weights(text: str) -> dict[str, float]:
    """`rag=1,finetuned=2,hybrid=1` -> {"rag": 1.0, ...}; a route left out gets no traffic."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        route, _, value = part.partition("=")
        route = route.strip().lower()
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r} in weights {text!r}; choose from {', '.join(ROUTE_NAMES)}")
        try:
            weights[route] = float(value)
        except ValueError:
            raise ValueError(f"weight {part!r} is not route=NUMBER") from None
        if weights[route] < 0:
            raise ValueError(f"weight {part!r} is negative")
    if not any(weights.values()):
        raise ValueError(f"weights {text!r} give no route any traffic")
    return weights


def load_questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Options:
    """What the locustfile reads from the environment (LOADTEST_*)."""

    questions: list[str]
    max_tokens: int = 64
    stream: str = "mixed"  # "0": never, "1": always, "mixed": every other request
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(Route, 1.0))  # MixedUser only
    timeout_s: float = 180.0  # per request; longer than the gateway's own 120 s deadline
    api_key: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Options":
        stream = env.get("LOADTEST_STREAM", "mixed").strip().lower()
        if stream not in STREAM_MODES:
            raise ValueError(f"LOADTEST_STREAM={stream!r}: choose from {', '.join(STREAM_MODES)}")
        return cls(
            questions=load_questions(Path(env.get("LOADTEST_QUESTIONS") or QUESTIONS)),
            max_tokens=int(env.get("LOADTEST_MAX_TOKENS", "64")),
            stream=stream,
            weights=parse_weights(env.get("LOADTEST_WEIGHTS", "rag=1,finetuned=1,hybrid=1")),
            timeout_s=float(env.get("LOADTEST_TIMEOUT_S", "180")),
            api_key=env.get("LOADTEST_API_KEY", ""),
        )


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


def headers(route: str, api_key: str = "") -> dict[str, str]:
    sent = {"X-Ragft-Route": route}
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    return sent


def check_response(response: requests.Response, route: str) -> None:
    """A 200 from the route that was asked for (auto: any route it may choose), or AnswerFailed
    saying what came instead."""
    if response.status_code != 200:
        try:
            error = response.json()["error"]
            detail = f"{error.get('type')}: {error.get('message')}"
        except (ValueError, KeyError, TypeError, AttributeError):
            detail = response.text[:200]
        raise AnswerFailed(f"HTTP {response.status_code}: {detail}")
    answered = response.headers.get("X-Ragft-Route")
    if answered not in (list(Route) if route == AUTO else [route]):
        raise AnswerFailed(
            f"X-Ragft-Route is {answered!r}, not {'a route auto chooses' if route == AUTO else repr(route)}"
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
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return {}
    return {kind: int(usage[kind]) for kind in ("prompt_tokens", "completion_tokens") if kind in usage}
