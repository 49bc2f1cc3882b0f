"""Documents to stored chunks: split, embed in batches, write, then drop stale chunks.

Order matters for "nothing lost": a document's new chunks are written over the old ones
(same point ids) before the chunks it no longer has are deleted, so a search never finds
the document missing, and a request that failed half-way is completed by its retry.
"""

import threading
from collections import defaultdict
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from ragft.errors import RagftError
from services.retrieval.chunking import Chunk, Chunker
from services.retrieval.embedding import Embedder
from services.retrieval.schemas import DocumentIn
from services.retrieval.store.base import VectorStore
from services.retrieval.store.points import EmbeddedChunk, KeywordEncoder

CHUNKS_INDEXED = Counter("ragft_retrieval_chunks_indexed_total", "Chunks embedded and written.")
EMBED_SECONDS = Histogram(
    "ragft_retrieval_embed_seconds",
    "Time to embed one batch of chunks.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
)


@dataclass(frozen=True)
class IndexResult:
    documents: int
    chunks: int
    flagged: list[str]  # the documents that had text addressed to the assistant set aside


class Indexer:
    def __init__(
        self,
        embedder: Embedder,
        chunker: Chunker,
        keywords: KeywordEncoder,
        store: VectorStore,
        *,
        points_per_write: int = 256,
    ) -> None:
        self.embedder = embedder
        self.chunker = chunker
        self.keywords = keywords
        self.store = store
        self.points_per_write = points_per_write
        # Writes to one collection take turns, so two upserts of one document cannot interleave
        # their stale-chunk deletes. Embedding, the slow part, happens outside.
        self._write_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

    def embedder_for(self, collection: str) -> Embedder:
        """The model and backend a collection was built with embed what goes into it and the
        queries that read it."""
        catalog = self.store.catalog()
        model, backend = catalog.models.get(collection), catalog.backend_of(collection)
        if model is None or (model, backend) == (self.embedder.source, self.embedder.backend):
            return self.embedder
        try:
            return Embedder(model, self.embedder.batch_size, backend, self.embedder.cache_dir)
        except Exception as exc:  # whatever sentence-transformers raises for a folder it cannot read
            raise RagftError(
                f"collection {collection!r} is embedded by {model!r}, which does not load here: {exc}"
            ) from exc

    def split(self, documents: list[DocumentIn]) -> list[list[Chunk]]:
        return [self.chunker.split(doc.id, doc.text, doc.metadata) for doc in documents]

    def index(self, collection: str, documents: list[DocumentIn]) -> IndexResult:
        per_document = self.split(documents)
        return self._write(collection, {doc.id: chunks for doc, chunks in zip(documents, per_document, strict=True)})

    def copy(self, source: str, target: str, doc_ids: list[str]) -> IndexResult:
        """Re-embed documents' stored chunks, as they are, into `target` with its own model;
        a document no longer in `source` is skipped."""
        stored = {doc_id: self.store.document(source, doc_id) for doc_id in doc_ids}
        return self._write(
            target,
            {
                doc_id: [Chunk(c.doc_id, c.chunk_index, c.text, c.title, c.metadata, c.instructions) for c in chunks]
                for doc_id, chunks in stored.items()
                if chunks
            },
        )

    def _write(self, collection: str, per_document: dict[str, list[Chunk]]) -> IndexResult:
        chunks = [chunk for doc_chunks in per_document.values() for chunk in doc_chunks]
        texts = [chunk.indexed_text for chunk in chunks]
        with EMBED_SECONDS.time():
            dense = self.embedder_for(collection).embed(texts)
        keywords = [self.keywords.document(text) for text in texts]
        embedded = [EmbeddedChunk(c, d, k) for c, d, k in zip(chunks, dense, keywords, strict=True)]
        with self._write_locks[collection]:
            for start in range(0, len(embedded), self.points_per_write):
                self.store.upsert(collection, embedded[start : start + self.points_per_write])
            self.store.delete_stale(
                collection, {doc_id: len(doc_chunks) for doc_id, doc_chunks in per_document.items()}
            )
        CHUNKS_INDEXED.inc(len(chunks))
        flagged = [doc_id for doc_id, doc_chunks in per_document.items() if doc_chunks and doc_chunks[0].instructions]
        return IndexResult(len(per_document), len(chunks), flagged)

    def delete(self, collection: str, doc_id: str) -> int:
        with self._write_locks[collection]:
            return self.store.delete_document(collection, doc_id)
