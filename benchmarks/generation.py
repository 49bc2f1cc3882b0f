"""`make bench-generation`: output tokens/s and time to first token at concurrency 1, 8 and 32
for the base model, a LoRA adapter, and the same adapter merged into the weights. Prints Markdown.

One run, same machine, same prompts: the base model and the adapter are served by one vLLM,
then the merged model by a second vLLM started after the first stopped.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ragft import sse
from ragft.process import free_port, spawn_ragft, stop_process, wait_until_ready
from ragft.sample_data import EVAL_SET, TINY_FINETUNE_SET
from ragft.settings import REPO

CONCURRENCY = (1, 8, 32)
MAX_TOKENS = 64
PROMPTS = [json.loads(line)["question"] for line in EVAL_SET.read_text().splitlines()]


@dataclass
class Result:
    requests: int
    output_tokens: int
    seconds: float
    ttft: list[float]

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds


async def _one(client: httpx.AsyncClient, model: str, prompt: str) -> tuple[int, float]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,  # vLLM: every request produces MAX_TOKENS, so the paths do equal work
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            data = sse.data(line)
            if data is None or data == sse.DONE_DATA:
                continue
            event = json.loads(data)
            if not first and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return tokens, first


async def measure(url: str, model: str, concurrency: int) -> Result:
    requests = max(6, 2 * concurrency)
    prompts = iter(PROMPTS[i % len(PROMPTS)] for i in range(requests))
    results: list[tuple[int, float]] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for prompt in prompts:
            results.append(await _one(client, model, prompt))

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await _one(client, model, "warm up")
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Result(requests, sum(t for t, _ in results), seconds, [f for _, f in results])


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    env = {**env, "RAGFT_GENERATION_PORT": str(port)}
    process = spawn_ragft("serve", "generation", env=env, cwd=REPO, own_group=True)
    url = f"http://127.0.0.1:{port}"
    try:
        return process, url, wait_until_ready(f"{url}/health", timeout=600, process=process)
    except BaseException:
        stop(process)
        raise


def stop(process: subprocess.Popen[bytes]) -> None:
    stop_process(process, timeout=60, group=True)


def ragft(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "ragft_cli", *args], env=env, cwd=REPO, check=True, capture_output=True)


def main() -> None:
    from training.lora import merge_adapter

    print(f"# bench-generation on {os.cpu_count()} CPU cores (vLLM CPU build), {MAX_TOKENS} output tokens a request\n")
    with tempfile.TemporaryDirectory(prefix="ragft-bench-gen-") as tmp:
        data = Path(tmp)
        env = {**os.environ, "RAGFT_DATA_DIR": str(data), "RAGFT_ADAPTERS_DIR": str(data / "adapters")}
        base = data / "models" / "smollm2-135m-instruct"
        adapter = data / "adapters" / "voice"
        ragft("finetune", "--data", str(TINY_FINETUNE_SET), "--out", str(adapter), env=env)
        merged = merge_adapter(str(base), adapter, data / "models" / "voice-merged")
        rows: list[tuple[str, float, int, Result]] = []

        process, url, startup = serve(env)
        try:
            for label, model in (("base model", "base"), ("LoRA adapter", "voice")):
                rows += [(label, startup, c, asyncio.run(measure(url, model, c))) for c in CONCURRENCY]
        finally:
            stop(process)
        merged_env = {**env, "RAGFT_BASE_MODEL": str(merged), "RAGFT_ADAPTERS_DIR": str(data / "none")}
        process, url, startup = serve(merged_env)
        try:
            rows += [("merged model", startup, c, asyncio.run(measure(url, "base", c))) for c in CONCURRENCY]
        finally:
            stop(process)

    base_rate = {c: r.tokens_per_second for label, _, c, r in rows if label == "base model"}
    print("| served as | vLLM ready in | concurrency | requests | output tok/s | vs base | TTFT p50 ms | TTFT max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, startup, c, r in rows:
        print(
            f"| {label} | {startup:.0f} s | {c} | {r.requests} | {r.tokens_per_second:.1f} | "
            f"{r.tokens_per_second / base_rate[c]:.2f}x | {statistics.median(r.ttft) * 1000:.0f} | "
            f"{max(r.ttft) * 1000:.0f} |"
        )


if __name__ == "__main__":
    main()
