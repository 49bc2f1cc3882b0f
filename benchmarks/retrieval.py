"""`make bench-retrieval`: ingest throughput, query embedding, search latency over HTTP, recall
of the approximate index, and hit rate on the sample knowledge base, for each embedding backend
(PyTorch and ONNX Runtime). Prints Markdown tables.

Everything runs side by side in one process tree on this machine, so the ratios hold even
when the absolute numbers move with the machine's load.
"""

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from prometheus_client import Histogram

from benchmarks.corpus import docstring_corpus
from evals.dataset import load_questions
from ragft.process import free_port, spawn_ragft, wait_until_ready
from ragft.sample_data import EVAL_SET, SAMPLE_KB
from ragft.settings import REPO
from services.retrieval.chunking import Chunk
from services.retrieval.config import Backend, RetrievalSettings
from services.retrieval.embedding import Embedder
from services.retrieval.indexer import EMBED_SECONDS
from services.retrieval.ingest import batches, load_documents
from services.retrieval.runtime import Retrieval
from services.retrieval.schemas import DocumentIn, SearchMode, SearchRequest
from services.retrieval.store.points import EmbeddedChunk

SIZES = (1_000, 10_000, 50_000)
QUERIES = 200
NOISE = 0.01  # per-dimension; each synthetic copy stays at cosine ~0.98 from its original
BACKENDS: tuple[Backend, ...] = ("torch", "onnx")  # the first is the baseline


class KeepVectors:
    """Passes embeddings through and keeps them, to grow the larger collections from."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.vectors: list[list[float]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self.inner.embed(texts)
        self.vectors.extend(vectors)
        return vectors


def _timed(
    ingest: Callable[[Retrieval, str, list[DocumentIn]], int],
    retrieval: Retrieval,
    collection: str,
    docs: list[DocumentIn],
) -> tuple[int, float]:
    """Chunks ingested, and seconds taken."""
    started = time.perf_counter()
    chunks = ingest(retrieval, collection, docs)
    return chunks, time.perf_counter() - started


def ingest_batched(retrieval: Retrieval, collection: str, docs: list[DocumentIn]) -> int:
    retrieval.store.create_collection(collection)
    return sum(retrieval.indexer.index(collection, batch).chunks for batch in batches(docs, 64))


def ingest_naive(retrieval: Retrieval, collection: str, docs: list[DocumentIn]) -> int:
    """The baseline: one document per embedding call and per write."""
    retrieval.store.create_collection(collection)
    return sum(retrieval.indexer.index(collection, [doc]).chunks for doc in docs)


def grow(retrieval: Retrieval, collection: str, chunks: list[Chunk], vectors: list[list[float]], size: int) -> float:
    """`size` points: the real chunks, then noisy copies of them (same text, nearby vector)."""
    rng = np.random.default_rng(7)
    base = np.asarray(vectors, dtype=np.float32)
    keywords = [retrieval.keywords.document(c.indexed_text) for c in chunks]
    retrieval.store.create_collection(collection)
    for start in range(0, size, 1000):
        batch = []
        for i in range(start, min(start + 1000, size)):
            n = i % len(chunks)
            vector = base[n] + (rng.normal(0, NOISE, base.shape[1]) if i >= len(chunks) else 0)
            vector /= np.linalg.norm(vector)
            original = chunks[n]
            copy = Chunk(f"{original.doc_id}~{i // len(chunks)}", original.index, original.text, original.title, {})
            batch.append(EmbeddedChunk(copy, vector.tolist(), keywords[n]))
        retrieval.store.upsert(collection, batch)
    started = time.perf_counter()
    retrieval.store.optimize(collection)
    return time.perf_counter() - started


def recall_at_10(retrieval: Retrieval, collection: str, queries: list[str]) -> float:
    found = 0
    for query in queries:
        request = SearchRequest(query=query, top_k=10, mode="dense")
        approx = {(h.doc_id, h.chunk_index) for h in retrieval.search(collection, request)}
        exact = {(h.doc_id, h.chunk_index) for h in retrieval.search(collection, request, exact=True)}
        found += len(approx & exact)
    return found / (10 * len(queries))


def hit_rate(retrieval: Retrieval, collection: str, mode: SearchMode, k: int) -> float:
    questions = load_questions(EVAL_SET, ["heldout"])
    answerable = [q for q in questions if q.answerable]
    hits = 0
    for q in answerable:
        results = retrieval.search(collection, SearchRequest(query=q.question, top_k=k, mode=mode))
        hits += q.doc_id in {h.doc_id for h in results}
    return hits / len(answerable)


def http_latencies(
    data_dir: str, backend: Backend, collections: list[str], queries: list[str]
) -> dict[tuple[str, str], list[float]]:
    """The collections hold no model of their own, so the service's backend embeds the queries."""
    port = free_port()
    env = {**os.environ, "RAGFT_DATA_DIR": data_dir, "RAGFT_LOG_LEVEL": "warning", "RAGFT_EMBEDDING_BACKEND": backend}
    server = spawn_ragft("serve", "retrieval", "--port", str(port), env=env, cwd=REPO)
    results: dict[tuple[str, str], list[float]] = {}
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout=120, process=server)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for collection in collections:
                for mode in ("hybrid", "dense"):
                    timings = []
                    for i, query in enumerate(queries[:20] + queries):  # the first 20 warm up
                        started = time.perf_counter()
                        response = client.post(
                            f"/v1/collections/{collection}/search", json={"query": query, "top_k": 10, "mode": mode}
                        )
                        elapsed = time.perf_counter() - started
                        response.raise_for_status()
                        if i >= 20:
                            timings.append(elapsed * 1000)
                    results[(collection, mode)] = timings
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return results


