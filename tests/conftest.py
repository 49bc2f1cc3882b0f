"""Shared fixtures: the real retrieval app (real embedder, real Qdrant Edge) per test."""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.retrieval.app import create_app
from services.retrieval.config import RetrievalSettings

REPO = Path(__file__).resolve().parent.parent
SAMPLE_KB = REPO / "data" / "kb"

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
