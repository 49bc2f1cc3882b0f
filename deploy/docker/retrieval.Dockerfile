# syntax=docker/dockerfile:1
# The ragft retrieval service (:8001): embeddings (all-MiniLM-L6-v2, packaged, no download) + Qdrant.
# Build from the repository root:  docker build -f deploy/docker/retrieval.Dockerfile -t ragft-retrieval .
# Run against a Qdrant server by setting RAGFT_QDRANT_URL (docker-compose.yml does); left unset, the
# service uses embedded Qdrant Edge under RAGFT_DATA_DIR (/var/lib/ragft, mount a volume there).

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---- build: a virtualenv with the pinned dependencies and ragft itself ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./
# torch first and alone, as the Makefile does, but the CPU build (torch==X+cpu satisfies the
# constraint torch==X) so the image carries no CUDA libraries. The version comes from constraints.txt.
RUN TORCH_PIN="$(grep -E '^torch==' constraints.txt)" \
    && test -n "$TORCH_PIN" \
    && pip install -c constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        "${TORCH_PIN}+cpu"

# The rest of the dependencies, then the project (non-editable). Layers above stay cached
# while only the source changes.
COPY pyproject.toml README.md ./
COPY ragft/ ragft/
COPY ragft_cli/ ragft_cli/
COPY gateway/ gateway/
COPY services/ services/
COPY training/ training/
COPY evals/ evals/
RUN pip install -c constraints.txt .

# ---- runtime: the venv, the sample knowledge base, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" ragft \
    && useradd --system --uid "${APP_UID}" --gid ragft --home-dir /app --no-create-home --shell /usr/sbin/nologin ragft \
    && install -d -o ragft -g ragft /var/lib/ragft

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Sample knowledge base, for `ragft ingest /app/data/kb` inside the container.
COPY data/ /app/data/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/var/lib/ragft/hf \
    RAGFT_LOG_FORMAT=json \
    RAGFT_DATA_DIR=/var/lib/ragft \
    RAGFT_SAMPLE_DATA_DIR=/app/data \
    RAGFT_EMBEDDING_CACHE_DIR=/var/lib/ragft/embedders \
    RAGFT_RETRIEVAL_HOST=0.0.0.0

USER ragft:ragft
EXPOSE 8001

# /readyz answers 200 only once the embedder is loaded and the store answers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=4).status == 200 else 1)"]

CMD ["ragft", "serve", "retrieval", "--host", "0.0.0.0", "--port", "8001"]