def _histogram_sum(histogram: Histogram) -> float:
    return sum(s.value for metric in histogram.collect() for s in metric.samples if s.name.endswith("_sum"))


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def tuned_hit_rates(tuned: Path) -> None:
    """Only the hit-rate table: the sample knowledge base embedded by the base model, then
    re-embedded by `tuned` as `ragft reindex` does, searched side by side."""
    print(f"# bench-retrieval --tuned {tuned} on {os.cpu_count()} CPU cores\n")
    kb = load_documents([SAMPLE_KB])
    with tempfile.TemporaryDirectory(prefix="ragft-bench-") as data_dir:
        retrieval = Retrieval.open(RetrievalSettings(data_dir=Path(data_dir)))
        ingest_batched(retrieval, "kb", kb)
        retrieval.create_collection("kb-tuned", retrieval.check_model(str(tuned)))
        retrieval.indexer.copy("kb", "kb-tuned", [doc.id for doc in kb])
        retrieval.store.optimize("kb-tuned")
        print("## Hit rate on the sample knowledge base (100 answerable held-out questions, right document in top k)\n")
        base = retrieval.embedder.name
        print(f"| mode | top 1: {base} | top 1: tuned | top 5: {base} | top 5: tuned |")
        print("|---|---|---|---|---|")
        for mode in ("dense", "keyword", "hybrid"):
            rates = [hit_rate(retrieval, c, mode, k) for k in (1, 5) for c in ("kb", "kb-tuned")]
            print(f"| {mode} | " + " | ".join(f"{rate:.2f}" for rate in rates) + " |")
        retrieval.close()


