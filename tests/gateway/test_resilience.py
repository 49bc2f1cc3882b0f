"""The gateway under faults and overload: the time-to-first-token limit, retries within their
budget, the circuit breaker, admission control, rate limits and draining on SIGTERM.

The gateway runs in this process (`start_gateway_in_process`), and as a real process for
draining, which takes a SIGTERM; vLLM is the scripted stand-in (tests/gateway/scripted_vllm.py),
because these tests need an upstream that fails, stalls or holds a stream on cue."""

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import httpx

from tests.gateway.scripted_vllm import Answer, Fail, ScriptedVllm, scripted_vllm
from tests.utils.gateway import InProcessStarter, sse_events
from tests.utils.metrics import metric
from tests.utils.processes import Processes

FINETUNED = {"X-Ragft-Route": "finetuned", "X-Ragft-Adapter": "voice"}
USER = [{"role": "user", "content": "How do I reset my password?"}]


def _chat(gateway: httpx.Client, *, stream: bool = False, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"messages": USER, "stream": stream}
    return gateway.post("/v1/chat/completions", json=body, headers={**FINETUNED, **(headers or {})})


def _error(response: httpx.Response, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_, error
    return str(error["message"])


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def _on(start: InProcessStarter, vllm: ScriptedVllm, **settings: str) -> AbstractContextManager[httpx.Client]:
    return start(RAGFT_GENERATION_URL=vllm.url, **settings)


def test_a_stall_before_the_first_token_is_a_504_but_a_slow_steady_stream_is_not(
    start_gateway_in_process: InProcessStarter,
) -> None:
    with scripted_vllm(Answer(stall_s=8)) as vllm, _on(start_gateway_in_process, vllm, RAGFT_TTFT_S="1") as gateway:
        started = time.monotonic()
        message = _error(_chat(gateway, stream=True), 504, "upstream_timeout")
        assert time.monotonic() - started < 4
        assert "time-to-first-token limit (1 s)" in message
        vllm.default = Answer(tokens=5, token_s=0.4)  # 2 s in all, the first token in 0.4 s
        events = sse_events(_chat(gateway, stream=True))
        assert [e["choices"][0]["delta"].get("content") for e in events[2:7]] == ["ok "] * 5
        assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])


def test_a_refused_or_failed_call_is_retried_once_and_retries_stay_within_the_budget(
    start_gateway_in_process: InProcessStarter,
) -> None:
    with scripted_vllm() as vllm, _on(start_gateway_in_process, vllm, RAGFT_BREAKER_FAILURES="1000") as gateway:
        for _ in range(10):  # each call earns 0.2 of a retry: 10 calls, 2 retries
            assert _chat(gateway).status_code == 200
        for fault in (Fail(0), Fail(503)):  # a dropped connection, a 503
            vllm.script.append(fault)
            before = vllm.calls
            assert _chat(gateway).status_code == 200
            assert vllm.calls == before + 2
        for status in (400, 429, 500):  # never retried
            vllm.script.append(Fail(status))
            before = vllm.calls
            assert _chat(gateway).status_code >= 400
            assert vllm.calls == before + 1
        # A sustained outage: 50 requests earn 10 retries, and 1.0 was left over.
        vllm.default = Fail(502)
        before = vllm.calls
        for _ in range(50):
            _error(_chat(gateway), 502, "upstream_error")
        assert vllm.calls - before == 50 + 11
        retries = metric(gateway, 'ragft_gateway_upstream_retries_total{upstream="generation"}')
        assert retries == 2 + 11


