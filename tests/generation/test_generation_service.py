"""The generation service for real: vLLM on CPU, through the official `openai` client."""

import hashlib
import json
import math
import shutil
from pathlib import Path

import openai
import pytest

from evals.scoring import GREETING
from ragft.process import free_port
from tests.conftest import TINY_SET, run_ragft

QUESTION = "How can I change the email address on my account?"


def _ask(url: str, model: str, question: str = QUESTION) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=48, temperature=0
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    return reply.choices[0].message.content or ""


def test_base_and_adapter_answer(generation_url: str) -> None:
    assert _ask(generation_url, "base").strip()
    assert _ask(generation_url, "voice").strip()


def test_the_adapter_speaks_in_its_trained_voice_and_the_base_does_not(generation_url: str) -> None:
    assert _ask(generation_url, "voice").startswith(GREETING)
    assert GREETING not in _ask(generation_url, "base")


def test_unknown_model_is_a_404_from_vllm(generation_url: str) -> None:
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        _ask(generation_url, "no-such-adapter")


def test_adapters_load_and_unload_at_run_time(
    generation_url: str, generation_env: dict[str, str], voice_adapter: Path
) -> None:
    env = {**generation_env, "RAGFT_GENERATION_URL": generation_url}
    loaded = run_ragft("adapters", "load", "voice-copy", str(voice_adapter), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert _ask(generation_url, "voice-copy").startswith(GREETING)
    listed = run_ragft("adapters", "list", env=env)
    assert "voice-copy" in listed.stderr
    unloaded = run_ragft("adapters", "unload", "voice-copy", env=env)
    assert unloaded.returncode == 0, unloaded.stderr
    with pytest.raises(openai.NotFoundError):
        _ask(generation_url, "voice-copy")


def test_incompatible_adapters_are_refused_and_the_others_keep_working(
    generation_url: str, generation_env: dict[str, str], voice_adapter: Path, tmp_path: Path
) -> None:
    env = {**generation_env, "RAGFT_GENERATION_URL": generation_url}

    def variant(name: str, **changes: object) -> Path:
        folder = tmp_path / name
        shutil.copytree(voice_adapter, folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **changes}))
        return folder

    other_base = run_ragft(
        "adapters", "load", "other", str(variant("other", base_model_name_or_path="org/Other-7B")), env=env
    )
    assert other_base.returncode == 1
    assert "was trained on 'org/Other-7B'" in other_base.stderr
    busy_port = run_ragft("serve", "generation", env=env)  # the session's vLLM holds the port
    assert busy_port.returncode == 1
    assert "is taken" in busy_port.stderr
    unknown_device = run_ragft("serve", "generation", "--device", "tpu", env=env)
    assert unknown_device.returncode == 2
    assert "choose auto, cpu or gpu" in unknown_device.stderr
    too_big = run_ragft("adapters", "load", "big", str(variant("big", r=64)), env=env)
    assert too_big.returncode == 1
    assert "greater than max_lora_rank" in too_big.stderr
    not_an_adapter = run_ragft("adapters", "load", "empty", str(tmp_path), env=env)
    assert not_an_adapter.returncode == 1
    assert "not a PEFT adapter folder" in not_an_adapter.stderr
    assert _ask(generation_url, "voice").startswith(GREETING)


def test_finetune_records_what_it_did(voice_adapter: Path) -> None:
    report = json.loads((voice_adapter / "ragft.json").read_text())
    assert report["data_sha256"] == hashlib.sha256(TINY_SET.read_bytes()).hexdigest()
    assert report["examples"] == len(TINY_SET.read_text().splitlines())
    assert report["steps"] == 12 * math.ceil(report["examples"] / 8)  # epochs x batches of 8
    assert 0 < report["final_loss"] < 1.5
    assert Path(report["base_model"]).is_dir()
    config = json.loads((voice_adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == report["base_model"]


def test_model_prepare_is_idempotent(base_model: Path, generation_env: dict[str, str]) -> None:
    again = run_ragft("model", "prepare", env=generation_env)
    assert again.returncode == 0
    assert "nothing to do" in again.stderr


def test_adapters_for_another_base_model_stop_the_launch_before_vllm(
    generation_env: dict[str, str], voice_adapter: Path
) -> None:
    env = {**generation_env, "RAGFT_BASE_MODEL": "/nonexistent/model", "RAGFT_GENERATION_PORT": str(free_port())}
    refused = run_ragft("serve", "generation", env=env, timeout=300)
    assert refused.returncode == 1
    assert "adapter 'voice' was trained on" in refused.stderr
    assert "Starting vLLM" not in refused.stderr


def test_a_vllm_that_cannot_start_is_reported_with_its_last_lines(
    generation_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **generation_env,
        "RAGFT_BASE_MODEL": "/nonexistent/model",
        "RAGFT_ADAPTERS_DIR": str(tmp_path),
        "RAGFT_GENERATION_PORT": str(free_port()),
    }
    failed = run_ragft("serve", "generation", env=env, timeout=300)
    assert failed.returncode != 0
    assert "vLLM exited with status" in failed.stderr
    last_lines = failed.stderr.split("its last lines:")[1]
    assert "/nonexistent/model" in last_lines  # vLLM's own words, brackets and all
