"""The real service as a process on loopback: `ragft ingest` over HTTP, then kill -9 and a
restart on the same data folder find every chunk again."""

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragft.process import free_port, wait_until_ready
from ragft.sample_data import SAMPLE_KB
from ragft.settings import REPO
from tests.utils.processes import Processes, embedded_env


def _collection(port: int, name: str) -> dict[str, Any]:
    listed = httpx.get(f"http://127.0.0.1:{port}/v1/collections").json()["collections"]
    return {c["name"]: c for c in listed}[name]


def _hits(port: int, query: str) -> list[tuple[str, str]]:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/collections/help-center/search", json={"query": query, "top_k": 5}
    )
    return [(h["chunk_id"], h["text"]) for h in response.json()["hits"]]


def test_ingest_kill_restart_keeps_every_chunk(processes: Processes, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path, RAGFT_RETRIEVAL_URL=url, RAGFT_RETRIEVAL_PORT=str(port))
    kb_files = [p for p in SAMPLE_KB.iterdir() if p.is_file()]
    question = json.loads((REPO / "data" / "kb_questions.jsonl").read_text().splitlines()[0])

    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz") as proc:
        ingested = processes.run("ingest", str(SAMPLE_KB), env=env)
        assert ingested.returncode == 0, ingested.stderr
        assert f"Ingested {len(kb_files)} documents" in ingested.stderr
        before = _collection(port, "help-center")
        assert before["documents"] == len(kb_files)
        assert before["chunks"] >= len(kb_files)
        hits = _hits(port, question["question"])
        assert question["doc_id"] in {chunk_id.split("#")[0] for chunk_id, _ in hits}

        # Searches and an upsert at once: threads share one embedder and one store.
        with ThreadPoolExecutor(max_workers=17) as pool:
            searches = [pool.submit(_hits, port, f"{question['question']} {i}") for i in range(16)]
            write = pool.submit(
                httpx.post,
                f"http://127.0.0.1:{port}/v1/collections/help-center/documents",
                json={"documents": [{"id": "concurrent", "text": "# Extra\n\nWritten during searches."}]},
                timeout=60,
            )
            assert all(len(s.result()) == 5 for s in searches)
            assert write.result().status_code == 200
        httpx.delete(f"http://127.0.0.1:{port}/v1/collections/help-center/documents/concurrent")
        assert _collection(port, "help-center") == before

        # The store is locked by the running service: a direct write is refused, not interleaved.
        direct = processes.run("ingest", "--direct", str(SAMPLE_KB), env=env)
        assert direct.returncode == 1
        assert "in use by another process" in direct.stderr

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz"):
        assert _collection(port, "help-center") == before
        assert _hits(port, question["question"]) == hits


def test_kill_9_during_ingestion_loses_no_acknowledged_document_and_a_rerun_completes(
    processes: Processes, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path / "data", RAGFT_RETRIEVAL_URL=url, RAGFT_RETRIEVAL_PORT=str(port))
    kb = tmp_path / "kb"
    kb.mkdir()
    articles = sorted(p for p in SAMPLE_KB.iterdir() if p.is_file())[:12]
    for article in articles:
        shutil.copy(article, kb)
    ingest = ("ingest", str(kb), "--batch-size", "1")

    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz") as service:
        client = processes.spawn(*ingest, env=env, log=tmp_path / "ingest.log")
        deadline = time.monotonic() + 120
        while (stored := _stored(port)) is None or stored["documents"] < 3:
            assert time.monotonic() < deadline and client.poll() is None, "ingestion did not start"
            time.sleep(0.05)
        acknowledged = {a.stem: chunks for a in articles if (chunks := _chunks(port, a.stem))}
        assert len(acknowledged) >= 3
        os.kill(service.pid, signal.SIGKILL)
        service.wait(timeout=10)
        assert client.wait(timeout=60) == 1
    told = " ".join((tmp_path / "ingest.log").read_text().split())
    assert "unreachable" in told and "run the same command again" in told

    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz"):
        assert {doc: _chunks(port, doc) for doc in acknowledged} == acknowledged
        rerun = processes.run(*ingest, env=env)
        assert rerun.returncode == 0, rerun.stderr
        stored = _stored(port)
        assert stored is not None and stored["documents"] == 12
        assert f"({stored['chunks']} chunks)" in rerun.stderr  # every chunk once: none duplicated, none left over


def _stored(port: int) -> dict[str, Any] | None:
    """The help-center collection's counts, or None before it exists."""
    listed = {c["name"]: c for c in httpx.get(f"http://127.0.0.1:{port}/v1/collections").json()["collections"]}
    return listed.get("help-center")


def _chunks(port: int, doc_id: str) -> list[str] | None:
    """A stored document's chunks, or None when it is not stored."""
    found = httpx.get(f"http://127.0.0.1:{port}/v1/collections/help-center/documents/{doc_id}")
    return [chunk["text"] for chunk in found.json()["chunks"]] if found.status_code == 200 else None


def test_ingest_reports_unreadable_input_and_writes_nothing(processes: Processes, tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    (tmp_path / "empty.md").write_text("   \n")
    result = processes.run("ingest", "--direct", str(tmp_path / "empty.md"), env=env)
    assert result.returncode == 1
    assert "no text in it" in result.stderr
    missing = processes.run("ingest", "--direct", str(tmp_path / "missing"), env=env)
    assert missing.returncode == 1
    assert "no such file or folder" in missing.stderr
    assert not (tmp_path / "qdrant-edge").exists()


def test_up_ingests_once_and_completes_an_interrupted_first_run(processes: Processes, tmp_path: Path) -> None:
    """Your documents (--kb) into your collection, and never the sample knowledge base beside them."""
    kb = tmp_path / "kb"
    kb.mkdir()
    for name in ("refunds", "pricing"):
        (kb / f"{name}.md").write_text(f"# {name.title()}\n\nEverything about {name}.")
    port = free_port()
    env = embedded_env(tmp_path / "data", RAGFT_RETRIEVAL_PORT=str(port), RAGFT_COLLECTION="my-kb")

    def up() -> dict[str, Any]:
        proc = processes.spawn("up", "--services", "retrieval", "--kb", str(kb), env=env)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout=90, process=proc)
            listed = httpx.get(f"http://127.0.0.1:{port}/v1/collections").json()["collections"]
            assert [c["name"] for c in listed] == ["my-kb"]  # no sample collection beside it
            return _collection(port, "my-kb")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            # honcho stopped the service it supervised: nothing answers any more.
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)

    assert up()["documents"] == 2
    # As if the first run had stopped before this file was ingested:
    (kb / "shipping.md").write_text("# Shipping\n\nWe ship nothing; Quillbyte is software.")
    assert up()["documents"] == 3
