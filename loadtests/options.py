"""What the locustfile reads, without Locust (importing locust monkey-patches the whole process
with gevent, so the runner, the report and the tests stay clear of it): its options from the
environment, the mixed run's weights and the questions. How it talks to the gateway is
gateway/client.py."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.contract import ROUTE_NAMES, Route
from ragft.sample_data import EVAL_SET

STREAM_MODES = ("0", "1", "mixed")


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
            questions=load_questions(Path(env.get("LOADTEST_QUESTIONS") or EVAL_SET)),
            max_tokens=int(env.get("LOADTEST_MAX_TOKENS", "64")),
            stream=stream,
            weights=parse_weights(env.get("LOADTEST_WEIGHTS", "rag=1,finetuned=1,hybrid=1")),
            timeout_s=float(env.get("LOADTEST_TIMEOUT_S", "180")),
            api_key=env.get("LOADTEST_API_KEY", ""),
        )
