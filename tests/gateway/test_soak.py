"""A bounded soak: RAGFT_SOAK_S seconds (default 60) of mixed traffic on loopback against the real
gateway and a real retrieval service. Every request gets an answer, the gateway's own counters
agree with what was sent, and neither process grows in memory or open files once warm.

Generation is the scripted stand-in (tests/gateway/scripted_vllm.py): the CPU vLLM answers about
one request a second, too few to show a leak in a few minutes; the gateway and retrieval code on
the path are the real ones."""

import os
import random
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

from ragft.process import free_port
from ragft.sample_data import SAMPLE_KB
from tests.gateway.scripted_vllm import Answer, scripted_vllm
from tests.utils.processes import Processes, embedded_env

SOAK_S = float(os.environ.get("RAGFT_SOAK_S", "60"))
WARM_UP_S = min(20.0, SOAK_S / 4)
WORKERS = 6
ROUTES = ("rag", "finetuned", "hybrid")


def _usage(process: psutil.Process) -> tuple[float, int]:
    """Resident memory in MiB, and open file descriptors."""
    return process.memory_info().rss / 2**20, process.num_fds()


def _chat_requests_counted(url: str) -> float:
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith("ragft_gateway_chat_requests_total{"))


class Traffic:
    """Mixed requests from several threads until the deadline; each outcome counted by kind."""

    def __init__(self, gateway: str, retrieval: str, deadline: float) -> None:
        self.gateway, self.retrieval, self.deadline = gateway, retrieval, deadline
        self.outcomes: Counter[str] = Counter()
        self.chats = 0
        self.lock = threading.Lock()

    def worker(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < self.deadline:
                kind = rng.choice(("chat", "chat", "chat", "stream", "stream", "cut", "bad", "search", "ingest"))
                try:
                    status = getattr(self, kind)(client, rng)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.outcomes[f"{kind} {status}"] += 1
                    self.chats += kind in ("chat", "stream", "cut")

    def _chat(self, client: httpx.Client, rng: random.Random, stream: bool) -> httpx.Request:
        body = {"messages": [{"role": "user", "content": f"How do I reset my password? ({rng.random()})"}]}
        headers = {"X-Ragft-Route": rng.choice(ROUTES), "X-Ragft-Adapter": "voice"}
        return client.build_request("POST", f"{self.gateway}/v1/chat/completions", json={**body, "stream": stream},
                                    headers=headers)  # fmt: skip

    def chat(self, client: httpx.Client, rng: random.Random) -> int:
        return client.send(self._chat(client, rng, False)).status_code

    def stream(self, client: httpx.Client, rng: random.Random) -> int:
        response = client.send(self._chat(client, rng, True))
        return response.status_code if response.text.rstrip().endswith("data: [DONE]") else -1

    def cut(self, client: httpx.Client, rng: random.Random) -> int:
        """A client that leaves after the first event."""
        response = client.send(self._chat(client, rng, True), stream=True)
        next(response.iter_bytes())
        response.close()
        return response.status_code

    def bad(self, client: httpx.Client, rng: random.Random) -> int:
        url = f"{self.gateway}/v1/chat/completions"
        return client.post(url, json={"messages": []}, headers={"X-Ragft-Route": "rag"}).status_code

    def search(self, client: httpx.Client, rng: random.Random) -> int:
        url = f"{self.retrieval}/v1/collections/help-center/search"
        return client.post(url, json={"query": f"refund {rng.random()}", "top_k": 4}).status_code

    def ingest(self, client: httpx.Client, rng: random.Random) -> int:
        doc_id = f"soak-{rng.randrange(20)}"  # a few ids, replaced over and over
        document = {"id": doc_id, "text": f"# Soak note\n\nTemporary note {rng.random()} about refunds."}
        url = f"{self.retrieval}/v1/collections/scratch/documents"
        return client.post(url, json={"documents": [document]}).status_code


def test_a_soak_of_mixed_traffic_loses_nothing_and_leaks_nothing(processes: Processes, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    for article in sorted(p for p in SAMPLE_KB.iterdir() if p.is_file())[:12]:
        shutil.copy(article, kb)
    port = free_port()
    retrieval_url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path / "data", RAGFT_RETRIEVAL_PORT=str(port))
    assert processes.run("ingest", str(kb), "--direct", env=env).returncode == 0
    settings = {"RAGFT_RETRIEVAL_URL": retrieval_url, "RAGFT_DEFAULT_ADAPTER": "voice"}
    with (
        processes.serve("serve", "retrieval", env=env, ready=f"{retrieval_url}/readyz") as retrieval,
        scripted_vllm(Answer(tokens=8, token_s=0.01)) as vllm,
        processes.gateway(tmp_path / "gateway", None, RAGFT_GENERATION_URL=vllm.url, **settings) as (url, gateway),
    ):
        httpx.put(f"{retrieval_url}/v1/collections/scratch").raise_for_status()
        watched = {"gateway": psutil.Process(gateway.pid), "retrieval": psutil.Process(retrieval.pid)}
        traffic = Traffic(url, retrieval_url, time.monotonic() + SOAK_S)
        threads = [threading.Thread(target=traffic.worker, args=(seed,)) for seed in range(WORKERS)]
        for thread in threads:
            thread.start()
        time.sleep(WARM_UP_S)
        warm = {name: _usage(process) for name, process in watched.items()}
        for thread in threads:
            thread.join(timeout=SOAK_S + 60)
        assert not any(thread.is_alive() for thread in threads)
        end = {name: _usage(process) for name, process in watched.items()}
        counted = _chat_requests_counted(url)
        for _ in range(50):  # a cut stream is counted once the gateway sees the client gone
            if counted == traffic.chats:
                break
            time.sleep(0.1)
            counted = _chat_requests_counted(url)

    print(f"\nsoak {SOAK_S:.0f} s, {sum(traffic.outcomes.values())} requests: {dict(sorted(traffic.outcomes.items()))}")
    for name in watched:
        print(f"{name}: RSS {warm[name][0]:.0f} -> {end[name][0]:.0f} MiB, fds {warm[name][1]} -> {end[name][1]}")
    expected = {"chat 200", "stream 200", "cut 200", "bad 422", "search 200", "ingest 200"}
    assert set(traffic.outcomes) == expected, traffic.outcomes
    assert counted == traffic.chats  # every chat request the gateway took, it finished and counted
    assert traffic.chats > 100
    for name in watched:
        (warm_rss, warm_fds), (end_rss, end_fds) = warm[name], end[name]
        assert end_rss <= warm_rss * 1.15 + 16, f"{name} grew from {warm_rss:.0f} to {end_rss:.0f} MiB"
        assert end_fds <= warm_fds + 8, f"{name} went from {warm_fds} to {end_fds} open files"
