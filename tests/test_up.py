"""`ragft up` runs the whole stack: one request per route through its gateway, then SIGTERM
stops every process it started, and a second `ragft up` right after it comes up on the same ports
(retrieval and the gateway, in front of the session's vLLM: starting a vLLM costs a minute)."""

import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from ragft.process import free_ports, wait_until_ready
from tests.utils.processes import Processes


@contextmanager
def running_up(processes: Processes, env: dict[str, str], log: Path, *args: str, started: int) -> Iterator[str]:
    """`ragft up ARGS` until the block ends, then SIGTERM: the `started` processes (at least) it
    started all gone, every port free."""
    gateway = f"http://127.0.0.1:{env['RAGFT_GATEWAY_PORT']}"
    up = processes.spawn("up", *args, env=env, log=log)
    children: list[psutil.Process] = []
    try:
        wait_until_ready(f"{gateway}/readyz", timeout=300, process=up)
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= started
        yield gateway
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    for name in ("GATEWAY", "RETRIEVAL", "GENERATION"):  # nothing listens any more
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(env[f"RAGFT_{name}_PORT"])), timeout=2)


def ask(gateway: str, route: str) -> None:
    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "How do I reset my password?"}], "max_tokens": 24},
        headers={"X-Ragft-Route": route},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["ragft"]["route"] == route


def test_up_serves_every_route_stops_on_sigterm_and_starts_again_at_once(
    processes: Processes, tmp_path: Path, generation_env: dict[str, str], generation_url: str
) -> None:
    ports = dict(zip(("gateway", "retrieval", "generation"), free_ports(3), strict=True))
    env = {
        # The session's prepared model and trained adapter, so `up` has nothing to train.
        **generation_env,
        "RAGFT_DATA_DIR": str(tmp_path),
        "RAGFT_DEFAULT_ADAPTER": "voice",
        "RAGFT_RETRIEVAL_URL": f"http://127.0.0.1:{ports['retrieval']}",
        "RAGFT_GENERATION_URL": f"http://127.0.0.1:{ports['generation']}",
        **{f"RAGFT_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    # Retrieval, the generation launcher and its vLLM, the gateway.
    with running_up(processes, env, tmp_path / "up.log", started=4) as gateway:
        for route in ("rag", "finetuned", "hybrid"):
            ask(gateway, route)
        printed = (tmp_path / "up.log").read_text()
        assert f"Gateway:    {gateway}" in printed
        assert printed.count(f"curl -s {gateway}/v1/chat/completions") == 3
    # Back to back on the same ports, while the connections the first run closed sit in TIME_WAIT.
    again = {**env, "RAGFT_GENERATION_URL": generation_url}
    with running_up(processes, again, tmp_path / "again.log", "--services", "retrieval,gateway", started=2) as gateway:
        ask(gateway, "finetuned")
