"""The gateway as a process on loopback, in front of the session's real retrieval service and
real vLLM; `start_gateway` starts more with other settings for the fault tests, and
`start_gateway_without_vllm` one in front of a stand-in."""

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from ragft import sse
from tests.conftest import Processes

GatewayStarter = Callable[..., AbstractContextManager[str]]


def _starter(folders: pytest.TempPathFactory, processes: Processes, **defaults: str) -> GatewayStarter:
    @contextmanager
    def start(log: Path | None = None, **settings: str) -> Iterator[str]:
        with processes.gateway(folders.mktemp("gateway"), log, **{**defaults, **settings}) as (url, _):
            yield url

    return start


@pytest.fixture(scope="session")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory, processes: Processes, retrieval_url: str, generation_url: str
) -> GatewayStarter:
    """`with start_gateway(RAGFT_X="...") as url:` a gateway with those settings on top of the
    session's real retrieval service and real vLLM, stopped when the block ends."""
    return _starter(
        tmp_path_factory,
        processes,
        RAGFT_RETRIEVAL_URL=retrieval_url,
        RAGFT_GENERATION_URL=generation_url,
        RAGFT_DEFAULT_ADAPTER="voice",
    )


@pytest.fixture(scope="session")
def start_gateway_without_vllm(
    tmp_path_factory: pytest.TempPathFactory, processes: Processes, retrieval_url: str
) -> GatewayStarter:
    """`with start_gateway_without_vllm(generation_url, RAGFT_X="...") as url:` as `start_gateway`,
    in front of a generation upstream of the test's own (a stand-in, or nothing at all), so it
    never waits for the session's vLLM."""
    starter = _starter(tmp_path_factory, processes, RAGFT_RETRIEVAL_URL=retrieval_url, RAGFT_DEFAULT_ADAPTER="voice")

    def start(generation_url: str, log: Path | None = None, **settings: str) -> AbstractContextManager[str]:
        return starter(log, RAGFT_GENERATION_URL=generation_url, **settings)

    return start


@pytest.fixture(scope="session")
def gateway_url(start_gateway: GatewayStarter) -> Iterator[str]:
    with start_gateway() as url:
        yield url


@pytest.fixture
def openai_client(gateway_url: str) -> openai.OpenAI:
    """The official OpenAI client, unchanged, pointed at the gateway."""
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=120)


def metric(url: str, name: str, default: float | None = None) -> float:
    """One sample of the service's /metrics, by its full name and labels; `default` when a
    labelled sample has not been counted yet."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    if default is not None:
        return default
    raise AssertionError(f"{name} is not in the metrics")


def sse_events(response: httpx.Response) -> list[Any]:
    """A stream's events in order: parsed JSON, and the final "[DONE]"."""
    return sse.events(response.iter_lines())


def running_requests(generation_url: str) -> float:
    """How many requests vLLM is generating for right now, from its own metrics."""
    metrics = httpx.get(f"{generation_url}/metrics").text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("vllm:num_requests_running"))


def wait_until_idle(generation_url: str, seconds: float = 5) -> float:
    deadline = time.monotonic() + seconds
    while running_requests(generation_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running_requests(generation_url)
