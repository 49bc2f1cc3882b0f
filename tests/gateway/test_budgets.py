"""Token budgets per API key: the keys file's fields and the refusal in-process; the count in a
real Redis, refused exactly at the limit; then two gateway replicas in front of one real Redis and
the scripted vLLM (a stand-in: its usage is exact, and a stream can be cut midway on cue),
counting whole answers, streams, a stream cut by its client and every route of /v1/compare; and
once on the real vLLM, whose usage a budget counts."""

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.access import KeyRing
from gateway.budgets import Budget, BudgetSpent
from gateway.store import Charge, Store
from tests.gateway.scripted_vllm import Answer, scripted_vllm
from tests.utils.gateway import GatewayStarter
from tests.utils.metrics import metric
from tests.utils.processes import Processes, embedded_env, redis_server

SPENDER = "spender-key-4b1e"
NEIGHBOUR = "neighbour-key-77a0"
ROOT = "root-key-0c3d"
BUDGET = 20_000
DAY = 86_400
MINUTE = 60


def _away_from_the_turn(window_s: int, needed_s: float) -> None:
    """A window turns at its edge (a day's at midnight UTC): a test that counts across it would
    start counting again, so it waits for the next window when fewer than `needed_s` are left."""
    left = window_s - time.time() % window_s
    if left < needed_s:
        time.sleep(left + 0.1)


def test_a_budget_reads_its_tokens_and_window_from_the_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("a-key help-center tokens-per-day=500 tokens-per-minute=50\nb-key * admin tokens-per-day=9\n")
    ring = KeyRing.read("root-key", keys_file)
    assert ring.keys["a-key"].budgets == (Budget(500, "day"), Budget(50, "minute"))
    assert ring.keys["b-key"].admin and ring.keys["b-key"].budgets == (Budget(9, "day"),)
    assert ring.keys["root-key"].budgets == () and ring.budgeted
    assert not KeyRing.read("root-key", None).budgeted


def test_a_spent_budget_says_which_budget_and_when_it_renews() -> None:
    minute = Budget(50, "minute")
    minute.refuse_if_spent(49, now=120.0)  # under the limit: nothing
    with pytest.raises(BudgetSpent) as refused:
        minute.refuse_if_spent(50, now=125.5)
    assert refused.value.status_code == 429 and refused.value.type == "insufficient_quota"
    assert (
        refused.value.message
        == "this API key has spent its budget of 50 tokens per minute (50 used); it renews in 55 s"
    )
    assert refused.value.headers() == {"Retry-After": "55"}
    with pytest.raises(BudgetSpent, match=r"budget of 1,000 tokens per day \(UTC\) \(1,201 used\); it renews in 1 s"):
        Budget(1000, "day").refuse_if_spent(1201, now=DAY * 3 - 0.5)


def test_the_store_refuses_exactly_at_the_limit_and_per_key(redis_url: str) -> None:
    """In a real Redis: 99 of 100 tokens spent still answers; the 100th refuses. A minute's budget
    beside a day's refuses by its own count and renews within the minute."""
    _away_from_the_turn(MINUTE, needed_s=10)
    _away_from_the_turn(DAY, needed_s=10)
    day, spender, neighbour = Budget(100, "day"), uuid.uuid4().hex, uuid.uuid4().hex
    both = (Budget(1_000, "day"), Budget(30, "minute"))

    async def spend() -> tuple[BudgetSpent, BudgetSpent]:
        store = Store(redis_url, retention_s=60)
        try:
            await store.check_budgets(spender, (day,))
            await store.opened(spender, "first", {"route": "finetuned"}, Charge((day,), 99))
            await store.check_budgets(spender, (day,))
            await store.finished(spender, "first", {"outcome": "ok"}, Charge((day,), 0))  # nothing to charge
            await store.check_budgets(spender, (day,))
            await store.finished(spender, "first", {"outcome": "ok"}, Charge((day,), 1))
            await store.check_budgets(neighbour, (day,))  # another key's count is its own
            with pytest.raises(BudgetSpent) as refused:
                await store.check_budgets(spender, (day,))
            await store.opened(neighbour, "second", {"route": "rag"}, Charge(both, 30))
            with pytest.raises(BudgetSpent) as by_the_minute:
                await store.check_budgets(neighbour, both)
            return refused.value, by_the_minute.value
        finally:
            await store.close()

    refused, by_the_minute = asyncio.run(spend())
    assert "budget of 100 tokens per day (UTC) (100 used)" in refused.message
    assert abs(refused.retry_after - (DAY - time.time() % DAY)) < 5
    assert "budget of 30 tokens per minute (30 used)" in by_the_minute.message
    assert (
        0 < by_the_minute.retry_after <= MINUTE and abs(by_the_minute.retry_after - (MINUTE - time.time() % MINUTE)) < 3
    )


