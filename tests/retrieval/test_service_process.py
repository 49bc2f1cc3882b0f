"""The real service as a process on loopback: `ragft ingest` over HTTP, then kill -9 and a
restart on the same data folder find every chunk again."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO, SAMPLE_KB


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ragft(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ragft", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    result.stderr = " ".join(result.stderr.split())  # undo the terminal's line wrapping
    return result


@contextmanager
def _service(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragft", "serve", "retrieval", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "the retrieval service exited during start-up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the retrieval service did not become ready in 90 s"
            time.sleep(0.3)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _collection(port: int, name: str) -> dict[str, Any]:
    listed = httpx.get(f"http://127.0.0.1:{port}/v1/collections").json()["collections"]
    return {c["name"]: c for c in listed}[name]


def _hits(port: int, query: str) -> list[tuple[str, str]]:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/collections/help-center/search", json={"query": query, "top_k": 5}
    )
    return [(h["chunk_id"], h["text"]) for h in response.json()["hits"]]


def test_ingest_kill_restart_keeps_every_chunk(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "RAGFT_DATA_DIR": str(tmp_path), "RAGFT_RETRIEVAL_URL": f"http://127.0.0.1:{port}"}
    kb_files = [p for p in SAMPLE_KB.iterdir() if p.is_file()]
    question = json.loads((REPO / "data" / "kb_questions.jsonl").read_text().splitlines()[0])

    with _service(env, port) as proc:
        ingested = _ragft("ingest", str(SAMPLE_KB), env=env)
        assert ingested.returncode == 0, ingested.stderr
        assert f"Ingested {len(kb_files)} documents" in ingested.stderr
        before = _collection(port, "help-center")
        assert before["documents"] == len(kb_files)
        assert before["chunks"] >= len(kb_files)
        hits = _hits(port, question["question"])
        assert question["doc_id"] in {chunk_id.split("#")[0] for chunk_id, _ in hits}

        # The store is locked by the running service: a direct write is refused, not interleaved.
        direct = _ragft("ingest", "--direct", str(SAMPLE_KB), env=env)
        assert direct.returncode == 1
        assert "in use by another process" in direct.stderr

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    with _service(env, port):
        assert _collection(port, "help-center") == before
        assert _hits(port, question["question"]) == hits


def test_ingest_reports_unreadable_input_and_writes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "RAGFT_DATA_DIR": str(tmp_path)}
    (tmp_path / "empty.md").write_text("   \n")
    result = _ragft("ingest", "--direct", str(tmp_path / "empty.md"), env=env)
    assert result.returncode == 1
    assert "no text in it" in result.stderr
    missing = _ragft("ingest", "--direct", str(tmp_path / "missing"), env=env)
    assert missing.returncode == 1
    assert "no such file or folder" in missing.stderr
    assert not (tmp_path / "qdrant-edge").exists()
