"""`python -m services.gateway`: the gateway under uvicorn, drained on SIGTERM, without the ragft
CLI (the gateway image carries only what the gateway needs)."""

import sys

from pydantic import ValidationError

from ragft.settings import settings_errors
from ragft.web import run_service
from services.gateway.app import create_app
from services.gateway.config import get_settings

try:
    settings = get_settings()
except ValidationError as exc:
    sys.exit("\n".join(settings_errors(exc)))
run_service(create_app(settings), settings.gateway_host, settings.gateway_port)