def test_a_budget_needs_a_store_to_start(processes: Processes, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{SPENDER} help-center tokens-per-day=10\n")
    started = processes.run(
        "serve", "gateway", env=embedded_env(tmp_path, RAGFT_API_KEYS_FILE=str(keys_file)), timeout=60
    )
    assert started.returncode != 0 and "a token budget in RAGFT_API_KEYS_FILE needs RAGFT_STORE_URL" in started.stderr
    assert SPENDER not in started.stderr


def _post(url: str, path: str, key: str, body: dict[str, Any], route: str = "finetuned") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Ragft-Route": route}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)


def _messages(padding: int = 0) -> list[dict[str, str]]:
    return [{"role": "user", "content": "How much does the Team plan cost?" + " please" * padding}]


def _streamed_usage(url: str, key: str, **more: Any) -> int:
    """A whole stream that asks for its usage: the tokens its usage chunk reports."""
    body = {"messages": _messages(), "stream": True, "stream_options": {"include_usage": True}, **more}
    headers = {"Authorization": f"Bearer {key}", "X-Ragft-Route": "finetuned"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    # Every content chunk carries the running usage (continuous_usage_stats, asked for a budgeted key).
    assert all(
        chunk.get("usage") for chunk in chunks if chunk["choices"] and chunk["choices"][0]["delta"].get("content")
    )
    return int(next(chunk["usage"]["total_tokens"] for chunk in chunks if not chunk["choices"] and chunk.get("usage")))


def _cut_stream(url: str, key: str) -> None:
    """A stream its client leaves after the first token."""
    body = {"messages": _messages(), "stream": True}
    headers = {"Authorization": f"Bearer {key}", "X-Ragft-Route": "finetuned"}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60) as response:
        for line in response.iter_lines():
            if '"content":"ok' in line.replace(" ", ""):
                break


def _wait_for_a_record(store_url: str, outcome: str) -> None:
    """Until the store holds an answer's record with this outcome (its layout: gateway/store.py)."""
    client = redis.Redis.from_url(store_url, decode_responses=True)
    for _ in range(100):
        if any(client.hget(key, "outcome") == outcome for key in client.scan_iter("ragft:answer:*")):
            return
        time.sleep(0.1)
    raise AssertionError(f"no record with outcome {outcome!r} after 10 s")


def test_replicas_share_a_budget_that_counts_every_answer_and_refuses_once_spent(
    processes: Processes, retrieval_url: str, tmp_path: Path
) -> None:
    _away_from_the_turn(DAY, needed_s=60)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(
        f"{SPENDER} help-center tokens-per-day={BUDGET}\n{NEIGHBOUR} help-center tokens-per-day={BUDGET}\n"
    )
    with redis_server(tmp_path) as (store_url, store), scripted_vllm(Answer(tokens=2)) as vllm:
        settings = {
            "RAGFT_RETRIEVAL_URL": retrieval_url,
            "RAGFT_GENERATION_URL": vllm.url,
            "RAGFT_DEFAULT_ADAPTER": "voice",
            "RAGFT_API_KEYS": ROOT,
            "RAGFT_API_KEYS_FILE": str(keys_file),
            "RAGFT_STORE_URL": store_url,
        }
        with (
            processes.gateway(tmp_path, None, **settings) as (one, _),
            processes.gateway(tmp_path, None, **settings) as (other, _),
        ):
            # What the client is told it spent: a whole answer, a whole stream, both routes of a comparison.
            whole = _post(one, "/v1/chat/completions", SPENDER, {"messages": _messages()})
            assert whole.status_code == 200, whole.text
            told = whole.json()["usage"]["total_tokens"] + _streamed_usage(other, SPENDER)
            compared = _post(one, "/v1/compare", SPENDER, {"messages": _messages(), "routes": ["finetuned", "hybrid"]})
            assert [result["status"] for result in compared.json()["results"]] == [200, 200], compared.text
            told += sum(sum(result["usage"].values()) for result in compared.json()["results"])
            vllm.script.append(Answer(tokens=30, token_s=0.05))
            _cut_stream(other, SPENDER)  # charged what vLLM had reported when it was cut
            _wait_for_a_record(store_url, outcome="client_closed")  # written as the stream's end closes

            padded = {"messages": _messages(padding=400)}  # about 3,300 tokens an answer
            answered: list[int] = []
            for turn in range(20):
                response = _post((one, other)[turn % 2], "/v1/chat/completions", SPENDER, padded)
                if response.status_code != 200:
                    break
                answered.append(response.json()["usage"]["total_tokens"])
            refused = response
            assert refused.status_code == 429, refused.text
            error = refused.json()["error"]
            assert error["type"] == "insufficient_quota" and SPENDER not in refused.text
            used = int(error["message"].split("(")[-1].split(" used")[0].replace(",", ""))
            assert f"budget of {BUDGET:,} tokens per day (UTC)" in error["message"]
            cut_charge = used - told - sum(answered)
            prompt = whole.json()["usage"]["prompt_tokens"]
            assert prompt + 1 <= cut_charge <= prompt + 30, cut_charge  # its prompt and the tokens sent by then
            # Refused exactly once the budget was spent: the last answer began under it.
            assert used >= BUDGET > used - answered[-1]
            assert abs(int(refused.headers["Retry-After"]) - (DAY - time.time() % DAY)) < 5

            # Spent everywhere: the other replica, streams and comparisons; other keys answer.
            spent_everywhere: list[tuple[str, str, dict[str, Any]]] = [
                (other, "/v1/chat/completions", {"messages": _messages(), "stream": True}),
                (one, "/v1/compare", {"messages": _messages()}),
            ]
            for url, path, body in spent_everywhere:
                assert _post(url, path, SPENDER, body).status_code == 429
            assert _post(other, "/v1/chat/completions", NEIGHBOUR, {"messages": _messages()}).status_code == 200
            assert metric(one, 'ragft_gateway_budget_refusals_total{window="day"}') >= 2
            calls = vllm.calls

            store.kill()  # a budget cannot be checked without its store: refused, never free
            store.wait()
            down = _post(one, "/v1/chat/completions", NEIGHBOUR, {"messages": _messages()})
            assert down.status_code == 503 and "Retry-After" in down.headers, down.text
            assert _post(one, "/v1/chat/completions", ROOT, {"messages": _messages()}).status_code == 200
            assert vllm.calls == calls + 1  # only the unbudgeted key reached vLLM


def test_a_budget_counts_the_usage_the_real_vllm_reports(start_gateway: GatewayStarter, tmp_path: Path) -> None:
    """vLLM accepts `continuous_usage_stats` (a budgeted key's stream carries the running usage on
    every content chunk), and the refusal that follows counts exactly what vLLM reported."""
    _away_from_the_turn(DAY, needed_s=120)
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{SPENDER} help-center tokens-per-day=10\n")
    with (
        redis_server(tmp_path) as (store_url, _),
        start_gateway(RAGFT_STORE_URL=store_url, RAGFT_API_KEYS=ROOT, RAGFT_API_KEYS_FILE=str(keys_file)) as url,
    ):
        spent = _streamed_usage(url, SPENDER, max_tokens=8)
        refused = _post(url, "/v1/chat/completions", SPENDER, {"messages": _messages(), "max_tokens": 8})
    assert refused.status_code == 429, refused.text
    assert f"budget of 10 tokens per day (UTC) ({spent:,} used)" in refused.json()["error"]["message"]
