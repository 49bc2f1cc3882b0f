"""`ragft finetune`: a LoRA adapter (or a merged model) trained with peft on chat examples,
with the loss on the assistant turns only. The same code runs on CPU and on a GPU."""

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROLES = {"system", "user", "assistant"}
IGNORE = -100  # label value the loss skips
REPORT = "ragft.json"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class DataError(Exception):
    pass


@dataclass(frozen=True)
class TrainOptions:
    epochs: float = 2.0
    learning_rate: float = 1e-3  # a 135M model with a rank-16 adapter; larger models want ~2e-4
    rank: int = 16
    alpha: int = 32
    batch_size: int = 8
    max_tokens: int = 512
    seed: int = 0
    merge: bool = False


@dataclass(frozen=True)
class TrainReport:
    base_model: str
    data: str
    data_sha256: str
    examples: int
    steps: int
    final_loss: float
    seconds: float
    device: str
    merged: bool
    options: dict[str, Any]
    created: str


def load_conversations(path: Path) -> list[list[dict[str, str]]]:
    """Chat-format examples, one `{"messages": [...]}` per line; errors name the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    conversations = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f'{path}:{number}: expected {{"messages": [...]}} ({exc})') from exc
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{path}:{number}: messages must be a non-empty list")
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES or not message.get("content"):
                raise DataError(f"{path}:{number}: each message needs a role ({', '.join(sorted(ROLES))}) and content")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{path}:{number}: no assistant turn to learn from")
        conversations.append([{"role": m["role"], "content": m["content"]} for m in messages])
    if not conversations:
        raise DataError(f"{path}: no examples")
    return conversations


def _ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True, return_dict=True
    )
    return list(rendered["input_ids"])


def tokenize_conversation(tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, list[int]]:
    """Input ids and labels where only the assistant turns' tokens count toward the loss."""
    ids = _ids(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_ids(tokenizer, messages[:i], generation_prompt=True))
        so_far = _ids(tokenizer, messages[: i + 1], generation_prompt=False)
        end = len(so_far)
        if ids[:end] != so_far:
            raise DataError("the chat template does not render conversations as prefixes of each other")
        labels[start:end] = ids[start:end]
    return {
        "input_ids": ids[:max_tokens],
        "labels": labels[:max_tokens],
        "attention_mask": [1] * min(len(ids), max_tokens),
    }


def merge_adapter(base_model: str, adapter: Path, out: Path) -> Path:
    """A full model folder with the adapter folded into the weights: served like any base
    model, with no per-token LoRA cost."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(out)
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trained_from(adapter: Path, data: Path, options: TrainOptions) -> bool:
    """Whether the adapter's `ragft.json` says it was trained on this data, as the file reads
    now, with these options."""
    try:
        report = json.loads((adapter / REPORT).read_text())
        data_sha256 = file_sha256(data)
    except (OSError, json.JSONDecodeError):
        return False
    return bool(report.get("data_sha256") == data_sha256 and report.get("options") == asdict(options))


def train(base_model: str, data: Path, out: Path, options: TrainOptions) -> TrainReport:
    """Writes the adapter (or merged model) to `out` with `ragft.json` beside its weights. The
    folder appears only when complete: it is written under a hidden name and renamed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    if out.exists():
        raise DataError(f"{out} already exists; remove it or choose another --out")
    conversations = load_conversations(data)
    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = [tokenize_conversation(tokenizer, c, options.max_tokens) for c in conversations]
    gpu = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16 if gpu else torch.float32)
    lora = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=0.05,
        target_modules=TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        args = TrainingArguments(
            output_dir=str(Path(work) / "trainer"),
            num_train_epochs=options.epochs,
            per_device_train_batch_size=options.batch_size,
            # Batches of similar length: padding was ~40% of the tokens a CPU computed.
            train_sampling_strategy="group_by_length",
            learning_rate=options.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            logging_steps=5,
            save_strategy="no",
            report_to=[],
            bf16=gpu,
            use_cpu=not gpu,
            seed=options.seed,
            disable_tqdm=False,
        )
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
        trainer = Trainer(model=peft_model, args=args, train_dataset=dataset, data_collator=collator)
        result = trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        staged = Path(work) / "result"
        if options.merge:
            adapter = Path(work) / "adapter"
            peft_model.save_pretrained(str(adapter))
            merge_adapter(base_model, adapter, staged)
        else:
            peft_model.save_pretrained(str(staged))
        report = TrainReport(
            base_model=base_model,
            data=str(data),
            data_sha256=file_sha256(data),
            examples=len(dataset),
            steps=result.global_step,
            final_loss=round(losses[-1] if losses else result.training_loss, 4),
            seconds=round(result.metrics["train_runtime"], 1),
            device="gpu" if gpu else "cpu",
            merged=options.merge,
            options=asdict(options),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (staged / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
        shutil.move(staged, out)
    return report
