"""The gateway's FastAPI app: `uvicorn --factory gateway.app:create_app`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from gateway.config import GatewaySettings, get_settings
from gateway.routes import PLAYGROUND, experiments, knowledge, page, router
from gateway.runtime import Gateway
from ragft.logging import configure_logging, get_logger
from ragft.web import create_service_app

log = get_logger(__name__)


async def _readiness(request: Request) -> str | None:
    gateway: Gateway = request.app.state.gateway
    return await gateway.not_ready()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = gateway = Gateway.open(settings)
        log.info(
            "gateway ready",
            retrieval=settings.retrieval_url,
            generation=settings.generation_url,
            default_route=settings.default_route,
            api_keys=len(settings.key_ring.keys),
        )
        try:
            yield
        finally:
            await gateway.close()

    configure_logging(settings.log_level, settings.log_format)
    app = create_service_app(
        "gateway",
        lifespan=lifespan,
        routers=[router, knowledge, experiments, page],
        readiness=_readiness,
        settings=settings,
    )
    app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")
    return app
