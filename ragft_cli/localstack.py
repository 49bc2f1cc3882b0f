"""A service for the commands that call it (`ragft loadtest` and `ragft eval` the gateway,
`ragft finetune --grounded` the retrieval service): the one that is up, or the local stack
(`ragft up`) started for the duration of the command."""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ragft.errors import UserFacingError
from ragft.http import check_loopback
from ragft.process import NotReady, spawn_ragft, stop_process, wait_until_ready
from ragft.settings import REPO


class StackFailed(UserFacingError):
    pass


# What `ragft up` runs for each: the gateway needs the whole stack behind it.
UP_ARGS = {"gateway": (), "retrieval": ("--services", "retrieval")}


def service_state(url: str) -> str:
    """ "ready" (/readyz answers 200), "starting" (alive, upstreams not ready yet) or "down"."""
    try:
        if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            return "ready"
        return "starting" if httpx.get(f"{url}/healthz", timeout=5).status_code == 200 else "down"
    except httpx.TransportError:
        return "down"


@contextmanager
def gateway_up(url: str, *, timeout_s: float, log: Path, say: Callable[[str], None] = print) -> Iterator[None]:
    with service_up("gateway", url, timeout_s=timeout_s, log=log, say=say):
        yield


@contextmanager
def service_up(
    service: str, url: str, *, timeout_s: float, log: Path, say: Callable[[str], None] = print
) -> Iterator[None]:
    """Uses the service at `url` when it is up (waits while it is still starting); otherwise runs
    `ragft up` with the service on that URL's port until the block ends."""
    state = service_state(url)
    if state == "ready":
        say(f"Using the {service} already up at {url}")
        yield
        return
    if state == "starting":
        say(f"The {service} at {url} is starting; waiting for /readyz (up to {timeout_s:.0f} s)")
        try:
            wait_until_ready(f"{url}/readyz", timeout=timeout_s)
        except NotReady as exc:
            raise StackFailed(f"the {service} at {url} did not get ready: {exc}") from exc
        yield
        return
    check_loopback(url)  # the stack it starts listens on this machine only
    parts = urlsplit(url)
    prefix = f"RAGFT_{service.upper()}"
    env = {**os.environ, f"{prefix}_HOST": parts.hostname or "127.0.0.1", f"{prefix}_PORT": str(parts.port or 80)}
    say(f"No {service} at {url}: starting the local stack (ragft up, output in {log}); the first run sets it up")
    stack = spawn_ragft("up", *UP_ARGS[service], env=env, cwd=REPO, own_group=True, log=log)
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
        stop_process(stack, timeout=60, group=True)
