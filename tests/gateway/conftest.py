"""The gateway under test, two ways.

As a process on loopback, in front of the session's real retrieval service and real vLLM
(`gateway_url`; `start_gateway` starts more with other settings, for the fault tests): the
stack tier.

In this process (the unit tier): `start_gateway_in_process` and `gateway_in_process`, the
gateway's app behind Starlette's TestClient, in front of the scripted vLLM and the real
retrieval app."""

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import openai
import pytest

from ragft.sample_data import SAMPLE_KB
from tests.gateway.scripted_vllm import ScriptedVllm, scripted_vllm
from tests.utils.gateway import GatewayStarter, InProcessGateway, InProcessStarter, open_gateway_app
from tests.utils.loopback import serve_on_loopback
from tests.utils.processes import Processes
from tests.utils.retrieval import retrieval_settings

# A few articles of the sample knowledge base: enough for the knowledge-base pages and a rag answer
# with sources, and quick to embed. The full base is the session's retrieval process's.
IN_PROCESS_KB = (
    "account-sign-in-and-passwords.md",
    "admin-audit-log.md",
    "api-rate-limits.md",
    "billing-plans-and-prices.md",
)


@pytest.fixture(scope="session")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory, processes: Processes, retrieval_url: str, generation_url: str
) -> GatewayStarter:
    """`with start_gateway(RAGFT_X="...") as url:` a gateway with those settings on top of the
    session's real retrieval service and real vLLM, stopped when the block ends."""
    defaults = {
        "RAGFT_RETRIEVAL_URL": retrieval_url,
        "RAGFT_GENERATION_URL": generation_url,
        "RAGFT_DEFAULT_ADAPTER": "voice",
    }

    @contextmanager
    def start(log: Path | None = None, **settings: str) -> Iterator[str]:
        with processes.gateway(tmp_path_factory.mktemp("gateway"), log, **{**defaults, **settings}) as (url, _):
            yield url

    return start


@pytest.fixture(scope="session")
def gateway_url(start_gateway: GatewayStarter) -> Iterator[str]:
    with start_gateway() as url:
        yield url


@pytest.fixture
def openai_client(gateway_url: str) -> openai.OpenAI:
    """The official OpenAI client, unchanged, pointed at the gateway."""
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def retrieval_in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real retrieval app (`services.retrieval.app.create_app`) on the embedded Qdrant Edge,
    with IN_PROCESS_KB ingested into help-center through its API: its URL.

    It runs in this process, but served by uvicorn on a thread, bound to 127.0.0.1, and stopped
    at teardown, rather than behind an ASGI transport: the gateway reaches its upstreams with
    aiohttp, which opens real TCP connections to a URL and has no way into an ASGI app."""
    from services.retrieval.app import create_app
    from services.retrieval.ingest import ingest_http, load_documents

    settings = retrieval_settings("edge", tmp_path_factory.mktemp("retrieval-in-process"))
    with serve_on_loopback(create_app(settings)) as url:
        documents = load_documents([SAMPLE_KB / name for name in IN_PROCESS_KB])
        ingest_http(url, settings.collection, documents, len(documents), lambda _: None)
        yield url


@pytest.fixture(scope="session")
def vllm_stand_in() -> Iterator[ScriptedVllm]:
    """The scripted vLLM serving what the session's vLLM serves: `base` and the adapter `voice`;
    another model is vLLM's 404. Shared: a test that scripts faults opens one of its own."""
    with scripted_vllm(models=("base", "voice")) as vllm:
        yield vllm


@pytest.fixture(scope="session")
def start_gateway_in_process(
    tmp_path_factory: pytest.TempPathFactory, retrieval_in_process: str, vllm_stand_in: ScriptedVllm
) -> InProcessStarter:
    """`with start_gateway_in_process(RAGFT_X="...") as gateway:` the gateway's app in this
    process with those settings (tests/utils/gateway.py), in front of the in-process retrieval
    app and the scripted vLLM unless the settings name other upstreams; `gateway` is an
    httpx.Client (tests/utils/gateway.py: InProcessGateway), so the tests speak HTTP to it as to
    a process. It needs no process, so its
    tests are in the unit tier."""
    defaults = {
        "RAGFT_RETRIEVAL_URL": retrieval_in_process,
        "RAGFT_GENERATION_URL": vllm_stand_in.url,
        "RAGFT_DEFAULT_ADAPTER": "voice",
    }

    def start(log: Path | None = None, **settings: str) -> AbstractContextManager[InProcessGateway]:
        return open_gateway_app(tmp_path_factory.mktemp("gateway"), log, **{**defaults, **settings})

    return start


@pytest.fixture(scope="session")
def gateway_in_process(start_gateway_in_process: InProcessStarter) -> Iterator[InProcessGateway]:
    """A gateway in this process with the default settings, shared by the tests that change nothing."""
    with start_gateway_in_process() as gateway:
        yield gateway
