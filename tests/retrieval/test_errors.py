"""Bad input gets a clear 4xx in the standard error shape and changes nothing; a store
failure mid-batch gets a 503 that a retry of the same request completes."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.retrieval.app import create_app
from services.retrieval.store import StoreUnavailable, VectorStore
from tests.conftest import retrieval_settings, upsert

GOOD = {"id": "ok", "text": "A fine document."}


def _counts(client: TestClient, collection: str) -> tuple[int, int]:
    info = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}[collection]
    return info["documents"], info["chunks"]


def _assert_error(response, status: int, type_: str, mentions: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert mentions in error["message"] or mentions == error["param"], error
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("body", "status", "type_", "mentions"),
    [
        ({"documents": [GOOD, {"id": "e", "text": ""}]}, 422, "invalid_request", "documents.1.text"),
        ({"documents": [GOOD, {"id": "w", "text": " \n\t "}]}, 422, "invalid_request", "whitespace"),
        ({"documents": [GOOD, {"id": "", "text": "x"}]}, 422, "invalid_request", "documents.1.id"),
        ({"documents": [GOOD, GOOD]}, 422, "invalid_request", "appears twice"),
        ({"documents": []}, 422, "invalid_request", "documents"),
        ({"docs": [GOOD]}, 422, "invalid_request", "documents"),
        ({"documents": [{**GOOD, "metadata": "not-an-object"}]}, 422, "invalid_request", "documents.0.metadata"),
        ({"documents": [{"id": "big", "text": "x" * 5001}]}, 413, "payload_too_large", "5001 characters"),
        ({"documents": [{"id": f"d{i}", "text": "t"} for i in range(11)]}, 413, "payload_too_large", "11 documents"),
    ],
)
def test_bad_upserts_are_refused_and_change_nothing(
    backend: str,
    tmp_path: Path,
    body: dict,
    status: int,
    type_: str,
    mentions: str,
) -> None:
    settings = retrieval_settings(backend, tmp_path, max_document_chars=5000, max_batch_documents=10)
    with TestClient(create_app(settings)) as client:
        client.put("/v1/collections/kb")
        upsert(client, "kb", ("before", "Already here."))
        _assert_error(client.post("/v1/collections/kb/documents", json=body), status, type_, mentions)
        assert _counts(client, "kb") == (1, 1)


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": 101}, "top_k"),
        ({"query": "   "}, "query"),
        ({"query": "x", "mode": "fuzzy"}, "mode"),
        ({"query": "x", "filter": {}}, "filter"),
        ({"query": "x", "filter": {"must": [{"key": "a"}]}}, "filter"),
        ({"query": "x", "filter": {"must": [{"key": "a", "match": 1, "range": {"gt": 0}}]}}, "filter"),
        ({"query": "x", "filter": {"must": [{"key": "a b", "match": 1}]}}, "invalid field key"),
        ({"query": "x", "filter": {"must": [{"key": "a", "range": {}}]}}, "filter"),
        ({"query": "x", "filter": {"must": [{"key": "a", "match": 1, "bogus": 2}]}}, "bogus"),
    ],
)
def test_bad_searches_name_the_problem(client: TestClient, collection: str, body: dict, mentions: str) -> None:
    _assert_error(client.post(f"/v1/collections/{collection}/search", json=body), 422, "invalid_request", mentions)


def test_malformed_json_is_a_422(client: TestClient, collection: str) -> None:
    response = client.post(
        f"/v1/collections/{collection}/documents",
        content=b'{"documents": [',
        headers={"content-type": "application/json"},
    )
    _assert_error(response, 422, "invalid_request", "not valid JSON")
    assert response.json()["error"]["param"] == "body"


def test_unknown_collection_is_a_404_everywhere(client: TestClient) -> None:
    for method, path, body in [
        ("POST", "/v1/collections/nope/documents", {"documents": [GOOD]}),
        ("POST", "/v1/collections/nope/search", {"query": "x"}),
        ("GET", "/v1/collections/nope/documents/a", None),
        ("DELETE", "/v1/collections/nope/documents/a", None),
        ("DELETE", "/v1/collections/nope", None),
    ]:
        _assert_error(client.request(method, path, json=body), 404, "not_found", "nope")
    assert "nope" not in {c["name"] for c in client.get("/v1/collections").json()["collections"]}


def test_invalid_collection_name(client: TestClient) -> None:
    _assert_error(client.put("/v1/collections/bad name!"), 422, "invalid_request", "name")


def test_unknown_document_is_a_404(client: TestClient, collection: str) -> None:
    _assert_error(client.get(f"/v1/collections/{collection}/documents/ghost"), 404, "not_found", "ghost")


class FailingOnce:
    """Stand-in to control a fault: the real store, except that one chosen upsert call fails
    the way a store outage does."""

    def __init__(self, store: VectorStore, fail_on_call: int) -> None:
        self._store = store
        self._calls = 0
        self._fail_on_call = fail_on_call

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def upsert(self, name, chunks) -> None:
        self._calls += 1
        if self._calls == self._fail_on_call:
            raise StoreUnavailable("simulated store outage")
        self._store.upsert(name, chunks)


def test_store_failure_mid_batch_is_a_503_and_the_retry_completes(backend: str, tmp_path: Path) -> None:
    settings = retrieval_settings(backend, tmp_path, upsert_batch_points=2)
    app = create_app(settings)
    with TestClient(app) as client:
        client.put("/v1/collections/kb")
        retrieval = app.state.retrieval
        retrieval.indexer.store = FailingOnce(retrieval.store, fail_on_call=2)
        docs = [(f"doc{i}", f"# Doc {i}\n\nFact number {i} is {i * 7}.") for i in range(5)]
        body = {"documents": [{"id": i, "text": t} for i, t in docs]}
        failed = client.post("/v1/collections/kb/documents", json=body)
        _assert_error(failed, 503, "upstream_unavailable", "simulated store outage")
        assert failed.headers["Retry-After"].isdigit()
        assert _counts(client, "kb")[1] == 2  # the first write landed, the rest did not
        retried = client.post("/v1/collections/kb/documents", json=body)
        assert retried.status_code == 200, retried.text
        assert _counts(client, "kb") == (5, 5)
