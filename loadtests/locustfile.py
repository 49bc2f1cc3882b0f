"""Locust scenarios against the ragft gateway. Run from the repository root (Locust puts the
working directory on sys.path, and `loadtests.options` is imported from there):

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 4 -t 30s RagUser

One user class per route (RagUser, FinetunedUser, HybridUser, AutoUser) and MixedUser, whose
routes are weighted by LOADTEST_WEIGHTS ("rag=1,finetuned=1,hybrid=1"; auto may be added). An
auto answer may come from any of the three routes; its entries are named `auto`. Each user asks
the questions of an eval set (LOADTEST_QUESTIONS; default the sample's, data/kb_questions.jsonl)
back to back, with no think time, so users = concurrent requests, in the collection
LOADTEST_COLLECTION with the adapter LOADTEST_ADAPTER (sent as X-Ragft-Collection and
X-Ragft-Adapter; unset: the gateway's defaults). LOADTEST_STREAM: "mixed" (default: every other
request streams), "0" or "1"; LOADTEST_MAX_TOKENS (64); temperature 0; LOADTEST_API_KEY when the
gateway has RAGFT_API_KEYS; LOADTEST_TIMEOUT_S (180) per request.

What lands in Locust's statistics, every entry named after the route:
- `POST rag`: a non-streamed answer, full latency;
- `POST rag stream`: a streamed answer, request sent -> `[DONE]` read;
- `TTFT rag`: ms to the first content delta of a streamed answer;
- `TOKENS_PER_S rag`: a streamed answer's decode speed (tokens after the first / time after the
  first) in the response-time column, its token count in the content-size column;
- `PROMPT_TOKENS rag`, `COMPLETION_TOKENS rag`: each answer's token counts from vLLM's usage, in
  the response-time column (Locust's average of them is exact);
- `RETRIEVE rag`, `GENERATE rag`: the gateway's own stage times (ms), from `Server-Timing` or from
  the `ragft.timing` of a stream's last event.
A request fails on any status but 200, an `X-Ragft-Route` other than the route asked for, an error
event, a stream without `[DONE]` or a body that is not a completion.

The users are plain `User`s with their own requests.Session rather than `HttpUser`s: HttpUser's
timing stops at the response headers when a body is streamed, and here every request is timed to
the end of its answer. A request still running when its user is stopped (past --stop-timeout) is
not recorded at all, neither as an answer nor as a failure.
"""

import itertools
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import gevent
import requests
from locust import User, constant, events, stats, task
from locust.env import Environment

from gateway.client import chat_body, check_completion, check_response, read_stream, server_timing, token_usage
from loadtests.options import Options

OPTIONS = Options.from_env(os.environ)


def last_csv_write(environment: Environment, **_: Any) -> None:
    """Locust rewrites its CSV files once a second while it runs and only closes them at exit, so
    they would miss up to the last second of a run (everything, in a short run against a slow
    model). Every user has stopped by now: wait for one more rewrite, with the final numbers."""
    if environment.parsed_options is not None and environment.parsed_options.csv_prefix:
        gevent.sleep(stats.CSV_STATS_INTERVAL_SEC + 0.25)


events.quitting.add_listener(last_csv_write)  # type: ignore[no-untyped-call]  # locust leaves it untyped


class GatewayUser(User):
    abstract = True
    wait_time = constant(0)
    # Routes this user asks, with their weights.
    routes: ClassVar[dict[str, float]] = {}

    def on_start(self) -> None:
        if not self.host:
            raise ValueError("no --host: pass the gateway's URL, e.g. --host http://127.0.0.1:8000")
        self.url = f"{self.host.rstrip('/')}/v1/chat/completions"
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: no proxy from the environment
        modes = {"0": [False], "1": [True], "mixed": [False, True]}[OPTIONS.stream]
        self.streaming: Iterator[bool] = itertools.cycle(modes)

    def on_stop(self) -> None:
        self.session.close()

    @task
    def ask(self) -> None:
        route = random.choices(list(self.routes), weights=list(self.routes.values()))[0]
        question = random.choice(OPTIONS.questions)
        if next(self.streaming):
            self.streamed(route, question)
        else:
            self.complete(route, question)

    def complete(self, route: str, question: str) -> None:
        body = chat_body(question, max_tokens=OPTIONS.max_tokens, stream=False)
        with self.measured(route) as meta:
            response = self.session.post(self.url, json=body, headers=OPTIONS.headers(route), timeout=OPTIONS.timeout_s)
            meta["response_length"] = len(response.content)
            check_response(response, route)
            completion = response.json()
            check_completion(completion)
        if meta["exception"] is None:
            self.stages(route, server_timing(response.headers.get("Server-Timing")))
            self.tokens(route, token_usage(completion))

    def streamed(self, route: str, question: str) -> None:
        body = chat_body(question, max_tokens=OPTIONS.max_tokens, stream=True)
        with self.measured(f"{route} stream") as meta:
            started = time.perf_counter()
            with self.session.post(
                self.url, json=body, headers=OPTIONS.headers(route), timeout=OPTIONS.timeout_s, stream=True
            ) as response:
                check_response(response, route)
                answer = read_stream(response.iter_lines(), started)
            meta["response_length"] = answer.size
        if meta["exception"] is not None:
            return
        self.metric("TTFT", route, answer.ttft_ms)
        self.metric("TOKENS_PER_S", route, answer.tokens_per_s, length=answer.tokens)
        self.stages(route, answer.timing)
        self.tokens(route, {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.tokens})

    @contextmanager
    def measured(self, name: str) -> Iterator[dict[str, Any]]:
        """Records the block as a request named `name`, failed when it raises. Unlike Locust's
        `events.request.measure`, a user killed mid-answer (GreenletExit, not an Exception) records
        nothing, where `measure` would record the cut answer as a success."""
        meta: dict[str, Any] = {
            "request_type": "POST",
            "name": name,
            "response_length": 0,
            "context": {},
            "exception": None,
            "start_time": time.time(),
        }
        started = time.perf_counter()
        try:
            yield meta
        except Exception as exc:
            meta["exception"] = exc
        meta["response_time"] = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(**meta)

    def stages(self, route: str, timing: dict[str, float]) -> None:
        self.metric("RETRIEVE", route, timing.get("retrieve"))
        self.metric("GENERATE", route, timing.get("generate"))

    def tokens(self, route: str, usage: Mapping[str, int | None]) -> None:
        self.metric("PROMPT_TOKENS", route, usage.get("prompt_tokens"))
        self.metric("COMPLETION_TOKENS", route, usage.get("completion_tokens"))

    def metric(self, kind: str, route: str, value: float | None, length: int = 0) -> None:
        """A custom entry in Locust's statistics: the value goes in the response-time column."""
        if value is None:
            return
        self.environment.events.request.fire(
            request_type=kind, name=route, response_time=value, response_length=length, exception=None, context={}
        )


class RagUser(GatewayUser):
    routes: ClassVar[dict[str, float]] = {"rag": 1.0}


class FinetunedUser(GatewayUser):
    routes: ClassVar[dict[str, float]] = {"finetuned": 1.0}


class HybridUser(GatewayUser):
    routes: ClassVar[dict[str, float]] = {"hybrid": 1.0}


class AutoUser(GatewayUser):
    routes: ClassVar[dict[str, float]] = {"auto": 1.0}


class MixedUser(GatewayUser):
    routes: ClassVar[dict[str, float]] = OPTIONS.weights
