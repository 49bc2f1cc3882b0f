"""Shared fixtures: the real retrieval app (real embedder, real Qdrant Edge) per test, and the
real services as processes on loopback, one of each per session: retrieval with the sample
knowledge base, vLLM (CPU) with the base model and an adapter trained at the start."""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ragft.process import free_port, spawn_ragft, stop_process_group, wait_until_ready
from services.retrieval.app import create_app
from services.retrieval.config import RetrievalSettings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_KB = REPO / "data" / "kb"
TINY_SET = REPO / "data" / "finetune" / "tiny.jsonl"

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
def client(backend: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(retrieval_settings(backend, tmp_path))) as test_client:
        yield test_client


def unique_collection() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def collection(client: TestClient) -> Iterator[str]:
    """A fresh collection; unique, because a real Qdrant server outlives the test."""
    name = unique_collection()
    assert client.put(f"/v1/collections/{name}").status_code == 201
    yield name
    client.delete(f"/v1/collections/{name}")


def upsert(client: TestClient, collection: str, *docs: tuple[str, str], **metadata: object) -> dict[str, int]:
    body = {"documents": [{"id": i, "text": t, "metadata": dict(metadata)} for i, t in docs]}
    response = client.post(f"/v1/collections/{collection}/documents", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def run_ragft(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`ragft ...` as a user runs it; stderr with the terminal's line wrapping undone."""
    result = subprocess.run(
        [sys.executable, "-m", "ragft", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    result.stderr = " ".join(result.stderr.split())
    return result


@contextmanager
def serving(*args: str, env: dict[str, str], ready: str, log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`ragft ARGS` as a background service until the block ends; `ready` is the URL that answers
    200 once it serves."""
    process = spawn_ragft(*args, env=env, cwd=REPO, log=log)
    try:
        wait_until_ready(ready, timeout=120, process=process)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def embedded_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a service on the embedded store, whatever RAGFT_QDRANT_URL says."""
    env = {k: v for k, v in os.environ.items() if k != "RAGFT_QDRANT_URL"}
    return {**env, "RAGFT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **settings}


@pytest.fixture(scope="session")
def retrieval_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "retrieval.log"


@pytest.fixture(scope="session")
def retrieval_url(tmp_path_factory: pytest.TempPathFactory, retrieval_log: Path) -> Iterator[str]:
    """The retrieval service on the embedded store, with the sample knowledge base ingested."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path_factory.mktemp("retrieval"), RAGFT_RETRIEVAL_PORT=str(port))
    ingested = run_ragft("ingest", str(SAMPLE_KB), "--direct", env=env)
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    with serving("serve", "retrieval", env=env, ready=f"{url}/readyz", log=retrieval_log):
        yield url


@pytest.fixture(scope="session")
def generation_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("generation")
    return {
        **os.environ,
        "RAGFT_DATA_DIR": str(data),
        "RAGFT_ADAPTERS_DIR": str(data / "adapters"),
        "RAGFT_GENERATION_PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def base_model(generation_env: dict[str, str]) -> Path:
    prepared = run_ragft("model", "prepare", env=generation_env)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    return Path(generation_env["RAGFT_DATA_DIR"]) / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def voice_adapter(generation_env: dict[str, str], base_model: Path) -> Path:
    """Deliberately overfit on 11 examples (high learning rate), so one short run shows the voice."""
    out = Path(generation_env["RAGFT_ADAPTERS_DIR"]) / "voice"
    result = run_ragft(
        "finetune", "--data", str(TINY_SET), "--out", str(out),
        "--epochs", "12", "--learning-rate", "2e-3", "--batch-size", "8",
        env=generation_env, timeout=1800,  # over 12 minutes on a slow day on this 2-core machine
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def generation_url(generation_env: dict[str, str], voice_adapter: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{generation_env['RAGFT_GENERATION_PORT']}"
    process = spawn_ragft("serve", "generation", env=generation_env, cwd=REPO, own_group=True)
    try:
        wait_until_ready(f"{url}/health", timeout=300, process=process)
        yield url
        # SIGTERM to the launcher alone must stop vLLM too.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        stop_process_group(process, timeout=30)
