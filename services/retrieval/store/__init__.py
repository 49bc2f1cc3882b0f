"""Vector store backends behind one interface: embedded Qdrant Edge (default) or a Qdrant server."""

from services.retrieval.config import RetrievalSettings
from services.retrieval.store.base import VectorStore
from services.retrieval.store.errors import CollectionNotFound, StoreUnavailable
from services.retrieval.store.points import StoredChunk


def open_store(settings: RetrievalSettings, dimension: int) -> VectorStore:
    if settings.qdrant_url:
        from services.retrieval.store.server import ServerStore

        return ServerStore(settings.qdrant_url, dimension, api_key=settings.qdrant_api_key)
    from services.retrieval.store.edge import EdgeStore

    return EdgeStore(settings.data_dir / "qdrant-edge", dimension)


__all__ = [
    "CollectionNotFound",
    "StoreUnavailable",
    "StoredChunk",
    "VectorStore",
    "open_store",
]
