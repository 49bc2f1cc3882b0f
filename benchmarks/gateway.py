"""`make bench-gateway`: what the gateway itself costs, beside LiteLLM's proxy, the Python gateway
users would pick instead. The same requests go straight to the upstreams, through ragft's
gateway and through LiteLLM, side by side in one run, at concurrency 1 and 32, against a stand-in
upstream that answers at once (benchmarks/standin.py), so model time hides nothing. Both
gateways run one process and check one API key.

LiteLLM is installed (pinned) into a virtualenv of its own under var/, never into ragft's.
Load comes from wrk (C, one thread per core). The load generator, the gateways and the stand-in
share this machine's cores; rounds alternate between the paths, and each figure is the median
of its rounds. Prints Markdown."""

import asyncio
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.standin import TOKEN_S, TOKENS
from gateway.contract import ROUTE_HEADER
from ragft import sse
from ragft.process import free_ports, spawn_ragft, stop_process, wait_until_ready
from ragft.settings import REPO

CONCURRENCY = (1, 32)
# The newest LiteLLM whose proxy installs from the package index here: later ones pin releases of
# litellm-proxy-extras (and from 1.110 a litellm-proxy package) that it does not serve.
LITELLM = "litellm[proxy]==1.108.5"
LITELLM_VENV = REPO / "var" / "litellm"
KEY = "sk-bench-key"
SECONDS = 5
ROUNDS = 3
BODY = '{"model": "voice", "max_tokens": 16, "messages": [{"role": "user", "content": "How much is the Team plan?"}]}'
SEARCH_BODY = '{"query": "How much is the Team plan?", "top_k": 4}'
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Target:
    name: str
    url: str
    body: str
    headers: dict[str, str]


def _lua(target: Target) -> str:
    headers = {"Content-Type": "application/json", **target.headers}
    lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    return f"wrk.method = \"POST\"\nwrk.body = '{target.body}'\n{lines}"


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * UNITS[unit]


def wrk(target: Target, connections: int, script_dir: Path) -> Run:
    script = script_dir / f"{target.name}.lua"
    script.write_text(_lua(target))
    threads = min(connections, os.cpu_count() or 1)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{SECONDS}s", "--latency", "-s", str(script), target.url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Run(rps, _ms(percentiles["50"]), _ms(percentiles["99"]), errors)


def _median(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.rps for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        sum(r.errors for r in runs),
    )


def measure(targets: list[Target], connections: int, script_dir: Path) -> dict[str, Run]:
    rounds: dict[str, list[Run]] = {t.name: [] for t in targets}
    wrk(targets[0], connections, script_dir)  # warm-up: connections, caches, the JIT-less first calls
    for _ in range(ROUNDS):
        for target in targets:
            rounds[target.name].append(wrk(target, connections, script_dir))
    return {name: _median(runs) for name, runs in rounds.items()}


def _pair(a: Run, b: Run) -> Run:
    """Two requests one after the other, as a client without the gateway makes them for rag."""
    return Run(1 / (1 / a.rps + 1 / b.rps), a.p50_ms + b.p50_ms, a.p99_ms + b.p99_ms, a.errors + b.errors)


# Proxies that only pass the completion through (benchmarks/passthrough.py): the floor under
# the gateway's cost on its own parts.
FLOORS = {
    "benchmarks.passthrough:bare": "floor: bare ASGI pass-through",
    "benchmarks.passthrough:fastapi_app": "floor: FastAPI pass-through",
}


def _uvicorn(app: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=REPO, start_new_session=True, env={**os.environ, **env},
    )  # fmt: skip


STREAMS = 32
WAVES = 5
STREAM_BODY = {**json.loads(BODY), "stream": True}


async def _one_stream(client: httpx.AsyncClient, target: Target) -> tuple[float, list[float]]:
    """Seconds to the first token, and between the tokens after it."""
    started = time.perf_counter()
    arrivals = []
    async with client.stream("POST", target.url, json=STREAM_BODY, headers=target.headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            found = sse.data(line)
            if found and found != sse.DONE_DATA and json.loads(found)["choices"]:
                arrivals.append(time.perf_counter())
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    return arrivals[0] - started, gaps


async def _waves(targets: list[Target]) -> dict[str, tuple[list[float], list[float]]]:
    """WAVES waves of STREAMS concurrent streams per target, the targets taking turns."""
    timings: dict[str, tuple[list[float], list[float]]] = {t.name: ([], []) for t in targets}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=STREAMS)) as client:
        for _ in range(WAVES):
            for target in targets:
                results = await asyncio.gather(*(_one_stream(client, target) for _ in range(STREAMS)))
                for first, gaps in results:
                    timings[target.name][0].append(first * 1000)
                    timings[target.name][1].extend(gap * 1000 for gap in gaps)
    return timings


def print_streaming(targets: dict[str, Target]) -> None:
    timings = asyncio.run(_waves(list(targets.values())))
    print(f"\n## Streaming: {STREAMS} concurrent streams of {TOKENS} tokens, one every "
          f"{TOKEN_S * 1000:.0f} ms, {WAVES} waves per path\n")  # fmt: skip
    print("| path | TTFT p50 ms | TTFT p95 ms | inter-token p50 ms | inter-token p95 ms |")
    print("|---|---|---|---|---|")
    for label, target in targets.items():
        firsts, gaps = timings[target.name]
        q = statistics.quantiles
        print(f"| {label} | {q(firsts, n=100)[49]:.2f} | {q(firsts, n=100)[94]:.2f} | "
              f"{q(gaps, n=100)[49]:.2f} | {q(gaps, n=100)[94]:.2f} |")  # fmt: skip


