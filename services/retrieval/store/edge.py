"""Embedded backend: Qdrant Edge, the Qdrant engine in-process, one shard folder per collection.

A shard's write-ahead log is locked by the process that opened it, so a second process
(say `ragft ingest --direct` while the service runs) gets a clear error instead of a
corrupted store.
"""

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Fusion,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Prefetch,
    Query,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)
from qdrant_edge import Filter as EdgeFilter

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


class StoreLocked(Exception):
    """Another process has this store open."""


def _edge_filter(flt: Filter) -> EdgeFilter:
    def clause(item: Condition | Filter) -> Any:
        if isinstance(item, Filter):
            return _edge_filter(item)
        key = field_key(item.key)
        if item.range is not None:
            return FieldCondition(key=key, range=RangeFloat(**item.range.model_dump(exclude_none=True)))
        if item.any is not None:
            return FieldCondition(key=key, match=MatchAny(item.any))  # type: ignore[arg-type]
        return FieldCondition(key=key, match=MatchValue(item.match))  # type: ignore[arg-type]

    return EdgeFilter(
        must=[clause(c) for c in flt.must] or None,
        should=[clause(c) for c in flt.should] or None,
        must_not=[clause(c) for c in flt.must_not] or None,
    )


def _doc_filter(doc_id: str, from_chunk: int | None = None) -> EdgeFilter:
    must: list[Any] = [FieldCondition(key="doc_id", match=MatchValue(doc_id))]
    if from_chunk is not None:
        must.append(FieldCondition(key="chunk_index", range=RangeFloat(gte=from_chunk)))
    return EdgeFilter(must=must)


class EdgeStore:
    def __init__(self, root: Path, dimension: int) -> None:
        self.root = root
        self.dimension = dimension
        self._shards: dict[str, EdgeShard] = {}
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        for folder in sorted(root.iterdir()):
            if folder.is_dir() and (folder / "edge_config.json").exists():
                self._shards[folder.name] = self._open(folder)

    def _open(self, folder: Path) -> EdgeShard:
        try:
            return EdgeShard.load(str(folder))
        except Exception as exc:
            if "WouldBlock" in str(exc):
                raise StoreLocked(
                    f"the embedded store at {self.root} is in use by another process "
                    "(is the retrieval service running? then ingest through it instead)"
                ) from exc
            raise

    def _shard(self, name: str) -> EdgeShard:
        shard = self._shards.get(name)
        if shard is None:
            raise CollectionNotFound(name)
        return shard

    def ready(self) -> str | None:
        return None if self.root.is_dir() else f"store folder {self.root} is missing"

    def create_collection(self, name: str) -> bool:
        with self._lock:
            if name in self._shards:
                return False
            folder = self.root / name
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of a create that crashed
            shard = EdgeShard.create(
                str(folder),
                EdgeConfig(
                    vectors={DENSE: EdgeVectorParams(size=self.dimension, distance=Distance.Cosine)},
                    sparse_vectors={BM25: EdgeSparseVectorParams(modifier=Modifier.Idf)},
                ),
            )
            shard.update(UpdateOperation.create_field_index("doc_id", PayloadSchemaType.Keyword))
            shard.update(UpdateOperation.create_field_index("chunk_index", PayloadSchemaType.Integer))
            self._shards[name] = shard
            return True

    def delete_collection(self, name: str) -> bool:
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is None:
                return False
            shard.close()
            shutil.rmtree(self.root / name)
            return True

    def collections(self) -> list[str]:
        return sorted(self._shards)

    def count(self, name: str) -> tuple[int, int]:
        shard = self._shard(name)
        first_chunks = EdgeFilter(must=[FieldCondition(key="chunk_index", match=MatchValue(0))])
        with _store_errors():
            documents = shard.count(CountRequest(exact=True, filter=first_chunks))
            chunks = shard.count(CountRequest(exact=True))
        return documents, chunks

    def upsert(self, name: str, chunks: list[EmbeddedChunk]) -> None:
        shard = self._shard(name)
        points = [
            Point(
                id=item.chunk.point_id,
                vector={DENSE: item.dense, BM25: item.keywords},
                payload=payload(item.chunk),
            )
            for item in chunks
        ]
        with _store_errors():
            shard.update(UpdateOperation.upsert_points(points))

    def delete_stale(self, name: str, chunk_counts: dict[str, int]) -> None:
        shard = self._shard(name)
        stale = EdgeFilter(should=[_doc_filter(doc, count) for doc, count in chunk_counts.items()])
        with _store_errors():
            shard.update(UpdateOperation.delete_points_by_filter(stale))

    def delete_document(self, name: str, doc_id: str) -> int:
        shard = self._shard(name)
        with _store_errors():
            count = shard.count(CountRequest(exact=True, filter=_doc_filter(doc_id)))
            if count:
                shard.update(UpdateOperation.delete_points_by_filter(_doc_filter(doc_id)))
        return int(count)

    def document(self, name: str, doc_id: str) -> list[StoredChunk]:
        shard = self._shard(name)
        with _store_errors():
            records, _ = shard.scroll(ScrollRequest(filter=_doc_filter(doc_id), with_payload=True, with_vector=False))
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
        shard = self._shard(name)
        flt = _edge_filter(filter) if filter else None
        params = SearchParams(exact=True) if exact else None
        dense_query = Query.Nearest(dense, using=DENSE)
        keyword_query = Query.Nearest(keywords, using=BM25)
        if mode == "hybrid":
            fetch = top_k * PREFETCH_FACTOR
            request = QueryRequest(
                prefetches=[
                    Prefetch(query=dense_query, limit=fetch, filter=flt, params=params),
                    Prefetch(query=keyword_query, limit=fetch, filter=flt),
                ],
                query=Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub omits Rrf
                limit=top_k,
                with_payload=True,
            )
        else:
            request = QueryRequest(
                query=dense_query if mode == "dense" else keyword_query,
                limit=top_k,
                filter=flt,
                params=params,
                with_payload=True,
            )
        with _store_errors():
            points = shard.query(request)
        return [StoredChunk.from_payload(p.payload, p.score) for p in points if p.payload]

    def optimize(self, name: str) -> None:
        # Qdrant Edge builds HNSW only when asked, and holds the GIL while it does:
        # call this after bulk ingestion, not on a serving path.
        with _store_errors():
            self._shard(name).optimize()

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.close()
            self._shards.clear()


@contextmanager
def _store_errors() -> Iterator[None]:
    """Qdrant Edge raises bare Exceptions for engine failures; at this boundary they
    become a retryable 503. Anything more specific is a bug and propagates."""
    try:
        yield
    except Exception as exc:
        if type(exc) is not Exception:
            raise
        raise StoreUnavailable(f"embedded Qdrant Edge failed: {exc}") from exc
