# syntax=docker/dockerfile:1
# The ragft gateway (:8000): FastAPI + aiohttp in front of retrieval and vLLM. No torch, no vLLM.
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t ragft-gateway:0.1.0 .
# Settings: RAGFT_RETRIEVAL_URL, RAGFT_GENERATION_URL, RAGFT_API_KEYS, RAGFT_DEFAULT_ROUTE, ... (README "Settings").

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---- build: a virtualenv with only what services/gateway and ragft import ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./
# The import closure of services.gateway.app (ragft.web/errors/http/logging/settings + services.gateway.*),
# every version from constraints.txt. The project's own dependency list would pull torch and
# sentence-transformers, which the gateway never imports, so the project goes in with --no-deps.
RUN pip install -c constraints.txt \
        fastapi "uvicorn[standard]" pydantic pydantic-settings \
        aiohttp httpx prometheus-client structlog

COPY pyproject.toml README.md ./
COPY ragft/ ragft/
COPY services/ services/
# Fails the build if the gateway imports something the line above did not install.
RUN pip install --no-deps . \
    && cd / && python -c "import services.gateway.app"

# ---- runtime: the venv and a non-root user, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" ragft \
    && useradd --system --uid "${APP_UID}" --gid ragft --home-dir /app --no-create-home --shell /usr/sbin/nologin ragft

COPY --from=build /opt/venv /opt/venv
WORKDIR /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RAGFT_LOG_FORMAT=json \
    RAGFT_GATEWAY_HOST=0.0.0.0 \
    RAGFT_DRAIN_S=25

USER ragft:ragft
EXPOSE 8000

# /readyz answers 200 only while both upstreams answer (503 naming the one that does not).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]

# The gateway module rather than `ragft serve gateway`: the ragft CLI imports every command module
# (honcho, typer, rich, the generation and retrieval commands), which this image does not carry.
# Both drain on SIGTERM: readiness 503, new requests refused, streams in flight given RAGFT_DRAIN_S.
CMD ["python", "-m", "services.gateway"]
