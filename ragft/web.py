"""The skeleton every ragft service is built on: request ids, access log, metrics,
health endpoints and the shared error handlers."""

import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragft import __version__
from ragft.errors import error_body, install_error_handlers
from ragft.logging import get_logger

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


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID or a new one), binds it to the
    log context, echoes it in the response, and records metrics and one access-log line."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

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

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Here rather than in an exception handler: Starlette runs those outside this
            # middleware, where the response would lose its request id and the log line its context.
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if status_sent:
                raise
            response = JSONResponse(error_body("internal_error", "internal server error"), 500)
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], path, status).inc()
            HTTP_LATENCY.labels(self.service, scope["method"], path).observe(elapsed)
            if path not in ("/healthz", "/readyz", "/metrics"):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")


def health_router(service: str, readiness: ReadinessCheck) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok", "service": service, "version": __version__}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """The service can do its work (its dependencies answer)."""
        problem = await readiness(request)
        if problem is not None:
            return JSONResponse(error_body("not_ready", problem), 503, headers={"Retry-After": "5"})
        return JSONResponse({"status": "ready", "service": service})

    @router.get("/metrics")
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
) -> FastAPI:
    app = FastAPI(title=f"ragft {service}", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router(service, readiness))
    for router in routers:
        app.include_router(router)
    return app
