"""The gateway's clients for the retrieval and generation services.

aiohttp rather than httpx on this hot path: in a FastAPI pass-through at concurrency 32 on
these machines, aiohttp kept 27% of the upstream's direct throughput, httpx 3% (its pool
collapsed) and httpx on an aiohttp transport 14%. Every call carries the request id and the
request's deadline, goes through the upstream's circuit breaker, is retried at most once (before
any byte of the answer, within the retry budget), and every failure leaves here as one of
ragft's errors."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import pydantic_core
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from gateway.resilience import CircuitBreaker, RetryBudget
from ragft.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RagftError,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_message,
)
from ragft.http import request_id_headers

UPSTREAM_ERRORS = Counter(
    "ragft_gateway_upstream_errors_total",
    "Failed calls from the gateway to an upstream service.",
    ["upstream", "type"],
)
UPSTREAM_RETRIES = Counter("ragft_gateway_upstream_retries_total", "Calls tried a second time.", ["upstream"])
# A second try may succeed after these: a connection refused or dropped, a 502 or a 503.
RETRYABLE_STATUSES = (502, 503)

Shape = TypeVar("Shape", bound=BaseModel)


class _Retryable(Exception):
    def __init__(self, error: RagftError) -> None:
        self.error = error


class Upstream:
    """One pooled connection set to one service. Open it inside the event loop (the lifespan)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connections: int,
        retry_after: int,
        breaker: CircuitBreaker,
        budget: RetryBudget,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.retry_after = retry_after
        self.breaker = breaker
        self.budget = budget
        self.session = aiohttp.ClientSession(
            # Idle connections are dropped before uvicorn and vLLM drop theirs (5 s), so a request
            # never goes out on a connection the upstream is closing.
            connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=4),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            json_serialize_bytes=pydantic_core.to_json,
        )

    async def close(self) -> None:
        await self.session.close()

    @asynccontextmanager
    async def open(
        self,
        method: str,
        path: str,
        *,
        deadline: float,
        body: dict[str, Any] | None = None,
        limit: str = "the deadline",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response of a call that succeeded (a 2xx status), its body not yet read, by
        `deadline` (`limit` names it in the error). Left early, by an error or a cancelled
        client, the connection is closed so the upstream stops."""
        response = await self._call(method, path, deadline, body, limit)
        try:
            yield response
        except BaseException:
            response.close()
            raise
        response.release()

    async def json(
        self, method: str, path: str, shape: type[Shape], *, deadline: float, body: dict[str, Any] | None = None
    ) -> Shape:
        """The answer, validated as `shape`: anything else (a wrong shape, wrong types, truncated
        JSON) is the upstream's failure, named, never the gateway's."""
        async with self.open(method, path, deadline=deadline, body=body) as response, self.failures(deadline):
            payload = await response.read()
        try:
            return shape.model_validate_json(payload)
        except ValidationError as exc:
            wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
            raise self._count(
                UpstreamFailed(f"the {self.name} service answered {method} {path.split('?')[0]} unexpectedly: {wrong}")
            ) from exc

    async def check(self, path: str, *, deadline: float) -> None:
        """Raises unless `path` answers with a success status. A health check of its own: no
        breaker, no retry."""
        try:
            response = await self._attempt("GET", path, deadline, None, "the readiness check's time")
        except _Retryable as exc:
            raise exc.error from None
        response.release()

    async def _call(
        self, method: str, path: str, deadline: float, body: dict[str, Any] | None, limit: str
    ) -> aiohttp.ClientResponse:
        try:
            self.breaker.admit()
        except UpstreamUnavailable as exc:
            raise self._count(exc, "circuit_open") from None
        self.budget.earn()
        retried = False
        while True:
            try:
                response = await self._attempt(method, path, deadline, body, limit)
            except _Retryable as exc:
                self.breaker.failed()
                if retried or self.breaker.open or not self.budget.spend():
                    raise exc.error from None
                retried = True
                UPSTREAM_RETRIES.labels(self.name).inc()
                continue
            except (UpstreamFailed, UpstreamTimeout):
                self.breaker.failed()
                raise
            except RagftError:  # a 4xx: the upstream is well, the request was not
                self.breaker.succeeded()
                raise
            self.breaker.succeeded()
            return response

    async def _attempt(
        self, method: str, path: str, deadline: float, body: dict[str, Any] | None, limit: str
    ) -> aiohttp.ClientResponse:
        """One try: the response, with a 2xx status. Raises `_Retryable` when a second
        try may succeed, else one of ragft's errors."""
        try:
            async with self.failures(deadline, limit):
                response = await self.session.request(
                    method, self.base_url + path, json=body, headers=request_id_headers(), allow_redirects=False
                )
                if response.status >= 300:
                    payload = await response.read()
                    response.release()
                    error = self._count(self._status_error(response.status, payload))
                    raise _Retryable(error) if response.status in RETRYABLE_STATUSES else error
        except UpstreamUnavailable as exc:  # a refused or dropped connection
            raise _Retryable(exc) from exc
        return response

    @asynccontextmanager
    async def failures(self, deadline: float, limit: str = "the deadline") -> AsyncIterator[None]:
        """Turns the deadline (`limit` names it) and aiohttp's exceptions into ragft's errors."""
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
            raise self._count(UpstreamTimeout(f"the {self.name} service did not answer within {limit}")) from exc
        except aiohttp.ClientError as exc:
            raise self._count(UpstreamFailed(f"the {self.name} service sent a broken response: {exc}")) from exc

    def _status_error(self, status: int, payload: bytes) -> RagftError:
        if status < 400:  # a redirect: no ragft service sends one
            return UpstreamFailed(f"the {self.name} service answered with HTTP {status}")
        message = error_message(payload) or payload.decode(errors="replace").strip()[:500] or f"HTTP {status}"
        if status == 404:
            return NotFound(message)
        if status == 413:
            return PayloadTooLarge(message)
        if status < 500:
            return InvalidRequest(message)
        if status == 503:
            return UpstreamUnavailable(f"the {self.name} service is not ready: {message}", retry_after=self.retry_after)
        return UpstreamFailed(f"the {self.name} service failed ({status}): {message}")

    def _count(self, error: RagftError, kind: str | None = None) -> RagftError:
        UPSTREAM_ERRORS.labels(self.name, kind or error.type).inc()
        return error
