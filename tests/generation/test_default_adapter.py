"""The default adapter: the one shipped in the repository is trained from today's data and
options and installed for this machine's base model; other data is trained by `ragft finetune`
in a process of its own; two real training steps record what they did and vLLM serves them."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import openai
import pytest
from typer.testing import CliRunner

from evals.dataset import load_unseen_docs
from ragft.sample_data import FINETUNE_SET, SHIPPED_ADAPTER, TINY_FINETUNE_SET, UNSEEN_DOCS
from ragft.settings import REPO
from ragft_cli import app
from ragft_cli.generation import SHIPPED_COLLECTION, SHIPPED_OPTIONS, ensure_default_adapter
from services.generation.adapters import check_compatible, discover, read_adapter
from services.generation.config import DEFAULT_BASE_MODEL, GenerationSettings
from services.generation.identity import model_identity
from tests.utils.processes import Processes, embedded_env
from training.finetune import grounding_record
from training.grounded import Grounding
from training.lora import EXAMPLES, REPORT, TrainOptions, file_sha256, load_conversations, trained_from

TRAIN_SET = FINETUNE_SET


def test_the_shipped_adapter_was_trained_from_the_data_and_options_of_today() -> None:
    report = json.loads((SHIPPED_ADAPTER / REPORT).read_text())
    grounding = grounding_record(Grounding(SHIPPED_COLLECTION), load_unseen_docs(UNSEEN_DOCS))
    assert report["data_sha256"] == file_sha256(TRAIN_SET), f"{TRAIN_SET} changed: retrain with `make adapter`"
    assert report["options"] == asdict(SHIPPED_OPTIONS), "the options changed: retrain with `make adapter`"
    assert report["grounding"] == grounding, "the grounding changed: retrain with `make adapter`"
    trained = [json.loads(line) for line in (SHIPPED_ADAPTER / EXAMPLES).read_text().splitlines()]
    assert report["examples"] == len(trained)
    assert [r["messages"] for r in trained if r["kind"] == "bare"] == load_conversations(TRAIN_SET)
    assert trained_from(SHIPPED_ADAPTER, TRAIN_SET, SHIPPED_OPTIONS, grounding)
    assert not trained_from(SHIPPED_ADAPTER, TRAIN_SET, SHIPPED_OPTIONS)  # without grounding
    assert not trained_from(SHIPPED_ADAPTER, TINY_FINETUNE_SET, SHIPPED_OPTIONS, grounding)
    assert not trained_from(SHIPPED_ADAPTER, TRAIN_SET, TrainOptions(epochs=3), grounding)
    assert not trained_from(SHIPPED_ADAPTER, REPO / "no-such.jsonl", SHIPPED_OPTIONS, grounding)


def test_the_shipped_adapter_is_installed_for_this_machines_base_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAGFT_BASE_MODEL", "RAGFT_ADAPTERS_DIR", "RAGFT_DEFAULT_ADAPTER"):
        monkeypatch.delenv(name, raising=False)
    grounding = grounding_record(Grounding(SHIPPED_COLLECTION), load_unseen_docs(UNSEEN_DOCS))
    assert trained_from(SHIPPED_ADAPTER, TRAIN_SET, SHIPPED_OPTIONS, grounding)  # else this would train for minutes
    settings = GenerationSettings(data_dir=tmp_path)
    ensure_default_adapter(settings, TRAIN_SET)
    [adapter] = discover(settings.adapters_dir)
    assert adapter.name == "support-voice"
    assert adapter.base_model == str((tmp_path / "models" / DEFAULT_BASE_MODEL).resolve())
    check_compatible(adapter, settings.base_model_path)  # the launcher's own check passes
    weights = "adapter_model.safetensors"
    assert (adapter.path / weights).read_bytes() == (SHIPPED_ADAPTER / weights).read_bytes()
    shipped_config = json.loads((SHIPPED_ADAPTER / "adapter_config.json").read_text())
    installed_config = json.loads((adapter.path / "adapter_config.json").read_text())
    assert {**shipped_config, "base_model_name_or_path": adapter.base_model} == installed_config
    installed_report = json.loads((adapter.path / REPORT).read_text())
    # Recorded as trained on this machine's model: no model here yet, so no identity to record.
    assert (installed_report["base_model"], installed_report["base_model_sha256"]) == (adapter.base_model, None)
    ensure_default_adapter(settings, TRAIN_SET)  # a second run finds it and changes nothing
    assert [a.name for a in discover(settings.adapters_dir)] == ["support-voice"]


def test_the_shipped_adapter_records_the_identity_of_the_base_model_prepare_writes(base_model: Path) -> None:
    """`ragft model prepare` writes the same bytes on every machine with the pinned libraries, so
    the shipped adapter is served from wherever the data folder lies."""
    shipped = read_adapter("support-voice", SHIPPED_ADAPTER)
    prepared = model_identity(base_model)
    assert shipped.base_model_sha256 == prepared, "`ragft model prepare` writes another model: `make adapter`"


def test_model_prepare_a_second_time_has_nothing_to_do(tmp_path: Path, base_model: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / DEFAULT_BASE_MODEL).symlink_to(base_model, target_is_directory=True)
    result = CliRunner().invoke(
        app, ["model", "prepare"], env={"RAGFT_DATA_DIR": str(tmp_path), "RAGFT_BASE_MODEL": ""}
    )
    assert result.exit_code == 0, result.output
    assert "nothing to do" in " ".join(result.output.split())


# What `ragft up` runs: the supervisor's own interpreter must not load torch for the training.
UP_TRAINS = """
import sys
from pathlib import Path
from ragft_cli.generation import ensure_default_adapter
from services.generation.config import GenerationSettings
ensure_default_adapter(GenerationSettings(), Path(sys.argv[1]))
print("torch loaded" if "torch" in sys.modules else "torch not loaded")
"""


@pytest.fixture(scope="session")
def short_adapter(tmp_path_factory: pytest.TempPathFactory, base_model: Path, processes: Processes) -> Path:
    """The default options (batch 8, 2 epochs) on two short examples: two real training steps,
    started as `ragft up` starts them when the shipped adapter was not trained from the data."""
    folder = tmp_path_factory.mktemp("short")
    data = folder / "two.jsonl"
    data.write_text("\n".join(TINY_FINETUNE_SET.read_text().splitlines()[:2]) + "\n")
    env = embedded_env(folder, RAGFT_BASE_MODEL=str(base_model), RAGFT_DEFAULT_ADAPTER="short")
    result = processes.python("-c", UP_TRAINS, str(data), env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "torch not loaded"
    return folder / "adapters" / "short"


def test_other_data_is_trained_in_a_process_of_its_own_and_recorded(short_adapter: Path, base_model: Path) -> None:
    data = short_adapter.parent.parent / "two.jsonl"
    report = json.loads((short_adapter / REPORT).read_text())
    assert trained_from(short_adapter, data, TrainOptions())
    assert report["examples"] == 2
    assert report["steps"] == 2 * math.ceil(2 / 8)  # epochs x batches of 8
    assert math.isfinite(report["final_loss"]) and report["final_loss"] > 0
    assert report["base_model"] == str(base_model)
    config = json.loads((short_adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_model)
    assert config["r"] == TrainOptions().rank


def test_vllm_serves_what_two_training_steps_wrote(
    short_adapter: Path, generation_url: str, generation_env: dict[str, str], processes: Processes
) -> None:
    env = {**generation_env, "RAGFT_GENERATION_URL": generation_url}
    loaded = processes.run("adapters", "load", "short", str(short_adapter), env=env)
    assert loaded.returncode == 0, loaded.stderr
    client = openai.OpenAI(base_url=f"{generation_url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="short", messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0
    )
    assert reply.model == "short" and reply.usage is not None and reply.usage.completion_tokens > 0
    assert processes.run("adapters", "unload", "short", env=env).returncode == 0
