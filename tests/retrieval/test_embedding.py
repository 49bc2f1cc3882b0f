"""The embedding backends: ONNX Runtime on the exported model gives PyTorch's vectors and hit
rates, the export is made once, and a collection keeps the backend that built it."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from benchmarks.retrieval import hit_rate, ingest_batched
from ragft.sample_data import SAMPLE_KB
from services.retrieval.app import create_app
from services.retrieval.config import CACHE_DIR, Backend, RetrievalSettings
from services.retrieval.embedding import Embedder, EmbedderError, default_model_path, onnx_graph
from services.retrieval.ingest import load_documents
from services.retrieval.runtime import Retrieval
from tests.utils.retrieval import upsert

KB = load_documents([SAMPLE_KB])


def test_onnx_computes_the_vectors_pytorch_computes() -> None:
    texts = [doc.text[:1500] for doc in KB[:24]] + ["How much does the Team plan cost?", "QB-2041", "ok"]
    torch_vectors = np.array(Embedder(backend="torch").embed(texts))
    onnx_vectors = np.array(Embedder(backend="onnx").embed(texts))
    assert onnx_vectors.shape == torch_vectors.shape == (len(texts), 384)
    assert float((torch_vectors * onnx_vectors).sum(axis=1).min()) > 0.9999
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1, atol=1e-5)


def _hit_rates(backend: Backend, data_dir: Path) -> list[float]:
    retrieval = Retrieval.open(RetrievalSettings(data_dir=data_dir, embedding_backend=backend))
    try:
        ingest_batched(retrieval, "kb", KB)
        return [hit_rate(retrieval, "kb", mode, k) for mode in ("dense", "hybrid") for k in (1, 5)]
    finally:
        retrieval.close()


def test_onnx_keeps_the_hit_rates_of_pytorch_on_the_held_out_questions(tmp_path: Path) -> None:
    """Top 1 and top 5, dense and hybrid, on the 100 answerable held-out questions: within 0.01,
    so a backend that moves the vectors fails the build."""
    torch_rates = _hit_rates("torch", tmp_path / "torch")
    onnx_rates = _hit_rates("onnx", tmp_path / "onnx")
    assert min(torch_rates) > 0.5, torch_rates  # the check compares something that works
    assert np.allclose(onnx_rates, torch_rates, atol=0.01), (onnx_rates, torch_rates)


def test_the_export_is_made_once_and_again_for_a_changed_model(tmp_path: Path) -> None:
    packaged = Path(default_model_path())
    graph = onnx_graph(packaged, CACHE_DIR)
    written = graph.stat().st_mtime_ns
    assert onnx_graph(packaged, CACHE_DIR) == graph and graph.stat().st_mtime_ns == written
    changed = tmp_path / "changed"
    shutil.copytree(packaged, changed)
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "note": "changed"}))
    assert onnx_graph(changed, tmp_path / "cache").parent.name.rsplit("-", 1)[1] != graph.parent.name.rsplit("-", 1)[1]


def test_a_model_the_onnx_backend_does_not_compute_is_refused_by_name(tmp_path: Path) -> None:
    cls_pooled = tmp_path / "cls-pooled"
    shutil.copytree(default_model_path(), cls_pooled)
    pooling = cls_pooled / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"word_embedding_dimension": 384, "pooling_mode_cls_token": True}))
    with pytest.raises(EmbedderError, match=r"cls-pooled is not a transformer with mean pooling.*BACKEND=torch"):
        Embedder(str(cls_pooled), backend="onnx", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any export


def test_a_collection_keeps_the_backend_that_built_it(tmp_path: Path) -> None:
    built = RetrievalSettings(data_dir=tmp_path, embedding_backend="torch")
    with TestClient(create_app(built)) as client:
        client.put("/v1/collections/kept").raise_for_status()
        upsert(client, "kept", ("pricing", "The Team plan costs 9 euros per seat per month."))
    with TestClient(create_app(RetrievalSettings(data_dir=tmp_path, embedding_backend="onnx"))) as client:
        client.put("/v1/collections/new").raise_for_status()
        listed = {c["name"]: c["embedding_backend"] for c in client.get("/v1/collections").json()["collections"]}
        assert listed == {"kept": "torch", "new": "onnx"}
        found = client.post("/v1/collections/kept/search", json={"query": "Team plan price", "mode": "dense"})
        assert found.json()["hits"][0]["doc_id"] == "pricing"
        retrieval: Retrieval = client.app.state.retrieval  # type: ignore[attr-defined]
        assert retrieval.indexer.embedder_for("kept").backend == "torch"
        assert retrieval.indexer.embedder_for("new") is retrieval.embedder
