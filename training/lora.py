"""`ragft finetune`: a LoRA adapter (or a merged model) trained with peft on chat examples,
with the loss on the assistant turns only. The same code runs on CPU and on a GPU."""

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from evals.voice import voice_beside
from ragft.errors import UserFacingError
from services.generation.adapters import REPORT as REPORT  # the service reads it back
from services.generation.identity import model_identity

ROLES = {"system", "user", "assistant"}
IGNORE = -100  # label value the loss skips
EXAMPLES = "examples.jsonl"  # what was trained on, beside the weights
# Examples a CPU computes at once when the batch divides by it; the rest of the batch is
# accumulated. 8 grounded examples of ~1,200 tokens took more than the 2-core machine's 24 GB.
MICRO_BATCH = 2
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
Precision = Literal["auto", "bf16", "fp32"]
# Where to start with a base model of billions of parameters, which wants a smaller step than
# the packaged 135M one (QLoRA trained 7B to 65B models at 1e-4 to 2e-4).
BILLIONS_LEARNING_RATE = 2e-4


class DataError(UserFacingError):
    pass


class TrainingError(UserFacingError):
    """An option that this device or this base model cannot train with, refused before anything loads."""


@dataclass(frozen=True)
class TrainOptions:
    epochs: float = 2.0
    # Chosen for the packaged 135M model with a rank-16 adapter: `ragft finetune` applies it to
    # that model only.
    learning_rate: float = 1e-3
    rank: int = 16
    alpha: int = 32
    batch_size: int = 8
    max_tokens: int = 1280  # a grounded prompt with 4 passages and its answer is up to ~1,200
    seed: int = 0
    merge: bool = False


@dataclass(frozen=True)
class TrainReport:
    base_model: str
    base_model_sha256: str | None  # its identity, which the generation service checks adapters by
    data: str
    data_sha256: str
    examples: int
    steps: int
    final_loss: float
    seconds: float
    device: str
    precision: str
    merged: bool
    options: dict[str, Any]
    grounding: dict[str, Any] | None
    voice: dict[str, Any]  # the voice rules beside `data` and their file, or why none (evals.voice)
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


def trained_from(adapter: Path, data: Path, options: TrainOptions, grounding: dict[str, Any] | None = None) -> bool:
    """Whether the adapter's `ragft.json` says it was trained on this data, as the file reads
    now, with these options and this grounding."""
    try:
        report = json.loads((adapter / REPORT).read_text())
        data_sha256 = file_sha256(data)
    except (OSError, json.JSONDecodeError):
        return False
    return bool(
        report.get("data_sha256") == data_sha256
        and report.get("options") == asdict(options)
        and report.get("grounding") == grounding
    )


def choose_precision(requested: Precision = "auto") -> Literal["bf16", "fp32"]:
    """bf16 where the device computes it natively: a GPU that says so (cards older than compute
    capability 8.0 lack it), a CPU with native bf16 (autocast: about twice as fast as fp32 at
    1,000-token examples on an AVX-512 bf16 CPU); fp32 elsewhere. bf16 `requested` of a device
    without it is refused, naming the option and the device."""
    import torch

    from services.generation.launcher import NATIVE_BF16_FLAGS, cpu_flags

    if torch.cuda.is_available():
        device = f"GPU ({torch.cuda.get_device_name()})"
        # Emulated bf16 runs on older cards too, but slower than fp32: only the native kind counts.
        native = bool(torch.cuda.is_bf16_supported(including_emulation=False))
        lacking = "has no native bf16 (it needs compute capability 8.0 or more)"
    else:
        device = "CPU"
        native = bool(cpu_flags() & NATIVE_BF16_FLAGS)
        lacking = f"has no native bf16 (no {' or '.join(sorted(NATIVE_BF16_FLAGS))})"
    if requested == "bf16" and not native:
        raise TrainingError(f"--precision bf16: this {device} {lacking}; use --precision auto or fp32")
    return "bf16" if native and requested != "fp32" else "fp32"


def train(
    base_model: str,
    data: Path,
    out: Path,
    options: TrainOptions,
    *,
    precision: Precision = "auto",
    examples: list[dict[str, Any]] | None = None,
    grounding: dict[str, Any] | None = None,
) -> TrainReport:
    """Writes the adapter (or merged model) to `out` with `ragft.json` and `examples.jsonl`
    (what was trained on: `examples`, records with their `messages`, made from `data` with
    `grounding`; by default `data`'s conversations) beside its weights. The folder appears only
    when complete: it is written under a hidden name and renamed. `precision` as
    `choose_precision` picks it."""
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

    bf16 = choose_precision(precision) == "bf16"
    if out.exists():
        raise DataError(f"{out} already exists; remove it or choose another --out")
    voice = voice_beside(data)  # a bad voice file is refused before the model loads
    if examples is None:
        examples = [{"messages": messages} for messages in load_conversations(data)]
    set_seed(options.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lengths = [len(_ids(tokenizer, e["messages"], generation_prompt=False)) for e in examples]
    if cut := [number for number, length in enumerate(lengths, 1) if length > options.max_tokens]:
        raise DataError(
            f"{len(cut)} examples are longer than max_tokens ({options.max_tokens}) and would lose their answers "
            f"(the first: example {cut[0]}, {lengths[cut[0] - 1]} tokens); raise --max-tokens"
        )
    dataset = [tokenize_conversation(tokenizer, e["messages"], options.max_tokens) for e in examples]
    gpu = torch.cuda.is_available()
    micro_batch = options.batch_size if gpu or options.batch_size % MICRO_BATCH else MICRO_BATCH
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.bfloat16 if gpu and bf16 else torch.float32)
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
            per_device_train_batch_size=micro_batch,
            gradient_accumulation_steps=options.batch_size // micro_batch,
            # Batches of similar length: padding was ~40% of the tokens a CPU computed.
            train_sampling_strategy="group_by_length",
            learning_rate=options.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            logging_steps=5,
            save_strategy="no",
            report_to=[],
            bf16=bf16,
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
            base_model_sha256=model_identity(Path(base_model)),
            data=str(data),
            data_sha256=file_sha256(data),
            examples=len(dataset),
            steps=result.global_step,
            final_loss=round(losses[-1] if losses else result.training_loss, 4),
            seconds=round(result.metrics["train_runtime"], 1),
            device="gpu" if gpu else "cpu",
            precision="bf16" if bf16 else "fp32",
            merged=options.merge,
            options=asdict(options),
            grounding=grounding,
            voice=voice.model_dump(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (staged / REPORT).write_text(json.dumps(asdict(report), indent=2) + "\n")
        with (staged / EXAMPLES).open("w", encoding="utf-8") as file:
            file.writelines(json.dumps(example, ensure_ascii=False) + "\n" for example in examples)
        shutil.move(staged, out)
    return report
