"""The experiment report against records whose every number is worked out here by hand."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from scipy.stats import ttest_ind

from evals.experiment import build_report
from evals.experiment_markdown import markdown
from evals.experiment_summary import summarize
from evals.stats import sample_size


def record(arm: str, user: str = "", score: float | None = None, outcome: str = "ok", **fields: Any) -> dict[str, Any]:
    return {
        "id": f"req-{arm}-{user}-{score}-{outcome}-{fields.get('latency_ms')}",
        "arm": arm,
        "user": user,
        "sticky": bool(user),
        "created": 1_764_900_000.0 + len(fields),
        "outcome": outcome,
        "latency_ms": None,
        "ttft_ms": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "score": score,
        "comment": None,
        **fields,
    }


def payload(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"experiment": {"name": "rag:50/hybrid:50", "arms": {"rag": 50, "hybrid": 50}}, "records": records}


RECORDS = [
    record("rag", "u1", 1, latency_ms=100, prompt_tokens=400, completion_tokens=30),
    record("rag", "u1", 1, latency_ms=200, prompt_tokens=500, completion_tokens=50),
    record("rag", "u2", -1, latency_ms=300, prompt_tokens=600, completion_tokens=40),
    record("rag", "", None, outcome="upstream_timeout", latency_ms=9000),
    record("hybrid", "u3", 1, latency_ms=50, ttft_ms=10, prompt_tokens=300, completion_tokens=20),
    record("hybrid", "u4", 1, latency_ms=150, ttft_ms=20, prompt_tokens=300, completion_tokens=20),
    record("hybrid", "u5", 0, outcome=""),
]


def test_each_arm_counts_its_traffic_feedback_latency_tokens_and_failures() -> None:
    rag, hybrid = summarize(payload(RECORDS)).arms
    assert (rag.arm, rag.requests, rag.users, rag.without_user, rag.feedback) == ("rag", 4, 2, 1, 3)
    assert rag.score_mean == pytest.approx(1 / 3)
    # Linear between the closest of 100, 200, 300: p95 sits at 1.9 of the 2 gaps. The timed-out request is left out.
    assert rag.latency_p50 == 200 and rag.latency_p95 == pytest.approx(290)
    assert (rag.prompt_tokens, rag.completion_tokens, rag.prompt_tokens_mean) == (1500, 120, 500)
    assert (rag.errors, rag.unfinished, rag.ttft_p50) == ((("upstream_timeout", 1),), 0, None)
    assert (hybrid.requests, hybrid.users, hybrid.feedback, hybrid.finished) == (3, 3, 3, 2)
    assert (hybrid.ttft_p50, hybrid.latency_p95, hybrid.unfinished, hybrid.error_count) == (15, 145, 1, 0)


def test_the_arms_are_compared_by_welch_and_sized_by_the_power_calculation() -> None:
    (comparison,) = summarize(payload(RECORDS), detect=0.5).comparisons
    assert (comparison.a, comparison.b, comparison.scores_a, comparison.scores_b) == ("rag", "hybrid", 3, 3)
    assert comparison.difference == pytest.approx(2 / 3 - 1 / 3)
    assert comparison.p_value == pytest.approx(ttest_ind([1, 1, 0], [1, 1, -1], equal_var=False).pvalue)
    # Pooled: variances 1/3 (hybrid) and 4/3 (rag), each on 2 degrees of freedom.
    assert comparison.power.sd == pytest.approx((5 / 6) ** 0.5) and comparison.power.sd_observed
    assert comparison.power.needed == sample_size((5 / 6) ** 0.5, 0.5)
    assert comparison.power.more_a == comparison.power.needed - 3


def test_the_markdown_shows_each_arm_and_says_how_much_more_feedback_it_takes() -> None:
    text = markdown(summarize(payload(RECORDS), detect=0.5))
    row = next(line for line in text.splitlines() if line.startswith("| rag |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:5] == ["rag", "4", "2", "1", "3/4 (75%, 30-95%)"]
    assert cells[5].startswith("0.33 (") and cells[6:8] == ["200", "290"]
    assert cells[-2:] == ["1", "0"]
    needed = sample_size((5 / 6) ** 0.5, 0.5)
    assert (
        f"each arm needs about {needed} feedbacks: rag needs {needed - 3} more, hybrid needs {needed - 3} more" in text
    )
    assert "rag: upstream_timeout 1; hybrid: none" in text
    assert "too few to tell the arms apart" in text


def test_an_arm_without_feedback_is_reported_as_undecidable_not_as_equal() -> None:
    text = markdown(summarize(payload([record("rag", "u1", 1), record("rag", "u2", 0), record("hybrid", "u3")])))
    assert "n/a: too few scores to compare (2 scores on rag, 0 on hybrid)" in text
    assert "With no feedback on hybrid yet, no difference can be detected." in text
    assert "SD 1.00 assumed" in text


def test_records_of_an_arm_the_experiment_lacks_or_a_score_out_of_range_are_refused() -> None:
    with pytest.raises(ValidationError, match="arms the experiment does not have: finetuned"):
        summarize(payload([record("finetuned")]))
    with pytest.raises(ValidationError):
        summarize(payload([record("rag", score=1.5)]))
    with pytest.raises(ValueError, match="difference to detect"):
        summarize(payload(RECORDS), detect=0)


def test_the_report_is_written_with_its_records_and_can_be_rebuilt_from_them(tmp_path: Path) -> None:
    report, picture = build_report(payload(RECORDS), tmp_path)
    first = report.read_text()
    assert picture.stat().st_size > 10_000 and picture.read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "records.json").read_text()) == payload(RECORDS)
    report.unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "evals.experiment", str(tmp_path)], capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert report.read_text() == first