def query_embedding_ms(embedder: Embedder, queries: list[str]) -> list[float]:
    timings = []
    for i, query in enumerate(queries[:20] + queries):  # the first 20 warm up
        started = time.perf_counter()
        embedder.embed([query])
        if i >= 20:
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tuned", type=Path, help="only the hit rates: the base embedding model against this one")
    tuned = parser.parse_args().tuned
    if tuned:
        tuned_hit_rates(tuned)
        return
    print(f"# bench-retrieval on {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}\n")
    kb = load_documents([SAMPLE_KB])
    corpus = docstring_corpus()
    subset = corpus[:40]
    rows, hits, embedding_ms, embedding_share = [], {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="ragft-bench-") as data_dir:
        for backend in BACKENDS:  # one after the other, on the same documents, in one run
            retrieval = Retrieval.open(RetrievalSettings(data_dir=Path(data_dir), embedding_backend=backend))
            keep = KeepVectors(retrieval.embedder)
            embedded_before = _histogram_sum(EMBED_SECONDS)
            kb_naive = _timed(ingest_naive, retrieval, f"kb-naive-{backend}", kb)
            kb_batched = _timed(ingest_batched, retrieval, f"kb-{backend}", kb)
            corpus_naive = _timed(ingest_naive, retrieval, f"docs-naive-{backend}", subset)
            corpus_subset = _timed(ingest_batched, retrieval, f"docs-subset-{backend}", subset)
            retrieval.indexer.embedder = keep  # type: ignore[assignment]
            corpus_batched = _timed(ingest_batched, retrieval, f"docs-{backend}", corpus)
            retrieval.indexer.embedder = retrieval.embedder
            rows += [
                (backend, "sample knowledge base", len(kb), kb_naive, kb_batched),
                (backend, f"docstrings, first {len(subset)} modules", len(subset), corpus_naive, corpus_subset),
                (backend, f"docstrings, all {len(corpus)} modules", len(corpus), None, corpus_batched),
            ]
            total = sum(t for _, t in (kb_naive, kb_batched, corpus_naive, corpus_subset, corpus_batched))
            embedding_share[backend] = (_histogram_sum(EMBED_SECONDS) - embedded_before) / total
            all_chunks = [c for doc_chunks in retrieval.indexer.split(corpus) for c in doc_chunks]
            queries = [" ".join(c.text.split()[:12]) for c in random.Random(7).sample(all_chunks, QUERIES)]
            embedding_ms[backend] = query_embedding_ms(retrieval.embedder, queries)
            for mode in ("dense", "keyword", "hybrid"):
                hits[backend, mode] = [hit_rate(retrieval, f"kb-{backend}", mode, k) for k in (1, 5)]
            if backend == BACKENDS[-1]:
                names = [f"synthetic-{size // 1000}k" for size in SIZES]
                builds = [
                    grow(retrieval, n, all_chunks, keep.vectors, size) for n, size in zip(names, SIZES, strict=True)
                ]
                recalls = [recall_at_10(retrieval, name, queries[:100]) for name in names]
            retrieval.close()

        print("## Ingest (chunk, embed, write; in-process, embedded Qdrant Edge)\n")
        print(
            "| backend | corpus | documents | chunks | naive: 1 document per call | batched | batched, against torch |"
        )
        print("|---|---|---|---|---|---|---|")
        batched_rate = {(b, name): chunks / s for b, name, _, _, (chunks, s) in rows}
        for backend, name, docs, naive, (chunks, seconds) in rows:
            naive_rate = f"{naive[0] / naive[1]:.1f} chunks/s" if naive else "n/a"
            ratio = batched_rate[backend, name] / batched_rate[BACKENDS[0], name]
            rate = f"{chunks / seconds:.1f} chunks/s"
            print(f"| {backend} | {name} | {docs} | {chunks} | {naive_rate} | {rate} | {ratio:.2f}x |")
        shares = ", ".join(f"{share:.0%} with {backend}" for backend, share in embedding_share.items())
        print(f"\nEmbedding took {shares} of all ingest time above.\n")

        print(f"## Query embedding (one query per call, {QUERIES} queries after 20 warm-up)\n")
        print("| backend | p50 ms | p95 ms | mean ms |")
        print("|---|---|---|---|")
        for backend, timings in embedding_ms.items():
            print(
                f"| {backend} | {_pct(timings, 50):.2f} | {_pct(timings, 95):.2f} | {statistics.fmean(timings):.2f} |"
            )

        print("\n## Hit rate on the sample knowledge base (100 answerable questions, right document in top k)\n")
        print("| mode | " + " | ".join(f"top {k}: {b}" for k in (1, 5) for b in BACKENDS) + " |")
        print("|---|" + "---|" * 2 * len(BACKENDS))
        for mode in ("dense", "keyword", "hybrid"):
            rates = [hits[b, mode][i] for i in (0, 1) for b in BACKENDS]
            print(f"| {mode} | " + " | ".join(f"{rate:.2f}" for rate in rates) + " |")

        print("\n## Index build and recall@10 of the HNSW index against exact search (dense)\n")
        print("| points | optimize() | recall@10 |")
        print("|---|---|---|")
        for size, build, recall in zip(SIZES, builds, recalls, strict=True):
            print(f"| {size:,} | {build:.1f} s | {recall:.3f} |")

        print(f"\n## Search latency over HTTP (top_k=10, {QUERIES} sequential queries after 20 warm-up)\n")
        print("| backend | points | mode | p50 ms | p95 ms | mean ms |")
        print("|---|---|---|---|---|---|")
        for backend in BACKENDS:
            for (collection, mode), timings in http_latencies(data_dir, backend, names, queries).items():
                size = SIZES[names.index(collection)]
                print(
                    f"| {backend} | {size:,} | {mode} | {_pct(timings, 50):.1f} | {_pct(timings, 95):.1f} | "
                    f"{statistics.fmean(timings):.1f} |"
                )


if __name__ == "__main__":
    main()
