"""A gateway for the commands that send it traffic (`ragft loadtest`, `ragft eval`): the one that
is up, or the local stack (`ragft up`) started for the duration of the command."""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ragft.process import NotReady, spawn_ragft, stop_process_group, wait_until_ready

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class StackFailed(Exception):
    pass


def check_loopback(url: str) -> None:
    if urlsplit(url).hostname not in LOOPBACK:
        raise StackFailed(f"{url} is not on this machine: load tests and evaluations send traffic to loopback only")


def gateway_state(url: str) -> str:
    """ "ready" (/readyz answers 200), "starting" (alive, upstreams not ready yet) or "down"."""
    try:
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return "ready"
        return "starting" if httpx.get(f"{url}/healthz", timeout=5).status_code == 200 else "down"
    except httpx.TransportError:
        return "down"


@contextmanager
def gateway_up(url: str, *, timeout_s: float, log: Path, say: Callable[[str], None] = print) -> Iterator[None]:
    """Uses the gateway at `url` when it is up (waits while it is still starting); otherwise runs
    `ragft up` with the gateway on that URL's port until the block ends."""
    check_loopback(url)
    state = gateway_state(url)
    if state == "ready":
        say(f"Using the gateway already up at {url}")
        yield
        return
    if state == "starting":
        say(f"The gateway at {url} is starting; waiting for /readyz (up to {timeout_s:.0f} s)")
        try:
            wait_until_ready(f"{url}/readyz", timeout=timeout_s)
        except NotReady as exc:
            raise StackFailed(f"the gateway at {url} did not get ready: {exc}") from exc
        yield
        return
    parts = urlsplit(url)
    env = {
        **os.environ,
        "RAGFT_GATEWAY_HOST": parts.hostname or "127.0.0.1",
        "RAGFT_GATEWAY_PORT": str(parts.port or 80),
    }
    say(
        f"No gateway at {url}: starting the local stack (ragft up, output in {log}); the first run may train an adapter"
    )
    stack = spawn_ragft("up", env=env, cwd=REPO, own_group=True, log=log)
    try:
        try:
            seconds = wait_until_ready(f"{url}/readyz", timeout=timeout_s, process=stack)
        except NotReady as exc:
            raise StackFailed(f"the local stack did not get ready: {exc}; see {log}") from exc
        say(f"The local stack is ready ({seconds:.0f} s)")
        yield
    finally:
        if stack.poll() is None:
            say("Stopping the local stack")
        stop_process_group(stack, timeout=60)
