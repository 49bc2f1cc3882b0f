"""The command line's HTTP client: every call carries the current request id and a bounded timeout.
And the rule for test traffic: loopback only."""

from urllib.parse import urlsplit

import httpx
import structlog

from ragft.errors import UserFacingError
from ragft.web import REQUEST_ID_HEADER


def request_id_headers() -> dict[str, str]:
    """The current request's id, for a call made on its behalf."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def _add_request_id(request: httpx.Request) -> None:
    request.headers.update(request_id_headers())


def sync_client(base_url: str, *, timeout: float = 120.0) -> httpx.Client:
    """For the command line: ingestion and admin calls."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=5.0),
        event_hooks={"request": [_add_request_id]},
    )


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class NotLoopback(UserFacingError, ValueError):
    pass


def check_loopback(url: str) -> None:
    """Load tests, evals and the stacks the commands start talk to this machine only."""
    if urlsplit(url).hostname not in LOOPBACK:
        raise NotLoopback(f"{url} is not on this machine: ragft sends test traffic to loopback only")
