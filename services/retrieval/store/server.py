"""Production backend: a Qdrant server through qdrant-client.

Collections get the same layout as the embedded store: named `dense` and `bm25` vectors,
payload indexes on `doc_id` and `chunk_index`. Every write waits for Qdrant's
acknowledgement (`wait=True`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from qdrant_edge import SparseVector

from services.retrieval.schemas import Condition, Filter, SearchMode
from services.retrieval.store.base import (
    BM25,
    DENSE,
    PREFETCH_FACTOR,
    RRF_K,
    CollectionNotFound,
    EmbeddedChunk,
    StoredChunk,
    StoreUnavailable,
    field_key,
    payload,
)


def _server_filter(flt: Filter) -> qm.Filter:
    def clause(item: Condition | Filter) -> Any:
        if isinstance(item, Filter):
            return _server_filter(item)
        key = field_key(item.key)
        if item.range is not None:
            return qm.FieldCondition(key=key, range=qm.Range(**item.range.model_dump()))
        if item.any is not None:
            return qm.FieldCondition(key=key, match=qm.MatchAny(any=item.any))
        return qm.FieldCondition(key=key, match=qm.MatchValue(value=item.match))

    return qm.Filter(
        must=[clause(c) for c in flt.must] or None,
        should=[clause(c) for c in flt.should] or None,
        must_not=[clause(c) for c in flt.must_not] or None,
    )


def _doc_filter(doc_id: str, from_chunk: int | None = None) -> qm.Filter:
    must: list[Any] = [qm.FieldCondition(key="doc_id", match=qm.MatchValue(value=doc_id))]
    if from_chunk is not None:
        must.append(qm.FieldCondition(key="chunk_index", range=qm.Range(gte=from_chunk)))
    return qm.Filter(must=must)


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
    except ValueError as exc:  # qdrant-client's in-memory mode reports missing collections so
        if collection is not None and "not found" in str(exc):
            raise CollectionNotFound(collection) from exc
        raise


class ServerStore:
    def __init__(self, url: str, dimension: int, *, api_key: str | None = None) -> None:
        # location=":memory:" gives qdrant-client's in-process stand-in (tests only).
        self.client = QdrantClient(location=url, api_key=api_key, timeout=30)
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
            if self.client.collection_exists(name):
                return False
            self.client.create_collection(
                name,
                vectors_config={DENSE: qm.VectorParams(size=self.dimension, distance=qm.Distance.COSINE)},
                sparse_vectors_config={BM25: qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
            )
            self.client.create_payload_index(name, "doc_id", qm.PayloadSchemaType.KEYWORD, wait=True)
            self.client.create_payload_index(name, "chunk_index", qm.PayloadSchemaType.INTEGER, wait=True)
        return True

    def delete_collection(self, name: str) -> bool:
        with _server_errors():
            if not self.client.collection_exists(name):
                return False
            return bool(self.client.delete_collection(name))

    def collections(self) -> list[str]:
        with _server_errors():
            return sorted(c.name for c in self.client.get_collections().collections)

    def count(self, name: str) -> tuple[int, int]:
        first_chunks = qm.Filter(must=[qm.FieldCondition(key="chunk_index", match=qm.MatchValue(value=0))])
        with _server_errors(name):
            documents = self.client.count(name, count_filter=first_chunks, exact=True).count
            chunks = self.client.count(name, exact=True).count
        return documents, chunks

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

    def delete_stale(self, name: str, chunk_counts: dict[str, int]) -> None:
        stale = qm.Filter(should=[_doc_filter(doc, count) for doc, count in chunk_counts.items()])
        with _server_errors(name):
            self.client.delete(name, points_selector=qm.FilterSelector(filter=stale), wait=True)

    def delete_document(self, name: str, doc_id: str) -> int:
        with _server_errors(name):
            count = self.client.count(name, count_filter=_doc_filter(doc_id), exact=True).count
            if count:
                self.client.delete(
                    name,
                    points_selector=qm.FilterSelector(filter=_doc_filter(doc_id)),
                    wait=True,
                )
        return count

    def document(self, name: str, doc_id: str) -> list[StoredChunk]:
        records: list[qm.Record] = []
        offset: Any = None
        with _server_errors(name):
            while True:
                page, offset = self.client.scroll(
                    name,
                    scroll_filter=_doc_filter(doc_id),
                    limit=256,
                    offset=offset,
                    with_payload=True,
                )
                records.extend(page)
                if offset is None:
                    break
        chunks = [StoredChunk.from_payload(r.payload) for r in records if r.payload]
        return sorted(chunks, key=lambda c: c.chunk_index)

    def search(
        self,
        name: str,
        *,
        dense: list[float],
        keywords: SparseVector,
        mode: SearchMode,
        top_k: int,
        filter: Filter | None = None,
        exact: bool = False,
    ) -> list[StoredChunk]:
        flt = _server_filter(filter) if filter else None
        params = qm.SearchParams(exact=True) if exact else None
        with _server_errors(name):
            if mode == "hybrid":
                fetch = top_k * PREFETCH_FACTOR
                response = self.client.query_points(
                    name,
                    prefetch=[
                        qm.Prefetch(
                            query=dense,
                            using=DENSE,
                            limit=fetch,
                            filter=flt,
                            params=params,
                        ),
                        qm.Prefetch(query=_sparse(keywords), using=BM25, limit=fetch, filter=flt),
                    ],
                    query=qm.RrfQuery(rrf=qm.Rrf(k=RRF_K)),
                    limit=top_k,
                    with_payload=True,
                )
            else:
                query: Any = dense if mode == "dense" else _sparse(keywords)
                response = self.client.query_points(
                    name,
                    query=query,
                    using=DENSE if mode == "dense" else BM25,
                    query_filter=flt,
                    search_params=params,
                    limit=top_k,
                    with_payload=True,
                )
        return [StoredChunk.from_payload(p.payload, p.score) for p in response.points if p.payload]

    def optimize(self, name: str) -> None:
        """Qdrant server's optimizer indexes in the background."""

    def close(self) -> None:
        self.client.close()
