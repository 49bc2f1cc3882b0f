"""Driving a gateway under test: its app in this process behind Starlette's TestClient, the
starters' types (the fixtures are in tests/gateway/conftest.py), and its streamed events."""

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, redirect_stderr
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import httpx
from prometheus_client.metrics import MetricWrapperBase

from ragft import sse

if TYPE_CHECKING:
    import httpx2
    from fastapi.testclient import TestClient

# `with start(log=None, RAGFT_X="...") as url:` a gateway process; `as gateway:` a client of a
# gateway in this process.
GatewayStarter = Callable[..., AbstractContextManager[str]]
InProcessStarter = Callable[..., AbstractContextManager["InProcessGateway"]]


@contextmanager
def open_gateway_app(data_dir: Path, log: Path | None = None, **settings: str) -> Iterator["InProcessGateway"]:
    """The gateway's app (`gateway.app.create_app`) in this process, driven by Starlette's
    TestClient, which runs its lifespan: the middleware, routes, error handlers and upstream
    clients of `ragft serve gateway`, which make real connections to the upstreams' URLs.
    `settings` are RAGFT_ environment variables, read as the process reads them; the gateway's
    log lines (a process's stderr) go to `log` when one is named. Its metrics start from zero, as
    a new process's do."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import GatewaySettings

    with mock.patch.dict(os.environ, {"RAGFT_DATA_DIR": str(data_dir), **settings}):
        gateway_settings = GatewaySettings()
    _zero_gateway_metrics()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    with ExitStack() as stack:
        stderr = stack.enter_context(log.open("a")) if log else sys.stderr
        stack.callback(_restore, root, handlers, level)  # create_app configures this process's logging
        with redirect_stderr(stderr):
            app = create_app(gateway_settings)
        # As a client of a server sees it: a failure is a 500.
        app_client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        yield stack.enter_context(InProcessGateway(app_client))


class InProcessGateway(httpx.Client):
    """An httpx client of a gateway app in this process, as the tests use for a process.
    `app_client` is Starlette's TestClient under it, on the other HTTP library (httpx2) that the
    `openai` client is built on: `openai.OpenAI(http_client=gateway.app_client)`."""

    def __init__(self, app_client: "TestClient") -> None:
        super().__init__(transport=_Carried(app_client), base_url=str(app_client.base_url))
        self.app_client = app_client


class _Carried(httpx.BaseTransport):
    """httpx's requests carried into the app by Starlette's TestClient, which is built on
    another HTTP library (httpx2), streamed back as httpx's responses."""

    def __init__(self, app_client: "TestClient") -> None:
        self.app_client = app_client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        carried = self.app_client.build_request(
            request.method, str(request.url), headers=request.headers.multi_items(), content=request.read()
        )
        answer = self.app_client.send(carried, stream=True, follow_redirects=False)
        return httpx.Response(
            answer.status_code, headers=answer.headers.multi_items(), stream=_Body(answer), request=request
        )


class _Body(httpx.SyncByteStream):
    def __init__(self, answer: "httpx2.Response") -> None:
        self.answer = answer

    def __iter__(self) -> Iterator[bytes]:
        yield from self.answer.iter_raw()

    def close(self) -> None:
        self.answer.close()


def _restore(root: logging.Logger, handlers: list[logging.Handler], level: int) -> None:
    root.handlers[:] = handlers
    root.setLevel(level)


def _zero_gateway_metrics() -> None:
    """The gateway's metrics are module-level, in this process's one registry: cleared, its
    labelled ones count this gateway's requests alone. (Its one unlabelled gauge, the requests in
    flight, is zero whenever none is.)"""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "gateway":
            for value in vars(module).values():
                if isinstance(value, MetricWrapperBase):
                    value.clear()


def sse_events(response: httpx.Response) -> list[Any]:
    """A stream's events in order: parsed JSON, and the final "[DONE]"."""
    return sse.events(response.iter_lines())
