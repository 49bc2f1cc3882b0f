"""What a chat request measures: the gateway's Prometheus metrics per route, the stage durations
of one request (for Server-Timing, the stream's last event and the metrics) and vLLM's token usage."""

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from gateway.contract import Route, token_counts

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


def count_tokens(route: Route, usage: Any) -> dict[str, int]:
    """Records vLLM's usage for the route; returns the prompt and completion counts it held."""
    counted = token_counts(usage)
    for name, tokens in counted.items():
        kind = name.removesuffix("_tokens")
        TOKENS.labels(route.value, kind).inc(tokens)
        REQUEST_TOKENS.labels(route.value, kind).observe(tokens)
    return counted
