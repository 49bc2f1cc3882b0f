"""`ragft up` runs the whole stack: one request per route through its gateway, then SIGTERM
stops every process it started."""

import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest

from ragft.process import free_port, spawn_ragft, wait_until_ready
from tests.conftest import REPO, embedded_env


def test_up_serves_every_route_and_sigterm_leaves_nothing_behind(
    tmp_path: Path, base_model: Path, voice_adapter: Path
) -> None:
    ports = {name: free_port() for name in ("gateway", "retrieval", "generation")}
    env = embedded_env(
        tmp_path,
        # The session's prepared model and trained adapter, so `up` has nothing to train.
        RAGFT_BASE_MODEL=str(base_model),
        RAGFT_ADAPTERS_DIR=str(voice_adapter.parent),
        RAGFT_DEFAULT_ADAPTER=voice_adapter.name,
        RAGFT_RETRIEVAL_URL=f"http://127.0.0.1:{ports['retrieval']}",
        RAGFT_GENERATION_URL=f"http://127.0.0.1:{ports['generation']}",
        **{f"RAGFT_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    log = tmp_path / "up.log"
    up = spawn_ragft("up", env=env, cwd=REPO, log=log)
    try:
        wait_until_ready(f"{gateway}/readyz", timeout=300, process=up)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3  # retrieval, the generation launcher and its vLLM, the gateway
        for route in ("rag", "finetuned", "hybrid"):
            response = httpx.post(
                f"{gateway}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "How do I reset my password?"}], "max_tokens": 24},
                headers={"X-Ragft-Route": route},
                timeout=120,
            )
            assert response.status_code == 200, response.text
            assert response.json()["ragft"]["route"] == route
        printed = log.read_text()
        assert f"Gateway:    {gateway}" in printed
        assert printed.count(f"curl -s {gateway}/v1/chat/completions") == 3
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    for port in ports.values():  # nothing listens any more
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
