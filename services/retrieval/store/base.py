"""The interface both backends implement, and the payload layout they share.

Each chunk is one point: a dense vector named `dense`, a BM25 sparse vector named `bm25`
(term weights from Qdrant's own BM25 tokenizer; the engine applies IDF), and the payload
`{doc_id, chunk_index, title, text, metadata}`.
"""

from dataclasses import dataclass
from typing import Any, Protocol

from qdrant_edge import Bm25, Bm25Config, SparseVector

from ragft.errors import NotFound, UpstreamUnavailable
from services.retrieval.chunking import Chunk
from services.retrieval.schemas import Filter, SearchMode

DENSE = "dense"
BM25 = "bm25"
# How many candidates each of dense and keyword search hands to fusion, per result wanted.
PREFETCH_FACTOR = 4
RRF_K = 60


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist (create it with PUT /v1/collections/{name})")


class StoreUnavailable(UpstreamUnavailable):
    """The vector store failed or cannot be reached; the request can be retried as is."""


@dataclass(frozen=True)
class EmbeddedChunk:
    chunk: Chunk
    dense: list[float]
    keywords: SparseVector


@dataclass(frozen=True)
class StoredChunk:
    doc_id: str
    chunk_index: int
    text: str
    metadata: dict[str, Any]
    score: float = 0.0

    @classmethod
    def from_payload(cls, payload: dict[str, Any], score: float = 0.0) -> "StoredChunk":
        return cls(
            payload["doc_id"],
            payload["chunk_index"],
            payload["text"],
            payload["metadata"],
            score,
        )


def payload(chunk: Chunk) -> dict[str, Any]:
    return {
        "doc_id": chunk.doc_id,
        "chunk_index": chunk.index,
        "title": chunk.title,
        "text": chunk.text,
        "metadata": chunk.metadata,
    }


def field_key(key: str) -> str:
    """Filters name metadata keys as users wrote them; only `doc_id` is ours."""
    return key if key == "doc_id" else f"metadata.{key}"


class KeywordEncoder:
    """Qdrant's BM25 tokenizer (stemming, stop words), run in-process for both backends."""

    def __init__(self) -> None:
        self._bm25 = Bm25(Bm25Config(language="english"))

    def document(self, text: str) -> SparseVector:
        return self._bm25.embed_document(text)

    def query(self, text: str) -> SparseVector:
        return self._bm25.embed_query(text)


class VectorStore(Protocol):
    def ready(self) -> str | None:
        """None when the store answers, else why not."""

    def create_collection(self, name: str) -> bool:
        """Create if missing; True when it was created now."""

    def delete_collection(self, name: str) -> bool: ...

    def collections(self) -> list[str]: ...

    def count(self, name: str) -> tuple[int, int]:
        """(documents, chunks) in a collection."""

    def upsert(self, name: str, chunks: list[EmbeddedChunk]) -> None:
        """Returns once the store has acknowledged the write."""

    def delete_stale(self, name: str, chunk_counts: dict[str, int]) -> None:
        """Delete each document's chunks numbered at or above its new chunk count."""

    def delete_document(self, name: str, doc_id: str) -> int:
        """Delete all chunks of a document; returns how many there were."""

    def document(self, name: str, doc_id: str) -> list[StoredChunk]:
        """A document's chunks in order; empty when it does not exist."""

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
    ) -> list[StoredChunk]: ...

    def optimize(self, name: str) -> None:
        """Build the search index now (blocking). A Qdrant server does this by itself."""

    def close(self) -> None: ...
