"""The skeleton every service shares: error shape, request ids, health endpoints, the body
limit and draining."""

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from ragft.errors import UpstreamUnavailable
from ragft.logging import configure_logging
from ragft.settings import RagftSettings
from ragft.web import create_service_app

LIMIT = 2048


def _app(ready: bool = True) -> TestClient:
    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    @router.get("/down")
    def down() -> None:
        raise UpstreamUnavailable("qdrant is gone", retry_after=7)

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    async def readiness(_: Request) -> str | None:
        return None if ready else "store is down"

    settings = RagftSettings(max_body_bytes=LIMIT, drain_s=5)
    app = create_service_app("demo", lifespan=_no_lifespan, routers=[router], readiness=readiness, settings=settings)
    return TestClient(app, raise_server_exceptions=False)


@asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def test_unexpected_errors_are_a_500_in_the_error_shape_with_the_request_id() -> None:
    response = _app().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "internal_error", "message": "internal server error", "param": None, "code": None}
    }
    assert "secret internals" not in response.text
    assert response.headers["X-Request-ID"] == "req-42"


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_500_logs_its_traceback_but_not_the_api_key(capfd: pytest.CaptureFixture[str], log_format: str) -> None:
    """A traceback with local variables would show the request's headers."""
    configure_logging("debug", log_format)
    try:
        response = _app().get("/boom", headers={"Authorization": "Bearer key-in-the-header-4c1d"})
        assert response.status_code == 500
        logged = capfd.readouterr().err
    finally:
        configure_logging()
    assert "RuntimeError: secret internals" in logged  # the traceback is there, for the operator
    assert "key-in-the-header" not in logged


def test_upstream_unavailable_is_a_503_with_retry_after() -> None:
    response = _app().get("/down")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"]["type"] == "upstream_unavailable"


def test_unknown_path_and_method_use_the_error_shape() -> None:
    client = _app()
    assert client.get("/nowhere").json()["error"]["type"] == "not_found"
    assert client.post("/healthz").json()["error"]["type"] == "method_not_allowed"


def test_readiness_reports_why_not() -> None:
    response = _app(ready=False).get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == {"type": "not_ready", "message": "store is down", "param": None, "code": None}
    assert _app().get("/healthz").json()["service"] == "demo"


def _chunked(size: int) -> Iterator[bytes]:
    """A body without Content-Length, sent in chunks."""
    for _ in range(size // 512):
        yield b"x" * 512


def test_a_body_over_the_limit_is_a_413_declared_or_chunked() -> None:
    client = _app()
    assert client.post("/echo", content=b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert client.post("/echo", content=_chunked(LIMIT)).json() == {"bytes": LIMIT}
    for content in (b"x" * (LIMIT + 1), _chunked(LIMIT + 512)):
        response = client.post("/echo", content=content)
        assert response.status_code == 413
        assert response.json()["error"] == {
            "type": "payload_too_large",
            "message": f"the request body is over the limit of {LIMIT} bytes",
            "param": "body",
            "code": None,
        }


def test_draining_turns_readiness_and_new_requests_away_but_not_liveness() -> None:
    client = _app()
    with client:
        assert client.get("/readyz").status_code == 200
        lifecycle = client.app.state.lifecycle  # type: ignore[attr-defined]
        assert not lifecycle.drained()
        lifecycle.draining_since = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["message"] == "shutting down"
        refused = client.post("/echo", content=b"{}")
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "shutting_down"
        assert refused.headers["Retry-After"]
        assert client.get("/healthz").status_code == 200
        assert lifecycle.in_flight == 0
        assert lifecycle.drained()
