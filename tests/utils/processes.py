"""Real processes on 127.0.0.1, as a user runs them, each stopped by its PID: ragft's commands and
services (through the `processes` fixture, so the tests that start them are in its tier) and
Debian's redis-server."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ragft.process import free_port, spawn_ragft, stop_process, wait_until_ready
from ragft.settings import REPO


def embedded_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a service on the embedded store, whatever RAGFT_QDRANT_URL says."""
    env = {k: v for k, v in os.environ.items() if k != "RAGFT_QDRANT_URL"}
    return {**env, "RAGFT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **settings}


class Processes:
    """ragft's commands and services as processes on 127.0.0.1, as a user runs them, each
    stopped by its PID. Only the `processes` fixture hands them out, so the tests that start
    them are in its tier."""

    def run(self, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`ragft ARGS` to its end; stderr with the terminal's line wrapping undone."""
        return self.python("-m", "ragft_cli", *args, env=env, timeout=timeout)

    def python(self, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`python ARGS` to its end, in the checkout."""
        result = subprocess.run(
            [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        result.stderr = " ".join(result.stderr.split())
        return result

    def spawn(
        self, *args: str, env: dict[str, str], own_group: bool = False, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """`ragft ARGS` in the background; the caller stops it."""
        return spawn_ragft(*args, env=env, cwd=REPO, own_group=own_group, log=log)

    @contextmanager
    def serve(
        self, *args: str, env: dict[str, str], ready: str, log: Path | None = None
    ) -> Iterator[subprocess.Popen[bytes]]:
        """`ragft ARGS` as a background service until the block ends; `ready` is the URL that
        answers 200 once it serves."""
        process = self.spawn(*args, env=env, log=log)
        try:
            wait_until_ready(ready, timeout=120, process=process)
            yield process
        finally:
            stop_process(process, timeout=20)

    @contextmanager
    def gateway(
        self, data_dir: Path, log: Path | None = None, **settings: str
    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        """`ragft serve gateway` with these settings on a free port: its URL and its process."""
        port = free_port()
        env = embedded_env(data_dir, RAGFT_GATEWAY_PORT=str(port), **settings)
        url = f"http://127.0.0.1:{port}"
        with self.serve("serve", "gateway", env=env, ready=f"{url}/healthz", log=log) as process:
            yield url, process


@contextmanager
def redis_server(folder: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real Redis (Debian's, which `make test` installs) on 127.0.0.1, set as the deployment
    sets it: every write on disk before it is acknowledged. Its URL and process, stopped by PID;
    started again on the same folder and port, it has every acknowledged write back."""
    import redis

    port = port or free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, f"redis-server exited with status {process.returncode}"
                time.sleep(0.1)
        else:
            raise AssertionError(f"redis-server did not answer on port {port}")
        yield url, process
    finally:
        stop_process(process, timeout=10)
