"""`python -m services.gateway`: the gateway under uvicorn, drained on SIGTERM, without the ragft
CLI (the gateway image carries only what the gateway needs)."""

from ragft.web import run_service
from services.gateway.app import create_app
from services.gateway.config import get_settings

settings = get_settings()
run_service(create_app(settings), settings.gateway_host, settings.gateway_port)
