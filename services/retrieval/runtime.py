"""Everything the retrieval service holds open, built once from settings. The service's
lifespan and `ragft ingest --direct` share it."""

from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Histogram

from ragft.errors import InvalidRequest
from services.retrieval.chunking import Chunker
from services.retrieval.config import RetrievalSettings
from services.retrieval.embedding import Embedder
from services.retrieval.indexer import Indexer
from services.retrieval.schemas import SearchRequest
from services.retrieval.store import StoredChunk, VectorStore, open_store
from services.retrieval.store.points import KeywordEncoder, StoreQuery

SEARCH_SECONDS = Histogram(
    "ragft_retrieval_search_seconds",
    "Query embedding plus store search.",
    ["mode"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)


@dataclass
class Retrieval:
    settings: RetrievalSettings
    embedder: Embedder
    keywords: KeywordEncoder
    store: VectorStore
    indexer: Indexer

    @classmethod
    def open(cls, settings: RetrievalSettings) -> "Retrieval":
        embedder = Embedder(
            settings.embedding_model,
            settings.embedding_batch_size,
            settings.embedding_backend,
            settings.embedding_cache_dir,
        )
        store = open_store(settings, embedder.dimension)
        keywords = KeywordEncoder()
        chunker = Chunker(embedder.tokenizer, settings.chunk_tokens, settings.chunk_overlap)
        indexer = Indexer(
            embedder,
            chunker,
            keywords,
            store,
            points_per_write=settings.upsert_batch_points,
        )
        return cls(settings, embedder, keywords, store, indexer)

    def create_collection(self, collection: str, model: str | None = None) -> None:
        """Create if missing, recording the model that embeds it (None: the service's own), so a
        later change of RAGFT_EMBEDDING_MODEL never searches it in another vector space."""
        if collection not in self.store.collections():
            # First: never a collection without its model.
            model = self.settings.embedding_model if model is None else model
            self.store.record_model(collection, model, self.settings.embedding_backend)
        self.store.create_collection(collection)

    def model_of(self, collection: str) -> str:
        """The model a collection's vectors come from, as recorded ("": the packaged one)."""
        return self.store.catalog().models.get(collection, self.settings.embedding_model)

    def check_model(self, model: str) -> str:
        """A model folder on this host that loads and makes vectors of the store's size, as an absolute path."""
        folder = Path(model).expanduser().resolve()
        if not folder.is_dir():
            raise InvalidRequest(f"no model folder {model!r} on the retrieval host", param="embedding_model")
        try:
            dimension = Embedder(str(folder)).dimension
        except Exception as exc:  # whatever sentence-transformers raises for a folder it cannot read
            raise InvalidRequest(
                f"{model!r} does not load as a sentence-transformers model: {exc}", param="embedding_model"
            ) from exc
        if dimension != self.embedder.dimension:
            raise InvalidRequest(
                f"{model!r} makes {dimension}-d vectors; this store holds {self.embedder.dimension}-d vectors",
                param="embedding_model",
            )
        return str(folder)

    def search(self, collection: str, request: SearchRequest, *, exact: bool = False) -> list[StoredChunk]:
        with SEARCH_SECONDS.labels(request.mode).time():
            embedder = self.indexer.embedder_for(collection)
            query = StoreQuery(
                dense=embedder.embed([request.query])[0] if request.mode != "keyword" else [],
                keywords=self.keywords.query(request.query),
                mode=request.mode,
                top_k=request.top_k,
                exact=exact,
            )
            return self.store.search(collection, query, request.filter)

    def keyword_score(self, collection: str, request: SearchRequest) -> float | None:
        """The best chunk's BM25 score per distinct query term, so long and short questions
        compare: how much of the question the collection covers."""
        keywords = self.keywords.query(request.query)
        best = self.store.keyword_score(collection, keywords=keywords, filter=request.filter)
        return None if best is None or not keywords.indices else best / len(keywords.indices)

    def close(self) -> None:
        self.store.close()