def litellm_proxy() -> Path:
    """The `litellm` command of a virtualenv under var/, made on first use."""
    command = LITELLM_VENV / "bin" / "litellm"
    if not command.exists():
        print(f"Installing {LITELLM} into {LITELLM_VENV} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", LITELLM]
        subprocess.run(pip, check=True)
    return command


def litellm_config(standin: str, folder: Path) -> Path:
    """One model, the stand-in's, behind a master key; no database, no callbacks."""
    config = folder / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: voice\n"
        "    litellm_params: {model: openai/voice, api_base: " + standin + "/v1, api_key: standin}\n"
        "general_settings: {master_key: " + KEY + "}\n"
        "litellm_settings: {telemetry: false, drop_params: true}\n"
    )
    return config


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("bench-gateway needs wrk: apt-get install wrk")
    litellm = litellm_proxy()
    standin_port, gateway_port, litellm_port, *others = free_ports(3 + len(FLOORS))
    floor_ports = dict(zip(FLOORS, others, strict=True))
    standin = f"http://127.0.0.1:{standin_port}"
    gateway = f"http://127.0.0.1:{gateway_port}"
    peer = f"http://127.0.0.1:{litellm_port}"
    env = {
        **os.environ,
        "RAGFT_LOG_LEVEL": "warning",  # the access log is not what is measured
        "RAGFT_GATEWAY_PORT": str(gateway_port),
        "RAGFT_RETRIEVAL_URL": standin,
        "RAGFT_GENERATION_URL": standin,
        "RAGFT_DEFAULT_ADAPTER": "voice",
        "RAGFT_API_KEYS": KEY,
    }
    auth = {"Authorization": f"Bearer {KEY}"}
    with tempfile.TemporaryDirectory(prefix="ragft-bench-gw-") as tmp:
        upstream = _uvicorn("benchmarks.standin:app", standin_port)
        floors = [_uvicorn(app, port, PASSTHROUGH_UPSTREAM=standin) for app, port in floor_ports.items()]
        proxy = spawn_ragft("serve", "gateway", env=env, cwd=REPO, own_group=True)
        peer_env = {"PATH": os.environ["PATH"], "HOME": tmp, "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
        other = subprocess.Popen(
            [str(litellm), "--config", str(litellm_config(standin, Path(tmp))), "--host", "127.0.0.1",
             "--port", str(litellm_port), "--num_workers", "1"],
            env=peer_env, cwd=tmp, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until_ready(f"{standin}/health", timeout=30, process=upstream)
            for floor, port in zip(floors, floor_ports.values(), strict=True):
                wait_until_ready(f"http://127.0.0.1:{port}/health", timeout=30, process=floor)
            wait_until_ready(f"{gateway}/readyz", timeout=30, process=proxy)
            wait_until_ready(f"{peer}/health/liveliness", timeout=180, process=other)
            targets = [
                Target("direct-completion", f"{standin}/v1/chat/completions", BODY, {}),
                *(
                    Target(app, f"http://127.0.0.1:{port}/v1/chat/completions", BODY, {})
                    for app, port in floor_ports.items()
                ),
                Target(
                    "gateway-finetuned", f"{gateway}/v1/chat/completions", BODY, {"X-Ragft-Route": "finetuned", **auth}
                ),
                Target("litellm", f"{peer}/v1/chat/completions", BODY, auth),
                Target("direct-search", f"{standin}/v1/collections/help-center/search", SEARCH_BODY, {}),
                Target("gateway-rag", f"{gateway}/v1/chat/completions", BODY, {ROUTE_HEADER: "rag", **auth}),
            ]
            print(f"# bench-gateway on {os.cpu_count()} CPU cores: wrk, {ROUNDS} rounds of {SECONDS} s per path\n")
            print("| concurrency | path | requests/s | p50 ms | p99 ms | errors | added p50 ms | share of direct rps |")
            print("|---|---|---|---|---|---|---|---|")
            for connections in CONCURRENCY:
                runs = measure(targets, connections, Path(tmp))
                direct_rag = _pair(runs["direct-search"], runs["direct-completion"])
                rows = [
                    ("direct: completion", runs["direct-completion"], None),
                    *((label, runs[app], runs["direct-completion"]) for app, label in FLOORS.items()),
                    ("ragft gateway: finetuned", runs["gateway-finetuned"], runs["direct-completion"]),
                    ("LiteLLM proxy: completion", runs["litellm"], runs["direct-completion"]),
                    ("direct: search + completion", direct_rag, None),
                    ("ragft gateway: rag", runs["gateway-rag"], direct_rag),
                ]
                for name, run, direct in rows:
                    added = f"{run.p50_ms - direct.p50_ms:+.2f}" if direct else ""
                    share = f"{run.rps / direct.rps:.1%}" if direct else ""
                    print(
                        f"| {connections} | {name} | {run.rps:,.0f} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | "
                        f"{run.errors} | {added} | {share} |"
                    )
                ratio = runs["gateway-finetuned"].rps / runs["litellm"].rps
                print(f"| {connections} | ragft / LiteLLM, one upstream call |  |  |  |  |  | {ratio:.1f}x |")
            # The floors read the whole answer before sending it, so they are no floor for a stream.
            by_name = {target.name: target for target in targets}
            streamed = {
                "direct": "direct-completion",
                "ragft gateway: finetuned": "gateway-finetuned",
                "LiteLLM proxy": "litellm",
            }
            print_streaming({label: by_name[name] for label, name in streamed.items()})
        finally:
            stop_process(other, timeout=10, group=True)
            stop_process(proxy, timeout=10, group=True)
            for process in [*floors, upstream]:
                stop_process(process, timeout=10, group=True)


if __name__ == "__main__":
    main()
