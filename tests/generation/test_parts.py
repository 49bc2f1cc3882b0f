"""The parts around vLLM: adapter discovery, the launcher's command and dtype, the command line."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragft.process import free_port
from ragft_cli import app
from services.generation import launcher
from services.generation.adapters import (
    Adapter,
    AdapterError,
    check_base_model,
    check_compatible,
    check_rank,
    discover,
    read_adapter,
    same_model,
)
from services.generation.config import GenerationSettings
from services.generation.identity import CACHE, model_identity
from services.generation.launcher import Device, LaunchError, choose_dtype, cpu_flags, plan, vllm_command


def test_adapter_discovery_and_rank(tmp_path: Path) -> None:
    assert discover(tmp_path / "missing") == []
    good = tmp_path / "support-voice"
    good.mkdir()
    (good / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 24, "base_model_name_or_path": "b"})
    )
    (tmp_path / ".support-voice.partial").mkdir()  # an unfinished training run is not served
    adapters = discover(tmp_path)
    assert [(a.name, a.rank) for a in adapters] == [("support-voice", 24)]
    (tmp_path / "broken").mkdir()
    with pytest.raises(AdapterError, match="not a PEFT adapter folder"):
        discover(tmp_path)


def test_vllm_command_serves_every_adapter(tmp_path: Path) -> None:
    adapter = tmp_path / "adapters" / "voice"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    settings = GenerationSettings(data_dir=tmp_path, adapters_dir=tmp_path / "adapters", max_loras=1)
    command = vllm_command(settings, discover(settings.adapters_dir), "float32")
    joined = " ".join(command)
    assert f"--model {(tmp_path / 'models' / 'smollm2-135m-instruct').resolve()}" in joined
    assert f"--lora-modules voice={adapter.resolve()}" in joined
    assert "--max-model-len 2048" in joined and "--max-lora-rank 16" in joined and "--max-loras 1" in joined
    assert "--enable-prefix-caching" in joined and "--served-model-name base" in joined
    assert "--dtype float32" in joined
    assert "--dtype" not in " ".join(vllm_command(settings, [], None))


@pytest.mark.parametrize(
    ("setting", "device", "flags", "dtype"),
    [
        ("auto", "cpu", {"avx2", "fma"}, "float32"),  # this machine kind: bf16 emulated, 2.6-3.2x slower
        ("auto", "cpu", {"avx2", "avx512f", "avx512_bf16"}, "bfloat16"),
        ("auto", "cpu", {"avx2", "amx_bf16", "amx_tile"}, "bfloat16"),
        ("auto", "gpu", set(), None),
        ("bfloat16", "cpu", {"avx2"}, "bfloat16"),
        ("float32", "gpu", set(), "float32"),
    ],
)
def test_vllm_dtype_follows_what_the_cpu_computes_natively(
    setting: str, device: Device, flags: set[str], dtype: str | None
) -> None:
    chosen, reason = choose_dtype(setting, device, flags)
    assert chosen == dtype
    assert reason


def test_the_model_settings_reach_vllms_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"BASE_MODEL": "org/Model-7B", "MAX_MODEL_LEN": "8192", "MAX_LORA_RANK": "64"}.items():
        monkeypatch.setenv(f"RAGFT_{name}", value)
    command = " ".join(vllm_command(GenerationSettings(data_dir=tmp_path), [], None))
    assert "--model org/Model-7B " in command
    assert "--max-model-len 8192 " in command and "--max-lora-rank 64 " in command


@pytest.mark.parametrize("rank", ["0", "24", "1024"])
def test_a_lora_rank_vllm_does_not_serve_is_refused_by_its_setting(rank: str) -> None:
    result = CliRunner().invoke(app, ["serve", "generation"], env={"RAGFT_MAX_LORA_RANK": rank})
    assert result.exit_code == 1
    ranks = "1, 8, 16, 32, 64, 128, 256, 320, 512"
    assert result.output == f"error: RAGFT_MAX_LORA_RANK: not a rank vLLM serves; choose one of {ranks}\n"


def test_an_adapter_above_the_largest_lora_rank_is_refused_by_the_setting() -> None:
    check_rank(Adapter("voice", Path("voice"), rank=16, base_model=""), 16)
    with pytest.raises(
        AdapterError, match=r"'big' has LoRA rank 24, above RAGFT_MAX_LORA_RANK=16: set RAGFT_MAX_LORA_RANK=32"
    ):
        check_rank(Adapter("big", Path("big"), rank=24, base_model=""), 16)
    with pytest.raises(AdapterError, match="vLLM serves ranks up to 512: train it with a smaller rank"):
        check_rank(Adapter("huge", Path("huge"), rank=1024, base_model=""), 512)


def test_the_launch_stops_at_an_adapter_above_the_largest_lora_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "_require_build", lambda device: None)
    adapter = tmp_path / "adapters" / "wide"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 64}))
    settings = GenerationSettings(data_dir=tmp_path, generation_device="cpu", generation_port=free_port())
    with pytest.raises(AdapterError, match="above RAGFT_MAX_LORA_RANK=16: set RAGFT_MAX_LORA_RANK=64"):
        plan(settings)
    assert "--max-lora-rank 64" in " ".join(plan(settings.model_copy(update={"max_lora_rank": 64})).command)


@pytest.mark.parametrize(
    ("setting", "gpu_without_bf16", "dtype"),
    [("bfloat16", None, "bfloat16"), ("auto", "Tesla T4", None), ("float16", "Tesla T4", "float16")],
)
def test_the_dtype_a_gpu_computes_is_given_to_vllm(
    setting: str, gpu_without_bf16: str | None, dtype: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "_require_build", lambda device: None)  # no GPU build here
    monkeypatch.setattr(launcher, "gpu_without_bf16", lambda: gpu_without_bf16)
    settings = GenerationSettings(
        data_dir=tmp_path, generation_device="gpu", vllm_dtype=setting, generation_port=free_port()
    )
    launch = plan(settings)
    assert (launch.command[launch.command.index("--dtype") + 1] if "--dtype" in launch.command else None) == dtype


def test_bf16_on_a_gpu_without_it_is_refused_by_its_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "_require_build", lambda device: None)
    monkeypatch.setattr(launcher, "gpu_without_bf16", lambda: "Tesla T4")
    settings = GenerationSettings(
        data_dir=tmp_path, generation_device="gpu", vllm_dtype="bfloat16", generation_port=free_port()
    )
    with pytest.raises(LaunchError, match=r"RAGFT_VLLM_DTYPE=bfloat16: this GPU \(Tesla T4\) does not compute bf16"):
        plan(settings)


def test_this_machines_cpu_flags_are_read() -> None:
    assert "fpu" in cpu_flags()  # every x86-64 CPU lists it


def test_same_model_compares_whole_names_or_the_same_folder(tmp_path: Path) -> None:
    assert same_model(str(tmp_path), str(tmp_path / "."))
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "huggingfacetb/smollm2-135m-instruct")
    assert not same_model("org1/X-7B", "org2/X-7B")
    assert not same_model(str(tmp_path / "a" / "merged"), str(tmp_path / "b" / "merged"))


def tiny_model(folder: Path, weights: bytes = b"weights", **config: object) -> Path:
    """A model folder as far as its identity goes: a config and a weight file."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8, **config}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text("{}")  # not part of the identity
    return folder


