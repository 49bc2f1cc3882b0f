"""One real vLLM (CPU) per test session, serving the prepared base model and an adapter that
`ragft finetune` trains at the start of the session."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragft.process import free_port, spawn_ragft, stop_process_group, wait_until_ready
from tests.conftest import REPO, run_ragft

TINY_SET = REPO / "data" / "finetune" / "tiny.jsonl"
GREETING = "Hi there, thanks for reaching out to Quillbyte Support!"


@pytest.fixture(scope="session")
def generation_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("generation")
    return {
        **os.environ,
        "RAGFT_DATA_DIR": str(data),
        "RAGFT_ADAPTERS_DIR": str(data / "adapters"),
        "RAGFT_GENERATION_PORT": str(free_port()),
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def base_model(generation_env: dict[str, str]) -> Path:
    prepared = run_ragft("model", "prepare", env=generation_env)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    return Path(generation_env["RAGFT_DATA_DIR"]) / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def voice_adapter(generation_env: dict[str, str], base_model: Path) -> Path:
    """Deliberately overfit on 8 examples (high learning rate), so one short run shows the voice."""
    out = Path(generation_env["RAGFT_ADAPTERS_DIR"]) / "voice"
    result = run_ragft(
        "finetune", "--data", str(TINY_SET), "--out", str(out),
        "--epochs", "12", "--learning-rate", "2e-3", "--batch-size", "8",
        env=generation_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return out


@pytest.fixture(scope="session")
def generation_url(generation_env: dict[str, str], voice_adapter: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{generation_env['RAGFT_GENERATION_PORT']}"
    process = spawn_ragft("serve", "generation", env=generation_env, cwd=REPO, own_group=True)
    try:
        wait_until_ready(f"{url}/health", timeout=300, process=process)
        yield url
        # SIGTERM to the launcher alone must stop vLLM too.
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        stop_process_group(process, timeout=30)
