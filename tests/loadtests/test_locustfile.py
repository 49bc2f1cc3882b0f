"""The locustfile in a real headless Locust run (run_step) against the fake gateway (a few
seconds), and the runner's refusal of anything but loopback. The run against the real stack is
another test's."""

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.report import build_report
from loadtests.run import parse_duration, run_step
from ragft.http import NotLoopback, check_loopback
from tests.loadtests.fake_gateway import start_fake_gateway


@pytest.fixture
def fake_gateway_answering_rag() -> Iterator[str]:
    """Every answer says `X-Ragft-Route: rag`, whatever was asked."""
    with start_fake_gateway(FAKE_GATEWAY_ROUTE="rag") as url:
        yield url


def test_a_short_mixed_run_measures_every_answer_and_checks_the_route(
    fake_gateway_answering_rag: str, tmp_path: Path
) -> None:
    weights = {"LOADTEST_WEIGHTS": "rag=1,finetuned=1", "LOADTEST_MAX_TOKENS": "8"}
    stats = run_step(fake_gateway_answering_rag, "mixed", 2, 3, tmp_path, stop_timeout_s=5, env=weights)

    assert stats == tmp_path / "users-2-mixed_stats.csv"
    with stats.open(newline="") as handle:
        entries = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    count = {key: int(row["Request Count"]) for key, row in entries.items()}
    failed = {key: int(row["Failure Count"]) for key, row in entries.items()}
    # rag: answered as asked, streamed and not, every answer measured.
    for key in (("POST", "rag"), ("POST", "rag stream")):
        assert count[key] > 5 and failed[key] == 0
    assert count[("TTFT", "rag")] == count[("TOKENS_PER_S", "rag")] == count[("POST", "rag stream")]
    assert (
        count[("RETRIEVE", "rag")]
        == count[("GENERATE", "rag")]
        == count[("POST", "rag")] + count[("POST", "rag stream")]
    )
    assert float(entries[("TOKENS_PER_S", "rag")]["Average Content Size"]) == 8  # tokens per answer: vLLM's usage
    answers = count[("POST", "rag")] + count[("POST", "rag stream")]
    assert count[("PROMPT_TOKENS", "rag")] == count[("COMPLETION_TOKENS", "rag")] == answers  # plain and streamed
    assert float(entries[("PROMPT_TOKENS", "rag")]["Average Response Time"]) == 40
    assert float(entries[("COMPLETION_TOKENS", "rag")]["Average Response Time"]) == 8
    # finetuned: the header says rag, so every request fails and measures nothing more.
    for key in (("POST", "finetuned"), ("POST", "finetuned stream")):
        assert count[key] > 5 and failed[key] == count[key]
    assert ("TTFT", "finetuned") not in entries and ("RETRIEVE", "finetuned") not in entries
    failures = (tmp_path / "users-2-mixed_failures.csv").read_text()
    assert "X-Ragft-Route is 'rag', not 'finetuned'" in failures

    report, _ = build_report(tmp_path)
    row = next(line for line in report.read_text().splitlines() if line.startswith("| 2 | rag (mixed) |"))
    assert row.split(" | ")[11:13] == ["40", "8"]  # prompt and completion tokens, mean


def test_an_auto_run_accepts_the_route_auto_chose(tmp_path: Path) -> None:
    with start_fake_gateway() as url:  # answers auto as hybrid
        stats = run_step(url, "auto", 1, 2, tmp_path, stop_timeout_s=5, env={"LOADTEST_MAX_TOKENS": "4"})
    with stats.open(newline="") as handle:
        entries = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    assert int(entries[("POST", "auto")]["Request Count"]) > 5
    assert int(entries[("POST", "auto")]["Failure Count"]) == 0 and ("RETRIEVE", "auto") in entries


def test_an_answer_cut_at_the_stop_timeout_is_not_recorded(tmp_path: Path) -> None:
    """Answers of 8 s (16 tokens, 0.5 s each), a 2 s run and 1 s to finish: every user is killed
    mid-answer, and nothing is recorded, neither as an answer (of 3 s) nor as a failure."""
    with start_fake_gateway(FAKE_GATEWAY_TOKEN_S="0.5") as url:
        stats = run_step(url, "rag", 2, 2, tmp_path, stop_timeout_s=1, env={"LOADTEST_MAX_TOKENS": "16"})
    with stats.open(newline="") as handle:
        assert [row["Name"] for row in csv.DictReader(handle)] == ["Aggregated"]


def test_the_runner_sends_load_to_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(NotLoopback, match="loopback only"):
        run_step("http://example.com:8000", "rag", 1, 1, tmp_path)
    check_loopback("http://localhost:8000")
    assert not list(tmp_path.iterdir())


def test_durations() -> None:
    assert [parse_duration(text) for text in ("30", "30s", "2m")] == [30, 30, 120]
    with pytest.raises(ValueError):
        parse_duration("0s")
