"""The parts around vLLM: adapter discovery, the launcher's command and dtype, the command line."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragft_cli import app
from services.generation.adapters import AdapterError, discover, max_lora_rank, same_model
from services.generation.config import GenerationSettings
from services.generation.launcher import Device, choose_dtype, cpu_flags, vllm_command


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
    assert max_lora_rank(adapters) == 32
    assert max_lora_rank([]) == 16
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
    assert "--max-lora-rank 16" in joined and "--max-loras 1" in joined
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


def test_this_machines_cpu_flags_are_read() -> None:
    assert "fpu" in cpu_flags()  # every x86-64 CPU lists it


def test_same_model_compares_whole_names_or_the_same_folder(tmp_path: Path) -> None:
    assert same_model(str(tmp_path), str(tmp_path / "."))
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "huggingfacetb/smollm2-135m-instruct")
    assert not same_model("org1/X-7B", "org2/X-7B")
    assert not same_model(str(tmp_path / "a" / "merged"), str(tmp_path / "b" / "merged"))


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
