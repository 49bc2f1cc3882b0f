"""The floor under the gateway's cost in `bench-gateway`: proxies that do nothing but pass a chat
completion to the upstream (PASSTHROUGH_UPSTREAM) and its answer back, on the gateway's own
parts (uvicorn, aiohttp) with and without FastAPI. No key, no validation, no metrics: what is
left is the cost of the parts themselves, which no tuning of the gateway's code can go below.
`uvicorn benchmarks.passthrough:bare` or `benchmarks.passthrough:fastapi_app`."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

COMPLETIONS = os.environ.get("PASSTHROUGH_UPSTREAM", "http://127.0.0.1:8000") + "/v1/chat/completions"
JSON = {"content-type": "application/json"}


class _Upstream:
    session: aiohttp.ClientSession

    async def relay(self, body: bytes) -> bytes:
        async with self.session.post(COMPLETIONS, data=body, headers=JSON) as response:
            return await response.read()


upstream = _Upstream()


@asynccontextmanager
async def _session() -> AsyncIterator[None]:
    upstream.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    try:
        yield
    finally:
        await upstream.session.close()


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    """A bare ASGI app: the least Python can do per request on uvicorn and aiohttp."""
    if scope["type"] == "lifespan":
        async with _session():
            await receive()  # startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = await upstream.relay(body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def _lifespan(_: FastAPI) -> AsyncIterator[None]:
    async with _session():
        yield


fastapi_app = FastAPI(lifespan=_lifespan)


@fastapi_app.get("/health")
async def health() -> str:
    return "ok"


@fastapi_app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """The same through one FastAPI route: what the framework alone costs."""
    return Response(await upstream.relay(await request.body()), media_type="application/json")
