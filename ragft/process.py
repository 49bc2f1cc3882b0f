"""Child processes on loopback: a free port, and waiting until a service is ready."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx


class NotReady(Exception):
    pass


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent_preexec() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when its parent dies, even by SIGKILL
    (Linux), so a child in a session of its own is not left running without its supervisor.
    The kernel watches the thread that forks: call Popen from the main thread."""
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1: each socket stays bound until all are chosen,
    since ports taken one after another may be the same one twice."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


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


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on the port now. SO_REUSEADDR, as uvicorn and vLLM set it:
    connections a stopped server left in TIME_WAIT do not count, only a listener does."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def stop_process(process: "subprocess.Popen[Any]", *, timeout: float, group: bool = False) -> None:
    """SIGTERM to the process (with `group`, to its process group: it must have been started
    with start_new_session=True), then SIGKILL if it has not exited within `timeout`. Safe to
    call on an exited process."""
    if process.poll() is not None:
        return

    def send(signal_number: int) -> None:
        if group:
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)

    try:
        send(signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def spawn_ragft(
    *args: str, env: dict[str, str], cwd: Path, own_group: bool = False, log: Path | None = None
) -> "subprocess.Popen[bytes]":
    """`python -m ragft_cli ARGS` in the background: a service for a test or a benchmark. Its output
    goes to `log`, or nowhere. `own_group` starts it in a new process group, for `stop_process(..., group=True)`."""
    with open(log or os.devnull, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "ragft_cli", *args],
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit in the main thread while the block runs, so its `finally` blocks
    run as they do for Ctrl-C (Python's default for SIGTERM ends the process without them)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
