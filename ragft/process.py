"""Child processes on loopback: a free port, and waiting until a service is ready."""

import socket
import subprocess
import time
from typing import Any

import httpx


class NotReady(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, *, timeout: float, process: "subprocess.Popen[Any] | None" = None) -> float:
    """Polls `url` until it answers 200; returns the seconds it took. Gives up when the
    process exits or the timeout passes."""
    started = time.monotonic()
    while True:
        if process is not None and process.poll() is not None:
            raise NotReady(f"the process exited with status {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        if time.monotonic() - started > timeout:
            raise NotReady(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.25)
