"""The skeleton every service shares: error shape, request ids and health endpoints."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient

from ragft.errors import UpstreamUnavailable
from ragft.web import create_service_app


def _app(ready: bool = True) -> TestClient:
    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    @router.get("/down")
    def down() -> None:
        raise UpstreamUnavailable("qdrant is gone", retry_after=7)

    async def readiness(_: Request) -> str | None:
        return None if ready else "store is down"

    return TestClient(
        create_service_app("demo", lifespan=_no_lifespan, routers=[router], readiness=readiness),
        raise_server_exceptions=False,
    )


@asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


def test_unexpected_errors_are_a_500_in_the_error_shape_with_the_request_id() -> None:
    response = _app().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"error": {"type": "internal_error", "message": "internal server error", "param": None}}
    assert "secret internals" not in response.text
    assert response.headers["X-Request-ID"] == "req-42"


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
    assert response.json()["error"] == {"type": "not_ready", "message": "store is down", "param": None}
    assert _app().get("/healthz").json()["service"] == "demo"
