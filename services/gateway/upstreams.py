"""The gateway's clients for the retrieval and generation services.

aiohttp rather than httpx on this hot path: as a proxy's client it measured several times
faster on these machines (ARCHITECTURE.md, field notes). Every call carries the request id and
the request's deadline, and every failure leaves here as one of ragft's errors."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from prometheus_client import Counter

from ragft.errors import (
    InvalidRequest,
    NotFound,
    RagftError,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ragft.http import request_id_headers

UPSTREAM_ERRORS = Counter(
    "ragft_gateway_upstream_errors_total",
    "Failed calls from the gateway to an upstream service.",
    ["upstream", "type"],
)


class Upstream:
    """One pooled connection set to one service. Open it inside the event loop (the lifespan)."""

    def __init__(self, name: str, base_url: str, *, connections: int, retry_after: int) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.retry_after = retry_after
        self.session = aiohttp.ClientSession(
            # Idle connections are dropped before uvicorn and vLLM drop theirs (5 s), so a request
            # never goes out on a connection the upstream is closing.
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=4),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )

    async def close(self) -> None:
        await self.session.close()

    @asynccontextmanager
    async def open(
        self, method: str, path: str, *, deadline: float, body: dict[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response of a call that succeeded (status < 400), its body not yet read. Left
        early, by an error or a cancelled client, the connection is closed so the upstream stops."""
        async with self.failures(deadline):
            response = await self.session.request(method, self.base_url + path, json=body, headers=request_id_headers())
            if response.status >= 400:
                payload = await response.read()
                response.release()
                raise self._count(self._status_error(response.status, payload))
        try:
            yield response
        except BaseException:
            response.close()
            raise
        response.release()

    async def json(self, method: str, path: str, *, deadline: float, body: dict[str, Any] | None = None) -> Any:
        async with self.open(method, path, deadline=deadline, body=body) as response, self.failures(deadline):
            payload = await response.read()
        try:
            return json.loads(payload)
        except ValueError as exc:
            raise self._count(UpstreamFailed(f"the {self.name} service answered with invalid JSON: {exc}")) from exc

    async def check(self, path: str, *, deadline: float) -> None:
        """Raises unless `path` answers with a success status."""
        async with self.open("GET", path, deadline=deadline):
            pass

    @asynccontextmanager
    async def failures(self, deadline: float) -> AsyncIterator[None]:
        """Turns the deadline and aiohttp's exceptions into ragft's errors."""
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except aiohttp.ClientConnectionError as exc:  # before TimeoutError: a connect timeout is both
            reason = str(exc) or type(exc).__name__
            raise self._count(
                UpstreamUnavailable(
                    f"the {self.name} service is unreachable at {self.base_url}: {reason}",
                    retry_after=self.retry_after,
                )
            ) from exc
        except TimeoutError as exc:
            raise self._count(UpstreamTimeout(f"the {self.name} service did not answer within the deadline")) from exc
        except aiohttp.ClientError as exc:
            raise self._count(UpstreamFailed(f"the {self.name} service sent a broken response: {exc}")) from exc

    def _status_error(self, status: int, payload: bytes) -> RagftError:
        message = _error_message(payload) or f"HTTP {status}"
        if status == 404:
            return NotFound(message)
        if status < 500:
            return InvalidRequest(message)
        if status == 503:
            return UpstreamUnavailable(f"the {self.name} service is not ready: {message}", retry_after=self.retry_after)
        return UpstreamFailed(f"the {self.name} service failed ({status}): {message}")

    def _count(self, error: RagftError) -> RagftError:
        UPSTREAM_ERRORS.labels(self.name, error.type).inc()
        return error


def _error_message(payload: bytes) -> str:
    """The message of ragft's error shape, of vLLM's (two generations of it), or the raw text."""
    try:
        body = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace").strip()[:500]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(body)[:500]
