"""`make bench-training`: the cost of one LoRA training step per token, in fp32 and in bf16
autocast, on `make run`'s base model, at the length of a grounded example (4 passages and an
answer). The precisions alternate, so a busy machine slows both alike. Prints Markdown."""

import time
from statistics import median

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from ragft_cli.generation import ensure_base_model
from services.generation.config import GenerationSettings
from services.generation.launcher import NATIVE_BF16_FLAGS, cpu_flags
from training.lora import MICRO_BATCH, TARGET_MODULES, TrainOptions

TOKENS = 1000
ROUNDS = 3


def step_seconds(model: torch.nn.Module, batch: torch.Tensor, bf16: bool) -> float:
    started = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    return time.perf_counter() - started


def main() -> None:
    settings = GenerationSettings()
    ensure_base_model(settings)
    options = TrainOptions()
    base = AutoModelForCausalLM.from_pretrained(settings.base_model_path, dtype=torch.float32)
    lora = LoraConfig(r=options.rank, lora_alpha=options.alpha, target_modules=TARGET_MODULES, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    batch = torch.randint(0, model.config.vocab_size, (MICRO_BATCH, TOKENS), generator=torch.Generator().manual_seed(0))
    step_seconds(model, batch, bf16=False)  # the first step pays for allocation
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for bf16 in (False, True):
            times[bf16].append(step_seconds(model, batch, bf16))
    native = sorted(cpu_flags() & NATIVE_BF16_FLAGS) or ["none"]
    heading = f"{MICRO_BATCH} x {TOKENS} tokens a step, median of {ROUNDS}; native bf16: {', '.join(native)}"
    print(f"# bench-training: {heading}\n")
    print("| precision | seconds a step | ms a token |")
    print("|---|---:|---:|")
    for bf16, label in ((False, "fp32"), (True, "bf16 autocast")):
        seconds = median(times[bf16])
        print(f"| {label} | {seconds:.1f} | {seconds / (MICRO_BATCH * TOKENS) * 1000:.2f} |")


if __name__ == "__main__":
    main()
