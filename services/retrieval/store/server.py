"""Production backend: a Qdrant server through qdrant-client.

Collections get the same layout as the embedded store: named `dense` and `bm25` vectors,
payload indexes on `doc_id` and `chunk_index`. Every write waits for Qdrant's
acknowledgement (`wait=True`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from qdrant_edge import SparseVector

from services.retrieval.store.base import VectorStore
from services.retrieval.store.errors import CollectionNotFound, StoreUnavailable
from services.retrieval.store.points import (
    BM25,
    DENSE,
    PREFETCH_FACTOR,
    RRF_K,
    TIE_MARGIN,
    EmbeddedChunk,
    StoreQuery,
    payload,
)

# A payload-only collection holding ragft's catalog in one point. The dot keeps the name out
# of what clients may name a collection.
CATALOG_COLLECTION = "ragft.catalog"


def _sparse(vector: SparseVector) -> qm.SparseVector:
    return qm.SparseVector(indices=list(vector.indices), values=list(vector.values))


@contextmanager
def _server_errors(collection: str | None = None) -> Iterator[None]:
    """Translate qdrant-client's failures once: a missing collection is the caller's 404,
    anything else means the server is unavailable (503, retryable)."""
    try:
        yield
    except UnexpectedResponse as exc:
        if exc.status_code == 404 and collection is not None:
            raise CollectionNotFound(collection) from exc
        raise StoreUnavailable(f"Qdrant answered {exc.status_code}: {exc.reason_phrase}") from exc
    except (ResponseHandlingException, httpx.HTTPError) as exc:
        raise StoreUnavailable(f"Qdrant is unreachable: {exc}") from exc
    except ValueError as exc:  # how qdrant-client's in-memory mode reports a missing collection
        if collection is not None and "not found" in str(exc):
            raise CollectionNotFound(collection) from exc
        raise


class ServerStore(VectorStore):
    # Each replica rereads the catalog this often: an alias switch reaches them all within it.
    CATALOG_SECONDS = 2.0

    def __init__(self, url: str, dimension: int, *, api_key: str | None = None) -> None:
        super().__init__()
        # location=":memory:" gives qdrant-client's in-process stand-in (tests only).
        self.client = QdrantClient(location=url, api_key=api_key, timeout=10)
        self.dimension = dimension

    def ready(self) -> str | None:
        try:
            with _server_errors():
                self.client.get_collections()
        except StoreUnavailable as exc:
            return exc.message
        return None

    def create_collection(self, name: str) -> bool:
        with _server_errors():
            created = not self.client.collection_exists(name)
            if created:
                self.client.create_collection(
                    name,
                    vectors_config={DENSE: qm.VectorParams(size=self.dimension, distance=qm.Distance.COSINE)},
                    sparse_vectors_config={BM25: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
                )
            # Idempotent, and also on the "exists" path: a create that failed half-way is completed.
            self.client.create_payload_index(name, "doc_id", qm.PayloadSchemaType.KEYWORD, wait=True)
            self.client.create_payload_index(name, "chunk_index", qm.PayloadSchemaType.INTEGER, wait=True)
        return created

    def delete_collection(self, name: str) -> bool:
        with _server_errors():
            if not self.client.collection_exists(name):
                return False
            return bool(self.client.delete_collection(name))

    def collections(self) -> list[str]:
        with _server_errors():
            return sorted(c.name for c in self.client.get_collections().collections if c.name != CATALOG_COLLECTION)

    def _read_catalog(self) -> dict[str, Any] | None:
        with _server_errors():
            if not self.client.collection_exists(CATALOG_COLLECTION):
                return None
            records = self.client.retrieve(CATALOG_COLLECTION, [0], with_payload=True)
        return records[0].payload if records else None

    def _write_catalog(self, catalog: dict[str, Any]) -> None:
        with _server_errors():
            if not self.client.collection_exists(CATALOG_COLLECTION):
                self.client.create_collection(CATALOG_COLLECTION, vectors_config={})
            self.client.upsert(CATALOG_COLLECTION, [qm.PointStruct(id=0, vector={}, payload=catalog)], wait=True)

    def optimize(self, name: str) -> None:
        """Qdrant server's optimizer indexes in the background."""

    def close(self) -> None:
        self.client.close()

    def upsert(self, name: str, chunks: list[EmbeddedChunk]) -> None:
        points = [
            qm.PointStruct(
                id=item.chunk.point_id,
                vector={DENSE: item.dense, BM25: _sparse(item.keywords)},
                payload=payload(item.chunk),
            )
            for item in chunks
        ]
        with _server_errors(name):
            self.client.upsert(name, points=points, wait=True)

    def _count(self, name: str, flt: Any | None) -> int:
        with _server_errors(name):
            return self.client.count(name, count_filter=flt, exact=True).count

    def _delete(self, name: str, flt: Any) -> None:
        with _server_errors(name):
            self.client.delete(name, points_selector=qm.FilterSelector(filter=flt), wait=True)

    def _scroll_page(self, name: str, flt: Any, offset: Any) -> tuple[list[dict[str, Any]], Any]:
        with _server_errors(name):
            records, offset = self.client.scroll(
                name, scroll_filter=flt, limit=self.scroll_page, offset=offset, with_payload=True
            )
        return [r.payload for r in records if r.payload], offset

    def _query(self, name: str, query: StoreQuery, flt: Any | None) -> list[tuple[dict[str, Any], float]]:
        dense, keywords, mode, top_k = query.dense, query.keywords, query.mode, query.top_k
        params = qm.SearchParams(exact=True) if query.exact else None
        with _server_errors(name):
            if mode == "hybrid":
                fetch = top_k * PREFETCH_FACTOR
                response = self.client.query_points(
                    name,
                    prefetch=[
                        qm.Prefetch(query=dense, using=DENSE, limit=fetch, filter=flt, params=params),
                        qm.Prefetch(query=_sparse(keywords), using=BM25, limit=fetch, filter=flt),
                    ],
                    query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
                    limit=top_k + TIE_MARGIN,
                    with_payload=True,
                )
            else:
                nearest: Any = dense if mode == "dense" else _sparse(keywords)
                response = self.client.query_points(
                    name,
                    query=nearest,
                    using=DENSE if mode == "dense" else BM25,
                    query_filter=flt,
                    search_params=params,
                    limit=top_k + TIE_MARGIN,
                    with_payload=True,
                )
        return [(p.payload, p.score) for p in response.points if p.payload]

    def _match(self, key: str, value: str | int | bool) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))

    def _match_any(self, key: str, values: list[str] | list[int]) -> Any:
        return qm.FieldCondition(key=key, match=qm.MatchAny(any=values))

    def _range(self, key: str, bounds: dict[str, float]) -> Any:
        return qm.FieldCondition(key=key, range=qm.Range(**bounds))

    def _date_range(self, key: str, bounds: dict[str, datetime]) -> Any:
        return qm.FieldCondition(key=key, range=qm.DatetimeRange(**bounds))

    def _filter(self, must: list[Any], should: list[Any], must_not: list[Any]) -> Any:
        return qm.Filter(must=must or None, should=should or None, must_not=must_not or None)
