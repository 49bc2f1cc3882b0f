"""The point layout both backends share: each chunk is one point, a dense vector named `dense`,
a BM25 sparse vector named `bm25` (term weights from Qdrant's own BM25 tokenizer; the engine
applies IDF), and the payload `{doc_id, chunk_index, title, text, metadata, instructions}`; and what a search
asks of them."""

from dataclasses import dataclass
from typing import Any

from qdrant_edge import Bm25, Bm25Config, SparseVector

from services.retrieval.chunking import Chunk
from services.retrieval.schemas import SearchMode

DENSE = "dense"
BM25 = "bm25"
# How many candidates each of dense and keyword search hands to fusion, per result wanted.
PREFETCH_FACTOR = 4
# Results fused beyond top_k, so that chunks tied at the cut are chosen the same way every time.
TIE_MARGIN = 4
RRF_K = 60


@dataclass(frozen=True)
class EmbeddedChunk:
    chunk: Chunk
    dense: list[float]
    keywords: SparseVector


@dataclass(frozen=True)
class StoreQuery:
    """What a search asks the store: the query's vectors, how to rank, and how many."""

    dense: list[float]  # empty for a keyword search
    keywords: SparseVector
    mode: SearchMode
    top_k: int
    exact: bool = False  # exact nearest neighbours instead of the HNSW index


@dataclass(frozen=True)
class StoredChunk:
    doc_id: str
    chunk_index: int
    text: str
    title: str
    metadata: dict[str, Any]
    score: float = 0.0
    instructions: tuple[str, ...] = ()

    @classmethod
    def from_payload(cls, payload: dict[str, Any], score: float = 0.0) -> "StoredChunk":
        return cls(
            payload["doc_id"],
            payload["chunk_index"],
            payload["text"],
            payload["title"],
            payload["metadata"],
            score,
            tuple(payload.get("instructions", ())),  # none in points written before ingest screened
        )


def payload(chunk: Chunk) -> dict[str, Any]:
    return {
        "doc_id": chunk.doc_id,
        "chunk_index": chunk.index,
        "title": chunk.title,
        "text": chunk.text,
        "metadata": chunk.metadata,
        "instructions": list(chunk.instructions),
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
