"""The skeleton every ragft service is built on: request ids, access log, metrics, the request
body limit, draining on shutdown, health endpoints and the shared error handlers."""

import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pydantic_core
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragft import __version__
from ragft.errors import PayloadTooLarge, ShuttingDown, error_body, install_error_handlers
from ragft.logging import get_logger
from ragft.settings import RagftSettings

REQUEST_ID_HEADER = "X-Request-ID"

HTTP_REQUESTS = Counter(
    "ragft_http_requests_total",
    "HTTP requests served.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "ragft_http_request_duration_seconds",
    "Time from request start to the last byte of the response.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

ReadinessCheck = Callable[[Request], Awaitable[str | None]]
"""Returns None when the service is ready, or the reason it is not."""

log = get_logger("ragft.access")
HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")


class FastJSONResponse(JSONResponse):
    """JSON encoded by pydantic-core, compact UTF-8: a completion in a quarter of the standard
    library's time. For the answers on the hot path."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


@dataclass
class Lifecycle:
    """The service's API requests in flight, and since when it drains for shutdown (SIGTERM)."""

    drain_s: float
    in_flight: int = 0
    draining_since: float | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def drained(self) -> bool:
        """True once draining has nothing left in flight, or has used up its drain period."""
        if self.draining_since is None:
            return False
        return self.in_flight == 0 or time.monotonic() - self.draining_since >= self.drain_s


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID or a new one), binds it to the
    log context, echoes it in the response, and records metrics and one access-log line.
    API requests are counted in flight, refused while draining, and refused (413) when their
    body is over the limit."""

    def __init__(self, app: ASGIApp, service: str, lifecycle: Lifecycle, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.lifecycle = lifecycle
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status, status_sent = message["status"], True
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode("latin-1")),
                ]
            await send(message)

        api = scope["path"] not in HEALTH_PATHS
        if api:
            self.lifecycle.in_flight += 1
        try:
            if api and self.lifecycle.draining:
                refusal = ShuttingDown(f"the {self.service} service is shutting down; retry on another instance")
                await refusal.response()(scope, receive, send_with_id)
            else:
                body = await self._bounded_body(headers, receive)
                if isinstance(body, PayloadTooLarge):
                    await body.response()(scope, receive, send_with_id)
                else:
                    await self.app(scope, body, send_with_id)
        except Exception:
            # Here rather than in an exception handler: Starlette runs those outside this
            # middleware, where the response would lose its request id and the log line its context.
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if status_sent:
                raise
            response = JSONResponse(error_body("internal_error", "internal server error"), 500)
            await response(scope, receive, send_with_id)
        finally:
            if api:
                self.lifecycle.in_flight -= 1
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], path, status).inc()
            HTTP_LATENCY.labels(self.service, scope["method"], path).observe(elapsed)
            if api:
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    async def _bounded_body(self, headers: dict[bytes, bytes], receive: Receive) -> Receive | PayloadTooLarge:
        """`receive` for the app, or the refusal of a body over the limit. A declared length is
        checked before reading; a chunked body is read (up to the limit) and replayed."""
        limit = self.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            return self._too_large() if declared.isdigit() and int(declared) > limit else receive
        if b"chunked" not in headers.get(b"transfer-encoding", b""):
            return receive
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return receive  # the client left; the app sees the disconnect itself
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return self._too_large()
            more = message.get("more_body", False)
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        return replayed

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is over the limit of {self.max_body_bytes} bytes", param="body")


def health_router(service: str, readiness: ReadinessCheck, lifecycle: Lifecycle) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "service": service, "version": __version__}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """The service can do its work (its dependencies answer)."""
        problem = "shutting down" if lifecycle.draining else await readiness(request)
        if problem is not None:
            return JSONResponse(error_body("not_ready", problem), 503, headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready", "service": service})

    @router.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    service: str,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    routers: list[APIRouter],
    readiness: ReadinessCheck,
    settings: RagftSettings,
) -> FastAPI:
    app = FastAPI(title=f"ragft {service}", version=__version__, lifespan=lifespan)
    app.state.lifecycle = lifecycle = Lifecycle(settings.drain_s)
    install_error_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, service=service, lifecycle=lifecycle, max_body_bytes=settings.max_body_bytes
    )
    app.include_router(health_router(service, readiness, lifecycle))
    for router in routers:
        app.include_router(router)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn that drains before it stops. The first SIGTERM or Ctrl-C starts draining (see
    `Lifecycle`); once nothing is in flight or the drain period is over, uvicorn's own shutdown
    runs. A second signal skips the rest of the drain."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.lifecycle.draining:
            super().handle_exit(sig, frame)
            return
        self.lifecycle.draining_since = time.monotonic()
        log.info("draining", in_flight=self.lifecycle.in_flight, drain_s=self.lifecycle.drain_s)

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.drained():
            self.should_exit = True
        return await super().on_tick(counter)


def run_service(app: FastAPI, host: str, port: int) -> None:
    """A service app (from `create_service_app`) under uvicorn until SIGTERM or Ctrl-C, drained."""
    # The drain has already waited for requests; uvicorn then only closes idle connections.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=2)
    DrainingServer(config, app.state.lifecycle).run()
