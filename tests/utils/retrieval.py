"""Builders for the retrieval service's tests: its settings per store backend, fresh collection
names, and documents written through its API."""

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from services.retrieval.config import RetrievalSettings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

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


def unique_collection() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def upsert(client: "TestClient", collection: str, *docs: tuple[str, str], **metadata: object) -> dict[str, Any]:
    body = {"documents": [{"id": i, "text": t, "metadata": dict(metadata)} for i, t in docs]}
    response = client.post(f"/v1/collections/{collection}/documents", json=body)
    assert response.status_code == 200, response.text
    return response.json()