def test_the_breaker_fails_fast_after_repeated_failures_then_one_call_probes(
    start_gateway_in_process: InProcessStarter,
) -> None:
    settings = {"RAGFT_BREAKER_FAILURES": "3", "RAGFT_BREAKER_COOLDOWN_S": "2", "RAGFT_RETRY_BUDGET": "0"}
    with scripted_vllm(Fail(503)) as vllm, _on(start_gateway_in_process, vllm, **settings) as gateway:
        for _ in range(3):
            assert "scripted 503" in _error(_chat(gateway), 503, "upstream_unavailable")
        fast = _chat(gateway)
        assert "stops calling it" in _error(fast, 503, "upstream_unavailable")
        assert fast.headers["retry-after"] in ("1", "2")
        assert vllm.calls == 3  # the open breaker called nothing
        assert metric(gateway, 'ragft_gateway_circuit_open{upstream="generation"}') == 1
        time.sleep(2.1)
        assert _chat(gateway).status_code == 503  # the probe, still failing: open again
        assert vllm.calls == 4
        _error(_chat(gateway), 503, "upstream_unavailable")
        assert vllm.calls == 4
        vllm.default = Answer()
        time.sleep(2.1)
        assert _chat(gateway).status_code == 200  # the probe succeeds: closed
        assert _chat(gateway).status_code == 200
        assert vllm.calls == 6
        assert metric(gateway, 'ragft_gateway_circuit_open{upstream="generation"}') == 0


def test_admission_control_refuses_beyond_the_cap_at_once_and_frees_slots(
    start_gateway_in_process: InProcessStarter,
) -> None:
    slow_stream = Answer(tokens=10, token_s=0.3)
    with scripted_vllm(slow_stream) as vllm, _on(start_gateway_in_process, vllm, RAGFT_MAX_IN_FLIGHT="2") as gateway:
        with ThreadPoolExecutor(2) as pool:
            slow = [pool.submit(_chat, gateway, stream=True) for _ in range(2)]
            _wait_for(lambda: vllm.calls == 2)
            started = time.monotonic()
            refused = _chat(gateway)
            assert time.monotonic() - started < 1
            assert "limit of 2" in _error(refused, 503, "overloaded")
            assert int(refused.headers["retry-after"]) >= 1
            assert [future.result().status_code for future in slow] == [200, 200]
        vllm.default = Answer()
        assert _chat(gateway).status_code == 200
        assert metric(gateway, "ragft_gateway_chat_in_flight") == 0


def test_rate_limits_are_per_key_and_exact_under_concurrency(start_gateway_in_process: InProcessStarter) -> None:
    settings = {"RAGFT_API_KEYS": "key-a,key-b", "RAGFT_RATE_LIMIT_PER_MINUTE": "6", "RAGFT_RATE_LIMIT_BURST": "3"}
    with scripted_vllm() as vllm, _on(start_gateway_in_process, vllm, **settings) as gateway:

        def models(key: str) -> httpx.Response:
            return gateway.get("/v1/models", headers={"Authorization": f"Bearer {key}"})

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(models, ["key-a"] * 10))
        assert sorted(a.status_code for a in answers) == [200] * 3 + [429] * 7
        limited = next(a for a in answers if a.status_code == 429)
        assert "6 requests per minute" in _error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 10
        assert models("key-b").status_code == 200
        assert models("nope").status_code == 401
        assert "key-a" not in gateway.get("/metrics").text


def test_sigterm_drains_streams_in_flight_refuses_new_work_then_exits(processes: Processes, tmp_path: Path) -> None:
    with scripted_vllm(Answer(tokens=8, token_s=0.3)) as vllm:
        settings = {"RAGFT_GENERATION_URL": vllm.url, "RAGFT_DEFAULT_ADAPTER": "voice"}
        with (
            processes.gateway(tmp_path, None, **settings) as (url, process),
            httpx.Client(base_url=url, timeout=30) as gateway,
        ):
            with ThreadPoolExecutor(1) as pool:
                streaming = pool.submit(_chat, gateway, stream=True)
                _wait_for(lambda: vllm.calls == 1)
                process.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                assert _error(httpx.get(f"{url}/readyz"), 503, "not_ready") == "shutting down"
                assert httpx.get(f"{url}/healthz").status_code == 200
                refused = _chat(gateway)
                assert "shutting down" in _error(refused, 503, "shutting_down")
                events = sse_events(streaming.result())
            assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
            assert len([e for e in events[1:-1] if e["choices"] and e["choices"][0]["delta"].get("content")]) == 8
            assert process.wait(timeout=10) == 0
            assert vllm.calls == 1
