"""Bad input gets a clear 4xx in the standard error shape and changes nothing; a store
failure mid-batch gets a 503 that a retry of the same request completes."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.retrieval.app import create_app
from services.retrieval.store import StoreUnavailable, VectorStore
from tests.utils.retrieval import retrieval_settings, unique_collection, upsert

GOOD = {"id": "ok", "text": "A fine document."}
INVALID = "invalid_request"
TOO_LARGE = "payload_too_large"


def _counts(client: TestClient, collection: str) -> tuple[int, int]:
    info = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}[collection]
    return info["documents"], info["chunks"]


def _assert_error(response, status: int, type_: str, mentions: str, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert mentions in error["message"], error
    if param is not None:
        assert error["param"] == param, error
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    ("body", "status", "type_", "mentions", "param"),
    [
        ({"documents": [GOOD, {"id": "e", "text": ""}]}, 422, INVALID, "at least 1", "documents.1.text"),
        (
            {"documents": [GOOD, {"id": "w", "text": " \n\t "}]},
            422,
            "invalid_request",
            "whitespace",
            "documents.1.text",
        ),
        ({"documents": [GOOD, {"id": "", "text": "x"}]}, 422, INVALID, "at least 1", "documents.1.id"),
        ({"documents": [GOOD, GOOD]}, 422, INVALID, "appears twice", "documents"),
        ({"documents": []}, 422, INVALID, "at least 1", "documents"),
        ({"docs": [GOOD]}, 422, INVALID, "Field required", "documents"),
        ({"documents": [{**GOOD, "metadata": "x"}]}, 422, INVALID, "dictionary", "documents.0.metadata"),
        ({"documents": [{"id": "big", "text": "x" * 5001}]}, 413, TOO_LARGE, "5001 characters", None),
        (
            {"documents": [{"id": f"d{i}", "text": "t"} for i in range(11)]},
            413,
            "payload_too_large",
            "11 documents",
            None,
        ),
    ],
)
def test_bad_upserts_are_refused_and_change_nothing(
    backend: str, tmp_path: Path, body: dict, status: int, type_: str, mentions: str, param: str | None
) -> None:
    settings = retrieval_settings(backend, tmp_path, max_document_chars=5000, max_batch_documents=10)
    name = unique_collection()
    with TestClient(create_app(settings)) as client:
        client.put(f"/v1/collections/{name}")
        upsert(client, name, ("before", "Already here."))
        response = client.post(f"/v1/collections/{name}/documents", json=body)
        _assert_error(response, status, type_, mentions, param)
        assert _counts(client, name) == (1, 1)
        client.delete(f"/v1/collections/{name}")


@pytest.mark.parametrize(
    ("body", "mentions", "param"),
    [
        ({}, "Field required", "query"),
        ({"query": ""}, "at least 1", "query"),
        ({"query": "   "}, "whitespace", "query"),
        ({"query": "x", "top_k": 0}, "greater than or equal to 1", "top_k"),
        ({"query": "x", "top_k": 101}, "less than or equal to 100", "top_k"),
        ({"query": "x", "mode": "fuzzy"}, "'hybrid', 'dense' or 'keyword'", "mode"),
        ({"query": "x", "filter": {}}, "at least one of must, should, must_not", "filter"),
        ({"query": "x", "filter": {"must": [{"key": "a"}]}}, "exactly one of match, any, range", None),
        ({"query": "x", "filter": {"must": [{"key": "a", "match": 1, "range": {"gt": 0}}]}}, "exactly one of", None),
        ({"query": "x", "filter": {"must": [{"key": "a b", "match": 1}]}}, "invalid field key", None),
        ({"query": "x", "filter": {"must": [{"key": "a..b", "match": 1}]}}, "invalid field key", None),
        ({"query": "x", "filter": {"must": [{"key": "a.", "match": 1}]}}, "invalid field key", None),
        ({"query": "x", "filter": {"must": [{"key": "a", "range": {}}]}}, "at least one of gt, gte, lt, lte", None),
        ({"query": "x", "filter": {"must": [{"key": "a", "match": 1, "bogus": 2}]}}, "Extra inputs", None),
    ],
)
def test_bad_searches_name_the_problem(
    client: TestClient, collection: str, body: dict, mentions: str, param: str | None
) -> None:
    response = client.post(f"/v1/collections/{collection}/search", json=body)
    _assert_error(response, 422, INVALID, mentions, param)


def test_malformed_json_is_a_422(client: TestClient, collection: str) -> None:
    response = client.post(
        f"/v1/collections/{collection}/documents",
        content=b'{"documents": [',
        headers={"content-type": "application/json"},
    )
    _assert_error(response, 422, INVALID, "not valid JSON", "body")


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
    _assert_error(client.put("/v1/collections/bad name!"), 422, INVALID, "name")


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
    name = unique_collection()
    with TestClient(app) as client:
        client.put(f"/v1/collections/{name}")
        retrieval = app.state.retrieval
        retrieval.indexer.store = FailingOnce(retrieval.store, fail_on_call=2)
        docs = [(f"doc{i}", f"# Doc {i}\n\nFact number {i} is {i * 7}.") for i in range(5)]
        body = {"documents": [{"id": i, "text": t} for i, t in docs]}
        failed = client.post(f"/v1/collections/{name}/documents", json=body)
        _assert_error(failed, 503, "upstream_unavailable", "simulated store outage")
        assert failed.headers["Retry-After"].isdigit()
        assert _counts(client, name)[1] == 2  # the first write landed, the rest did not
        retried = client.post(f"/v1/collections/{name}/documents", json=body)
        assert retried.status_code == 200, retried.text
        assert _counts(client, name) == (5, 5)
        client.delete(f"/v1/collections/{name}")
