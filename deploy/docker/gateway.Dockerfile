# syntax=docker/dockerfile:1
# The ragft gateway (:8000): FastAPI + aiohttp in front of retrieval and vLLM. No torch, no vLLM.
# Build from the repository root:  docker build -f deploy/docker/gateway.Dockerfile -t ragft-gateway:0.1.0 .
# Settings: RAGFT_RETRIEVAL_URL, RAGFT_GENERATION_URL, RAGFT_API_KEYS, RAGFT_DEFAULT_ROUTE, ... (README "Settings").

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---- build: a virtualenv with only what the gateway and the `ragft` command import ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./
# The import closure of `ragft serve gateway` (the gateway, the core, and the command's modules,
# which import the heavy libraries only inside the commands that use them), every version from
# constraints.txt. The project's own dependency list would pull torch and sentence-transformers,
# which the gateway never imports, so the project goes in with --no-deps.
RUN pip install -c constraints.txt \
        fastapi "uvicorn[standard]" pydantic pydantic-settings \
        aiohttp httpx prometheus-client structlog typer

COPY pyproject.toml README.md ./
COPY ragft/ ragft/
COPY ragft_cli/ ragft_cli/
COPY gateway/ gateway/
COPY services/ services/
COPY training/ training/
COPY evals/ evals/
# Fails the build if the gateway or the command imports something the line above did not install.
RUN pip install --no-deps . \
    && cd / && python -c "import gateway.app" && ragft serve gateway --help > /dev/null

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

# Drains on SIGTERM: readiness 503, new requests refused, streams in flight given RAGFT_DRAIN_S.
CMD ["ragft", "serve", "gateway"]
