"""Collections embedded by a model of their own, aliases, and `ragft reindex`: the real app (real
embedder, real Qdrant Edge and the server backend's code path), and for the reindex under load
the session's real retrieval service over loopback."""

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from sentence_transformers import SentenceTransformer

from ragft.sample_data import SAMPLE_KB
from services.retrieval.app import create_app
from services.retrieval.chunking import Chunk
from services.retrieval.embedding import Embedder, default_model_path
from tests.utils.processes import Processes, embedded_env
from tests.utils.retrieval import retrieval_settings, unique_collection, upsert

PRICING = ("pricing", "# Plans and prices\n\nThe Team plan costs 9 euros per seat per month.")
ERRORS = ("sync-errors", "# Sync error codes\n\nError QB-2041 means the device clock is off.")
SHORTCUTS = ("shortcuts", "# Keyboard shortcuts\n\nPress Ctrl+Shift+K to open the command palette.")
QUESTION = "How much is the Team plan?"


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 with its word embeddings nudged: it still ranks sensibly, but its vectors
    differ, so a test can tell which model embedded a query."""
    model = SentenceTransformer(default_model_path())
    [weights] = [p for name, p in model.named_parameters() if name.endswith("word_embeddings.weight")]
    with torch.no_grad():
        weights.add_(torch.randn(weights.shape, generator=torch.Generator().manual_seed(0)) * 0.02)
    folder = tmp_path_factory.mktemp("models") / "nudged"
    model.save(str(folder))
    return folder


def _cosine(model: str, query: str, hit: dict) -> float:
    embedder = Embedder(model)
    passage = Chunk(hit["doc_id"], 0, hit["text"], hit["title"], {}).indexed_text
    q, p = embedder.embed([query, passage])
    return sum(a * b for a, b in zip(q, p, strict=True))


def _top_hit(client: TestClient, name: str) -> dict:
    response = client.post(f"/v1/collections/{name}/search", json={"query": QUESTION, "mode": "dense"})
    assert response.status_code == 200, response.text
    return response.json()["hits"][0]


def _listed(client: TestClient) -> dict[str, dict]:
    return {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}


@pytest.fixture
def rebuilt(client: TestClient, collection: str, other_model: Path) -> Iterator[str]:
    """A copy of `collection` (pricing, sync-errors) embedded by the nudged model."""
    upsert(client, collection, PRICING, ERRORS)
    target = unique_collection()
    created = client.put(f"/v1/collections/{target}", json={"embedding_model": str(other_model)})
    assert created.status_code == 201, created.text
    assert created.json()["embedding_model"] == str(other_model)
    copied = client.post(
        f"/v1/collections/{target}/copy", json={"source": collection, "ids": ["pricing", "sync-errors", "gone"]}
    )
    assert copied.json() == {"collection": target, "documents": 2, "chunks": 2, "flagged": []}
    yield target
    client.delete(f"/v1/aliases/{collection}")  # a real Qdrant server outlives the test
    client.delete(f"/v1/collections/{target}")


def test_a_collection_embeds_queries_with_the_model_that_built_it(
    client: TestClient, collection: str, rebuilt: str, other_model: Path
) -> None:
    old, new = _top_hit(client, collection), _top_hit(client, rebuilt)
    assert old["doc_id"] == new["doc_id"] == "pricing"
    assert old["text"] == new["text"] and old["title"] == new["title"]  # the stored chunk, copied as it was
    assert new["score"] == pytest.approx(_cosine(str(other_model), QUESTION, new), abs=1e-4)
    assert old["score"] == pytest.approx(_cosine("", QUESTION, old), abs=1e-4)
    assert abs(new["score"] - old["score"]) > 1e-3


def test_an_alias_switches_a_name_to_another_collection_and_keeps_the_old_one(
    client: TestClient, collection: str, rebuilt: str, other_model: Path
) -> None:
    before = _top_hit(client, collection)
    switched = client.put(f"/v1/aliases/{collection}", json={"collection": rebuilt})
    assert switched.json() == {"name": collection, "collection": rebuilt, "shadows": True, "previous": collection}
    assert _top_hit(client, collection) == _top_hit(client, rebuilt) != before
    listed = _listed(client)[collection]
    assert (listed["alias_of"], listed["embedding_model"], listed["documents"]) == (rebuilt, str(other_model), 2)

    upsert(client, collection, SHORTCUTS)  # writes through the name reach the collection it reads
    assert _listed(client)[rebuilt]["documents"] == 3

    refused = client.delete(f"/v1/collections/{rebuilt}")
    assert refused.status_code == 409 and "read through alias" in refused.json()["error"]["message"]
    assert client.delete(f"/v1/collections/{collection}").json() == {"deleted": collection}  # the old one
    assert _listed(client)[collection]["documents"] == 3
    assert client.delete(f"/v1/aliases/{collection}").json() == {"deleted": collection, "collection": rebuilt}
    assert client.post(f"/v1/collections/{collection}/search", json={"query": QUESTION}).status_code == 404
    assert client.delete(f"/v1/collections/{rebuilt}").status_code == 200


def test_aliases_and_models_that_cannot_be_are_refused(
    client: TestClient, collection: str, rebuilt: str, tmp_path: Path
) -> None:
    def refused(response: Any, status: int, says: str) -> None:
        assert response.status_code == status, response.text
        assert says in response.json()["error"]["message"]

    refused(client.put(f"/v1/aliases/{collection}", json={"collection": collection}), 400, "cannot read itself")
    refused(client.put("/v1/aliases/other", json={"collection": "nope"}), 404, "'nope' does not exist")
    assert client.put(f"/v1/aliases/{collection}", json={"collection": rebuilt}).status_code == 200
    refused(client.put("/v1/aliases/other", json={"collection": collection}), 400, "is an alias")
    refused(client.put(f"/v1/aliases/{rebuilt}", json={"collection": collection}), 400, "read through an alias")
    refused(client.delete("/v1/aliases/nope"), 404, "no alias 'nope'")
    refused(client.put(f"/v1/collections/{rebuilt}", json={"embedding_model": default_model_path()}), 409, "reindex")
    refused(client.put("/v1/collections/new", json={"embedding_model": str(tmp_path / "nope")}), 400, "no model folder")
    refused(client.put("/v1/collections/new", json={"embedding_model": str(tmp_path)}), 400, "does not load")
    refused(
        client.post(f"/v1/collections/{rebuilt}/copy", json={"source": rebuilt, "ids": ["a"]}), 400, "being written"
    )
    refused(client.post(f"/v1/collections/{rebuilt}/copy", json={"source": "nope", "ids": ["a"]}), 404, "'nope'")
    assert "new" not in _listed(client)


def test_aliases_and_models_survive_a_restart(tmp_path: Path, other_model: Path) -> None:
    settings = retrieval_settings("edge", tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/collections/a").status_code == 201
        assert client.put("/v1/collections/b", json={"embedding_model": str(other_model)}).status_code == 201
        assert client.put("/v1/aliases/a", json={"collection": "b"}).status_code == 200
    with TestClient(create_app(settings)) as client:
        listed = _listed(client)
        assert (listed["a"]["alias_of"], listed["a"]["embedding_model"]) == ("b", str(other_model))


def test_reindex_switches_the_name_with_no_window_of_empty_results(
    processes: Processes, retrieval_url: str, other_model: Path, tmp_path: Path
) -> None:
    """Searches run in a loop on the real service while `ragft reindex` copies one document
    per request; every one of them must find passages."""
    name, target, spare, other = (unique_collection() for _ in range(4))
    env = embedded_env(tmp_path, RAGFT_RETRIEVAL_URL=retrieval_url)
    files = sorted(SAMPLE_KB.glob("*.md"))[:8]
    documents = [{"id": f.stem, "text": f.read_text()} for f in files]
    with httpx.Client(base_url=retrieval_url, timeout=60) as http:
        assert http.put(f"/v1/collections/{name}").status_code == 201
        assert http.post(f"/v1/collections/{name}/documents", json={"documents": documents}).status_code == 200
        stop, found, failed = threading.Event(), list[tuple[int, int]](), list[BaseException]()

        def search() -> None:
            with httpx.Client(base_url=retrieval_url, timeout=60) as searcher:
                while not stop.is_set() and len(found) < 10_000:
                    try:
                        answer = searcher.post(f"/v1/collections/{name}/search", json={"query": "How do I sign in?"})
                        found.append((answer.status_code, len(answer.json().get("hits", []))))
                    except Exception as exc:  # reported by the test, not lost in the thread
                        failed.append(exc)
                        return

        searching = threading.Thread(target=search)
        searching.start()
        try:
            done = processes.run(
                "reindex", "--model", str(other_model), "--collection", name, "--into", target, "--batch-size", "1",
                env=env,
            )  # fmt: skip
        finally:
            stop.set()
            searching.join(timeout=60)
        try:
            assert done.returncode == 0, done.stderr[-2000:]
            assert f"'{name}' now reads '{target}': 8 documents" in done.stderr
            assert not failed and len(found) >= 5 and all(status == 200 and hits > 0 for status, hits in found), found
            listed = {c["name"]: c for c in http.get("/v1/collections").json()["collections"]}
            assert listed[name]["alias_of"] == target and listed[name]["documents"] == 8

            for made in (spare, other):
                assert http.put(f"/v1/collections/{made}").status_code == 201
            assert http.post(f"/v1/collections/{other}/documents", json={"documents": documents[:1]}).status_code == 200
            into_spare = ("reindex", "--model", str(other_model), "--collection", name, "--into", spare)
            refused = processes.run(*into_spare, env=env)
            assert refused.returncode == 1 and f"collection '{spare}' exists: pass --replace" in refused.stderr
            replaced = processes.run(*into_spare, "--replace", env=env)
            assert replaced.returncode == 0 and f"'{name}' now reads '{spare}'" in replaced.stderr
            assert f"The previous collection '{target}' is kept" in replaced.stderr
            in_use = ("reindex", "--model", str(other_model), "--collection", other, "--into", spare, "--replace")
            refused = processes.run(*in_use, env=env)
            assert refused.returncode == 1 and f"'{spare}' is read through alias '{name}'" in refused.stderr
            assert http.get(f"/v1/collections/{other}/documents").json()["total"] == 1  # left as it was
        finally:
            http.delete(f"/v1/aliases/{name}")
            for made in (name, target, spare, other):
                http.delete(f"/v1/collections/{made}")


def test_reindex_refuses_an_unknown_or_empty_collection(
    processes: Processes, retrieval_url: str, other_model: Path, tmp_path: Path
) -> None:
    env = embedded_env(tmp_path, RAGFT_RETRIEVAL_URL=retrieval_url)
    unknown = processes.run("reindex", "--model", str(other_model), "--collection", "nope", env=env)
    assert unknown.returncode == 1 and "collection 'nope' does not exist" in unknown.stderr
    empty = unique_collection()
    httpx.put(f"{retrieval_url}/v1/collections/{empty}").raise_for_status()
    try:
        refused = processes.run("reindex", "--model", str(other_model), "--collection", empty, env=env)
        assert refused.returncode == 1 and f"collection '{empty}' is empty" in refused.stderr
    finally:
        httpx.delete(f"{retrieval_url}/v1/collections/{empty}")
