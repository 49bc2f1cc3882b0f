"""The interface both backends implement, and what they share: filters, document reads,
stale-chunk cleanup, search's ordering, and the catalog's storage (its rules: catalog.py; the
point layout: points.py)."""

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from qdrant_edge import SparseVector

from services.retrieval.config import Backend
from services.retrieval.schemas import Condition, Filter
from services.retrieval.store.catalog import Catalog
from services.retrieval.store.points import EmbeddedChunk, StoredChunk, StoreQuery, field_key


class VectorStore(ABC):
    """What the service needs from a store. The algorithms (filters, stale-chunk cleanup,
    document reads, the catalog) live here once; each backend supplies the primitives in its
    own client's types."""

    # How long a read catalog is trusted: another process may change it (a server's other replicas).
    CATALOG_SECONDS = math.inf
    scroll_page = 256  # points per scroll call

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._catalog_read_at = 0.0
        self._catalog_lock = threading.Lock()

    # -- per backend: the catalog's storage ----------------------------------------------
    @abstractmethod
    def _read_catalog(self) -> dict[str, Any] | None:
        """The stored catalog; None before the first write."""

    @abstractmethod
    def _write_catalog(self, catalog: dict[str, Any]) -> None:
        """Replace the stored catalog in one write, so a reader sees the old or the new one."""

    # -- per backend: collections --------------------------------------------------------
    @abstractmethod
    def ready(self) -> str | None:
        """None when the store answers, else why not."""

    @abstractmethod
    def create_collection(self, name: str) -> bool:
        """Create if missing (and make sure its payload indexes exist); True when created now."""

    @abstractmethod
    def delete_collection(self, name: str) -> bool: ...

    @abstractmethod
    def collections(self) -> list[str]: ...

    @abstractmethod
    def optimize(self, name: str) -> None:
        """Build the search index now (blocking). A Qdrant server does this by itself."""

    @abstractmethod
    def close(self) -> None: ...

    # -- per backend: points -------------------------------------------------------------
    @abstractmethod
    def upsert(self, name: str, chunks: list[EmbeddedChunk]) -> None:
        """Returns once the store has acknowledged the write."""

    @abstractmethod
    def _count(self, name: str, flt: Any | None) -> int: ...

    @abstractmethod
    def _delete(self, name: str, flt: Any) -> None: ...

    @abstractmethod
    def _scroll_page(self, name: str, flt: Any, offset: Any) -> tuple[list[dict[str, Any]], Any]:
        """One page of payloads matching the filter, from `offset` (None: the first page), and
        the next page's offset (None after the last)."""

    def _scroll(self, name: str, flt: Any) -> list[dict[str, Any]]:
        """Payloads of every point matching the filter."""
        payloads, offset = self._scroll_page(name, flt, None)
        while offset is not None:
            page, offset = self._scroll_page(name, flt, offset)
            payloads += page
        return payloads

    @abstractmethod
    def _query(self, name: str, query: StoreQuery, flt: Any | None) -> list[tuple[dict[str, Any], float]]:
        """Up to top_k + TIE_MARGIN (payload, score) pairs, best first; hybrid fuses dense and
        keyword results (top_k * PREFETCH_FACTOR of each) by RRF."""

    # -- per backend: filter construction ------------------------------------------------
    @abstractmethod
    def _match(self, key: str, value: str | int | bool) -> Any: ...

    @abstractmethod
    def _match_any(self, key: str, values: list[str] | list[int]) -> Any: ...

    @abstractmethod
    def _range(self, key: str, bounds: dict[str, float]) -> Any: ...

    @abstractmethod
    def _date_range(self, key: str, bounds: dict[str, datetime]) -> Any: ...

    @abstractmethod
    def _filter(self, must: list[Any], should: list[Any], must_not: list[Any]) -> Any: ...

    # -- shared: the catalog -------------------------------------------------------------
    def catalog(self) -> Catalog:
        with self._catalog_lock:
            if self._catalog is None or time.monotonic() - self._catalog_read_at > self.CATALOG_SECONDS:
                self._catalog = self._load_catalog()
            return self._catalog

    def _load_catalog(self) -> Catalog:
        self._catalog_read_at = time.monotonic()
        return Catalog.model_validate(self._read_catalog() or {})

    def _update_catalog(self, change: Callable[[Catalog], Catalog]) -> None:
        """Change the stored catalog as read now (another process may have written since) and
        write it whole; readers keep the old one until the new one is in place. Checks made in
        `change` hold for the write: it happens under the same lock."""
        with self._catalog_lock:
            catalog = change(self._load_catalog())
            self._write_catalog(catalog.model_dump())
            self._catalog = catalog

    def resolve(self, name: str) -> str:
        """The collection a name reads: an alias's target, else the name itself."""
        return self.catalog().aliases.get(name, name)

    def set_alias(self, alias: str, collection: str) -> str | None:
        """Point `alias` at `collection`; returns the collection the name read before, if any."""
        previous: list[str | None] = []

        def change(catalog: Catalog) -> Catalog:
            changed, was = catalog.with_alias(alias, collection, self.collections())
            previous.append(was)
            return changed

        self._update_catalog(change)
        return previous[0]

    def drop_alias(self, alias: str) -> str:
        """Remove an alias; returns the collection it read."""
        dropped: list[str] = []

        def change(catalog: Catalog) -> Catalog:
            changed, was = catalog.without_alias(alias)
            dropped.append(was)
            return changed

        self._update_catalog(change)
        return dropped[0]

    def record_model(self, collection: str, model: str, backend: Backend) -> None:
        """The model a collection's vectors come from, and the backend that computes them."""
        self._update_catalog(lambda catalog: catalog.with_model(collection, model, backend))

    def record_allowed_domains(self, collection: str, domains: list[str]) -> None:
        """The domains the links and addresses of `collection`'s answers may name."""
        self._update_catalog(lambda catalog: catalog.with_allowed_domains(collection, domains))

    def remove_collection(self, name: str) -> None:
        """Delete the collection of exactly this name, never one an alias reads, and forget its model."""

        def change(catalog: Catalog) -> Catalog:
            catalog.check_deletable(name)
            if not self.delete_collection(name):
                raise catalog.not_found(name)
            return catalog.without_collection(name)

        self._update_catalog(change)

    # -- shared --------------------------------------------------------------------------
    def translate(self, flt: Filter) -> Any:
        def clause(item: Condition | Filter) -> Any:
            if isinstance(item, Filter):
                return self.translate(item)
            key = field_key(item.key)
            if item.range is not None:
                bounds: Any = item.range.bounds
                return self._date_range(key, bounds) if item.range.of_dates else self._range(key, bounds)
            if item.any is not None:
                return self._match_any(key, item.any)  # type: ignore[arg-type]
            assert item.match is not None
            return self._match(key, item.match)

        return self._filter(
            [clause(c) for c in flt.must], [clause(c) for c in flt.should], [clause(c) for c in flt.must_not]
        )

    def _doc_filter(self, doc_id: str, from_chunk: int | None = None) -> Any:
        must = [self._match("doc_id", doc_id)]
        if from_chunk is not None:
            must.append(self._range("chunk_index", {"gte": from_chunk}))
        return self._filter(must, [], [])

    def _first_chunks(self) -> Any:
        """Every document has exactly one chunk 0."""
        return self._filter([self._match("chunk_index", 0)], [], [])

    def count(self, name: str) -> tuple[int, int]:
        """(documents, chunks) in a collection."""
        return self._count(name, self._first_chunks()), self._count(name, None)

    def delete_stale(self, name: str, chunk_counts: dict[str, int]) -> None:
        """Delete each document's chunks numbered at or above its new chunk count."""
        stale = [self._doc_filter(doc, count) for doc, count in chunk_counts.items()]
        self._delete(name, self._filter([], stale, []))

    def delete_document(self, name: str, doc_id: str) -> int:
        """Delete all chunks of a document; returns how many there were."""
        count = self._count(name, self._doc_filter(doc_id))
        if count:
            self._delete(name, self._doc_filter(doc_id))
        return count

    def document(self, name: str, doc_id: str) -> list[StoredChunk]:
        """A document's chunks in order; empty when it does not exist."""
        chunks = [StoredChunk.from_payload(p) for p in self._scroll(name, self._doc_filter(doc_id))]
        return sorted(chunks, key=lambda c: c.chunk_index)

    def documents(self, name: str) -> list[StoredChunk]:
        """The first chunk of every document (it carries the title and metadata), by id."""
        first_chunks = (StoredChunk.from_payload(p) for p in self._scroll(name, self._first_chunks()))
        return sorted(first_chunks, key=lambda c: c.doc_id)

    def search(self, name: str, query: StoreQuery, filter: Filter | None = None) -> list[StoredChunk]:
        found = self._query(name, query, self.translate(filter) if filter else None)
        chunks = [StoredChunk.from_payload(payload, score) for payload, score in found]
        # Fused scores often tie (ranks 1 and 2 against 2 and 1), and the store orders ties
        # arbitrarily: two identical requests should get the same passages in the same order.
        return sorted(chunks, key=lambda chunk: (-chunk.score, chunk.doc_id, chunk.chunk_index))[: query.top_k]

    def keyword_score(self, name: str, *, keywords: SparseVector, filter: Filter | None = None) -> float | None:
        """The best BM25 score of any chunk for the query (None: no chunk shares a term with it).
        Unlike the fused score, which only ranks, it says how well the collection covers a question."""
        query = StoreQuery(dense=[], keywords=keywords, mode="keyword", top_k=1)
        found = self._query(name, query, self.translate(filter) if filter else None)
        return found[0][1] if found else None
