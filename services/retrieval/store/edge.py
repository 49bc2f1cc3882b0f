"""Embedded backend: Qdrant Edge, the Qdrant engine in-process, one shard folder per collection.

The store folder is locked (flock) by the process that opened it, so a second process (say
`ragft ingest --direct` while the service runs) gets a clear error instead of a store that two
writers share.
"""

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
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
    RangeDateTime,
    RangeFloat,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)
from qdrant_edge import Filter as EdgeFilter

from ragft.errors import UserFacingError
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

CONFIG_FILE = "edge_config.json"
CATALOG_FILE = "catalog.json"


class StoreLocked(UserFacingError):
    """Another process has this store open."""


class IncompatibleCollection(Exception):
    """A collection was built with another embedding model (a different vector size)."""


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


class EdgeStore(VectorStore):
    def __init__(self, root: Path, dimension: int) -> None:
        super().__init__()
        self.root = root
        self.dimension = dimension
        self._shards: dict[str, EdgeShard] = {}
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(
                f"the embedded store at {root} is in use by another process "
                "(is the retrieval service running? then ingest through it instead)"
            ) from None
        for folder in sorted(root.iterdir()):
            if (folder / CONFIG_FILE).exists():
                self._shards[folder.name] = self._load(folder)

    def _read_catalog(self) -> dict[str, Any] | None:
        path = self.root / CATALOG_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _write_catalog(self, catalog: dict[str, Any]) -> None:
        staged = self.root / f"{CATALOG_FILE}.tmp"
        with staged.open("w") as out:
            json.dump(catalog, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        staged.replace(self.root / CATALOG_FILE)  # atomic: the old catalog or the new, never half

    def _config(self) -> EdgeConfig:
        return EdgeConfig(
            vectors={DENSE: EdgeVectorParams(size=self.dimension, distance=Distance.Cosine)},
            sparse_vectors={BM25: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        )

    def _load(self, folder: Path) -> EdgeShard:
        try:
            return EdgeShard.load(str(folder), self._config())
        except Exception as exc:
            if "incompatible" in str(exc):
                raise IncompatibleCollection(
                    f"collection {folder.name!r} in {self.root} was built with another embedding model "
                    f"(this one makes {self.dimension}-d vectors): {exc}"
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
            # A folder without a shard config is what a crash during create leaves behind.
            shutil.rmtree(folder, ignore_errors=True)
            with _store_errors():
                shard = EdgeShard.create(str(folder), self._config())
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
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def upsert(self, name: str, chunks: list[EmbeddedChunk]) -> None:
        shard = self._shard(name)
        points = [
            Point(id=item.chunk.point_id, vector={DENSE: item.dense, BM25: item.keywords}, payload=payload(item.chunk))
            for item in chunks
        ]
        with _store_errors():
            shard.update(UpdateOperation.upsert_points(points))

    def _count(self, name: str, flt: Any | None) -> int:
        shard = self._shard(name)
        with _store_errors():
            return int(shard.count(CountRequest(exact=True, filter=flt)))

    def _delete(self, name: str, flt: Any) -> None:
        shard = self._shard(name)
        with _store_errors():
            shard.update(UpdateOperation.delete_points_by_filter(flt))

    def _scroll_page(self, name: str, flt: Any, offset: Any) -> tuple[list[dict[str, Any]], Any]:
        shard = self._shard(name)
        with _store_errors():
            records, offset = shard.scroll(
                ScrollRequest(offset=offset, limit=self.scroll_page, filter=flt, with_payload=True, with_vector=False)
            )
        return [r.payload for r in records if r.payload], offset

    def _query(self, name: str, query: StoreQuery, flt: Any | None) -> list[tuple[dict[str, Any], float]]:
        dense, keywords, mode, top_k = query.dense, query.keywords, query.mode, query.top_k
        shard = self._shard(name)
        params = SearchParams(exact=True) if query.exact else None
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
                limit=top_k + TIE_MARGIN,
                with_payload=True,
            )
        else:
            request = QueryRequest(
                query=dense_query if mode == "dense" else keyword_query,
                limit=top_k + TIE_MARGIN,
                filter=flt,
                params=params,
                with_payload=True,
            )
        with _store_errors():
            points = shard.query(request)
        return [(p.payload, p.score) for p in points if p.payload]

    def _match(self, key: str, value: str | int | bool) -> Any:
        return FieldCondition(key=key, match=MatchValue(value))

    def _match_any(self, key: str, values: list[str] | list[int]) -> Any:
        return FieldCondition(key=key, match=MatchAny(values))

    def _range(self, key: str, bounds: dict[str, float]) -> Any:
        return FieldCondition(key=key, range=RangeFloat(**bounds))

    def _date_range(self, key: str, bounds: dict[str, datetime]) -> Any:
        return FieldCondition(key=key, range=RangeDateTime(**{bound: at.isoformat() for bound, at in bounds.items()}))

    def _filter(self, must: list[Any], should: list[Any], must_not: list[Any]) -> Any:
        return EdgeFilter(must=must or None, should=should or None, must_not=must_not or None)
