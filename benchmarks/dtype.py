"""`make bench-dtype`: output tokens/s of the base model and the default adapter under each dtype
vLLM can be given on a CPU, side by side in one run, on `make run`'s model and adapter (set up
first if missing). Prints Markdown; the heading names what `RAGFT_VLLM_DTYPE=auto` picks here."""

import asyncio
import os

from benchmarks.generation import MAX_TOKENS, measure, serve, stop
from ragft.sample_data import FINETUNE_SET
from ragft_cli.generation import ensure_base_model, ensure_default_adapter
from services.generation.config import GenerationSettings
from services.generation.launcher import choose_dtype, cpu_flags

DTYPES = ("bfloat16", "float32")
CONCURRENCY = (1, 8)


def main() -> None:
    settings = GenerationSettings()
    ensure_base_model(settings)
    ensure_default_adapter(settings, FINETUNE_SET)
    auto, reason = choose_dtype("auto", "cpu", cpu_flags())
    print(f"# bench-dtype: `auto` picks {auto} on this CPU ({reason}); {MAX_TOKENS} output tokens a request\n")
    print("| dtype | model | concurrency | requests | output tok/s |")
    print("|---|---|---|---|---|")
    for dtype in DTYPES:
        process, url, _ = serve({**os.environ, "RAGFT_VLLM_DTYPE": dtype})
        try:
            for model in ("base", settings.default_adapter):
                for concurrency in CONCURRENCY:
                    result = asyncio.run(measure(url, model, concurrency))
                    print(f"| {dtype} | {model} | {concurrency} | {result.requests} | {result.tokens_per_second:.1f} |")
        finally:
            stop(process)


if __name__ == "__main__":
    main()