def adapter_trained_on(folder: Path, base_model: Path, identity: str | None) -> Path:
    folder.mkdir(parents=True)
    config = {"peft_type": "LORA", "r": 8, "base_model_name_or_path": str(base_model)}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if identity:
        (folder / "ragft.json").write_text(json.dumps({"base_model": str(base_model), "base_model_sha256": identity}))
    return folder


def test_an_adapter_follows_its_base_model_to_another_folder_by_identity(tmp_path: Path) -> None:
    trained_on = tiny_model(tmp_path / "var" / "models" / "tiny")
    identity = model_identity(trained_on)
    assert identity
    adapter = read_adapter("voice", adapter_trained_on(tmp_path / "voice", trained_on, identity))
    moved = tmp_path / "elsewhere" / "models" / "tiny"
    shutil.copytree(trained_on, moved)
    check_compatible(adapter, str(moved))
    check_base_model(adapter, [{"id": "base", "parent": None, "root": str(moved)}, {"id": "voice", "parent": "base"}])
    other_weights = tiny_model(tmp_path / "other-weights", weights=b"weightz")
    other_config = tiny_model(tmp_path / "other-config", hidden_size=16)
    for other in (other_weights, other_config):
        served = model_identity(other)
        assert served and served != identity
        with pytest.raises(AdapterError) as refused:
            check_compatible(adapter, str(other))
        message = str(refused.value)
        assert f"was trained on {str(trained_on)!r} (identity {identity[:12]})" in message
        assert f"serves {str(other)!r} (identity {served[:12]})" in message
        assert "RAGFT_BASE_MODEL" in message and "ragft finetune" in message
        with pytest.raises(AdapterError, match="another model"):
            check_base_model(adapter, [{"id": "base", "parent": None, "root": str(other)}])
    with pytest.raises(AdapterError, match="names are compared"):  # a hub name has no identity here
        check_compatible(adapter, "org/Other-7B")


def test_an_adapter_without_a_recorded_identity_is_matched_by_folder(tmp_path: Path) -> None:
    trained_on = tiny_model(tmp_path / "var" / "models" / "tiny")
    adapter = read_adapter("old", adapter_trained_on(tmp_path / "old", trained_on, identity=None))
    assert adapter.base_model_sha256 is None
    check_compatible(adapter, str(trained_on))
    moved = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(trained_on, moved)
    with pytest.raises(AdapterError, match="records no identity of its base model, so the folders are compared"):
        check_compatible(adapter, str(moved))


def test_identity_is_what_the_model_is_and_is_computed_once(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "a", transformers_version="5.19.0")
    identity = model_identity(model)
    assert identity is not None and len(identity) == 64
    assert model_identity(tiny_model(tmp_path / "b", transformers_version="4.57.0")) == identity  # who wrote it
    assert json.loads((model / CACHE).read_text())["sha256"] == identity
    (model / "model.safetensors").write_bytes(b"WEIGHTS")  # same size, new mtime: computed again
    assert model_identity(model) not in (identity, None)
    assert model_identity(tmp_path / "missing") is None
    assert model_identity(Path("HuggingFaceTB/SmolLM2-135M-Instruct")) is None


def test_adapters_default_under_the_data_dir(tmp_path: Path) -> None:
    assert GenerationSettings(data_dir=tmp_path).adapters_dir == tmp_path / "adapters"
    assert GenerationSettings(data_dir=tmp_path, adapters_dir=tmp_path / "x").adapters_dir == tmp_path / "x"


def test_a_broken_adapter_config_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(AdapterError, match="integer r"):
        discover(tmp_path)


def test_an_unknown_device_is_refused_by_name() -> None:
    result = CliRunner().invoke(app, ["serve", "generation", "--device", "tpu"])
    assert result.exit_code == 2
    assert "choose auto, cpu or gpu" in " ".join(result.output.split())
