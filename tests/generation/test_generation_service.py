"""The generation service for real: vLLM on CPU, through the official `openai` client."""

import json
import shutil
from pathlib import Path

import openai
import pytest

from evals.voice import sample_rules
from ragft.process import free_port
from tests.utils.processes import Processes

GREETING = sample_rules().greeting  # the test adapter's voice, trained from data/finetune/
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
    processes: Processes, generation_url: str, generation_env: dict[str, str], voice_adapter: Path
) -> None:
    env = {**generation_env, "RAGFT_GENERATION_URL": generation_url}
    loaded = processes.run("adapters", "load", "voice-copy", str(voice_adapter), env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert _ask(generation_url, "voice-copy").startswith(GREETING)
    listed = processes.run("adapters", "list", env=env)
    assert "voice-copy" in listed.stderr
    unloaded = processes.run("adapters", "unload", "voice-copy", env=env)
    assert unloaded.returncode == 0, unloaded.stderr
    with pytest.raises(openai.NotFoundError):
        _ask(generation_url, "voice-copy")


def test_incompatible_adapters_are_refused_and_the_others_keep_working(
    processes: Processes, generation_url: str, generation_env: dict[str, str], voice_adapter: Path, tmp_path: Path
) -> None:
    env = {**generation_env, "RAGFT_GENERATION_URL": generation_url}

    def variant(name: str, **changes: object) -> Path:
        folder = tmp_path / name
        shutil.copytree(voice_adapter, folder)
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, **changes}))
        return folder

    other = variant("other", base_model_name_or_path="org/Other-7B")
    (other / "ragft.json").unlink()  # as trained by another tool: no identity recorded, so its name is compared
    other_base = processes.run("adapters", "load", "other", str(other), env=env)
    assert other_base.returncode == 1
    assert "was trained on 'org/Other-7B'" in other_base.stderr
    busy_port = processes.run("serve", "generation", env=env)  # the session's vLLM holds the port
    assert busy_port.returncode == 1
    assert "is taken" in busy_port.stderr
    too_big = processes.run("adapters", "load", "big", str(variant("big", r=64)), env=env)
    assert too_big.returncode == 1
    assert "greater than max_lora_rank" in too_big.stderr
    not_an_adapter = processes.run("adapters", "load", "empty", str(tmp_path), env=env)
    assert not_an_adapter.returncode == 1
    assert "not a PEFT adapter folder" in not_an_adapter.stderr
    assert _ask(generation_url, "voice").startswith(GREETING)


def test_adapters_for_another_base_model_stop_the_launch_before_vllm(
    processes: Processes, generation_env: dict[str, str], voice_adapter: Path
) -> None:
    env = {**generation_env, "RAGFT_BASE_MODEL": "/nonexistent/model", "RAGFT_GENERATION_PORT": str(free_port())}
    refused = processes.run("serve", "generation", env=env, timeout=300)
    assert refused.returncode == 1
    assert "adapter 'voice' was trained on" in refused.stderr
    assert "Starting vLLM" not in refused.stderr


def test_a_vllm_that_cannot_start_is_reported_with_its_last_lines(
    processes: Processes, generation_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **generation_env,
        "RAGFT_BASE_MODEL": "/nonexistent/model",
        "RAGFT_ADAPTERS_DIR": str(tmp_path),
        "RAGFT_GENERATION_PORT": str(free_port()),
    }
    failed = processes.run("serve", "generation", env=env, timeout=300)
    assert failed.returncode != 0
    assert "vLLM exited with status" in failed.stderr
    last_lines = failed.stderr.split("its last lines:")[1]
    assert "/nonexistent/model" in last_lines  # vLLM's own words, brackets and all
