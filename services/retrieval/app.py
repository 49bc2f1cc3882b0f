"""The retrieval service's FastAPI app: `uvicorn --factory services.retrieval.app:create_app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from ragft.logging import configure_logging, get_logger
from ragft.web import create_service_app
from services.retrieval.config import RetrievalSettings, get_settings
from services.retrieval.routes import aliases, router
from services.retrieval.runtime import Retrieval

log = get_logger(__name__)


async def _readiness(request: Request) -> str | None:
    retrieval: Retrieval = request.app.state.retrieval
    return await run_in_threadpool(retrieval.store.ready)  # a server store answers over the network


def create_app(settings: RetrievalSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.retrieval = retrieval = Retrieval.open(settings)
        log.info(
            "retrieval ready",
            embedding_model=retrieval.embedder.name,
            embedding_backend=retrieval.embedder.backend,
            store=type(retrieval.store).__name__,
        )
        try:
            yield
        finally:
            retrieval.close()

    configure_logging(settings.log_level, settings.log_format)
    return create_service_app(
        "retrieval", lifespan=lifespan, routers=[router, aliases], readiness=_readiness, settings=settings
    )
