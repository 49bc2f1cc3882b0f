"""What the locustfile reads, without Locust (importing locust monkey-patches the whole process
with gevent, so the runner, the report and the tests stay clear of it): its options from the
environment (LOADTEST_*: `ragft loadtest` sets them from its own), the mixed run's weights, the
questions and the headers of every request. How it talks to the gateway is gateway/client.py."""

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.client import headers
from gateway.contract import ROUTE_NAMES, Route
from ragft.sample_data import EVAL_SET
from ragft.settings import COLLECTION_NAME

STREAM_MODES = ("0", "1", "mixed")
# Beside a run's CSV files, what its users asked and where (`Options.described`): the report states it.
RUN_FILE = "run.json"


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


def check_collection(name: str, option: str) -> str:
    """`name`, or ValueError naming `option` when it is not a collection name."""
    if not re.match(COLLECTION_NAME, name):
        raise ValueError(
            f"{option} {name!r} is not a collection name: up to 64 letters, digits, _ and -, "
            "the first a letter or digit"
        )
    return name


def load_questions(path: Path) -> list[str]:
    """The questions of an eval set (data/README.md's format); `ragft loadtest` checks the whole
    file with the eval's own loader before anything starts."""
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Options:
    """What the locustfile reads from the environment (LOADTEST_*)."""

    questions: list[str]
    data: Path = EVAL_SET  # the eval set the questions come from
    collection: str | None = None  # X-Ragft-Collection; None: the gateway's default
    adapter: str | None = None  # X-Ragft-Adapter; None: the gateway's default
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
        data = Path(env.get("LOADTEST_QUESTIONS") or EVAL_SET)
        collection = env.get("LOADTEST_COLLECTION") or None
        return cls(
            questions=load_questions(data),
            data=data,
            collection=None if collection is None else check_collection(collection, "LOADTEST_COLLECTION"),
            adapter=env.get("LOADTEST_ADAPTER") or None,
            max_tokens=int(env.get("LOADTEST_MAX_TOKENS", "64")),
            stream=stream,
            weights=parse_weights(env.get("LOADTEST_WEIGHTS", "rag=1,finetuned=1,hybrid=1")),
            timeout_s=float(env.get("LOADTEST_TIMEOUT_S", "180")),
            api_key=env.get("LOADTEST_API_KEY", ""),
        )

    def headers(self, route: str) -> dict[str, str]:
        """Every request's headers: the route, and the collection, the adapter and the key when set."""
        return headers(route, self.api_key, adapter=self.adapter, collection=self.collection)

    def described(self) -> dict[str, Any]:
        """What the report states of the run (RUN_FILE); None: the gateway's default."""
        return {
            "data": str(self.data),
            "questions": len(self.questions),
            "collection": self.collection,
            "adapter": self.adapter,
        }
