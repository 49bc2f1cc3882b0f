"""The LoRA training's parts that need no training run: its data, assistant-only labels, the limits."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ragft.sample_data import TINY_FINETUNE_SET
from training.lora import IGNORE, DataError, TrainOptions, load_conversations, tokenize_conversation, train


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
