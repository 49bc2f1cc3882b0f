"""The report builder on a recorded fixture: Locust's own CSV files from real headless runs of
loadtests/locustfile.py against the fake gateway (see record_fixture.py; nothing hand-edited)."""

import json
import shutil
import struct
from pathlib import Path

import pytest

from loadtests.report import build_report, route_rows
from loadtests.run import run_load_test
from ragft.sample_data import EVAL_SET

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fake-gateway-run"
PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


@pytest.fixture
def results(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "20260101-120000")
    return tmp_path / "20260101-120000"


def test_report_table_has_the_recorded_numbers_per_route_and_step(results: Path) -> None:
    report, picture = build_report(results)

    text = report.read_text()
    assert report == results / "report.md"
    assert text.startswith("# Load test: 20260101-120000\n")
    assert "Question set, collection and adapter: not recorded (no run.json in this folder)." in text
    assert "Users per run: 2, 4." in text
    # users | route | requests | failures | req/s | p50 | p95 | p99 | TTFT p50 | TTFT p95 | tok/s | prompt tokens
    # | completion tokens | retrieve | generate
    # users-2-rag_stats.csv: POST rag 94 requests + POST rag stream 93, 4 + 3 failures, 24.51 + 24.25 req/s;
    # p50/p95/p99 of POST rag; TTFT rag; TOKENS_PER_S rag; RETRIEVE rag; GENERATE rag. The fixture was
    # recorded before the locustfile counted tokens: those columns say n/a (test_locustfile has them).
    assert "| 2 | rag | 187 | 7 | 48.76 | 39 | 43 | 49 | 8 | 12 | 410 | n/a | n/a | 4 | 34 |" in text
    assert "| 4 | finetuned | 435 | 17 | 112.17 | 34 | 38 | 41 | 3 | 7 | 460 | n/a | n/a | 0 | 33 |" in text
    assert "| 4 | hybrid | 382 | 16 | 98.00 | 39 | 44 | 50 | 8 | 11 | 440 | n/a | n/a | 4 | 33 |" in text
    # The mixed run streamed only: its latency is that of the streamed answers, marked *.
    assert "| 2 | rag (mixed)* | 133 | 4 | 34.57 | 41 | 49 | 55 | 8 | 11 | 460 | n/a | n/a | 4 | 35 |" in text
    assert "| 2 | finetuned (mixed)* | 61 | 3 | 15.85 | 36 | 47 | 54 | 3 | 7 | 470 | n/a | n/a | 0 | 35 |" in text
    # Rows by step, then rag, finetuned, hybrid.
    order = [
        line.split(" | ")[1] for line in text.splitlines() if line.startswith("| 2 | ") or line.startswith("| 4 |")
    ]
    assert order == [
        *("rag", "rag (mixed)*", "finetuned", "finetuned (mixed)*", "hybrid"),
        *("rag", "finetuned", "hybrid"),
    ]
    # Locust's failure reports, per run.
    assert "## Failures" in text
    error = "AnswerFailed('HTTP 503: upstream_unavailable: the generation service is not ready')"
    assert f"| users-4-rag | rag stream | {error} | 9 |" in text

    assert picture == results / "report.png"
    assert picture.stat().st_size > 20_000
    assert _png_size(picture) == (1800, 450)  # three panels: percentiles, stage split, p95 against throughput


def test_stage_split_uses_the_exact_means(results: Path) -> None:
    rows = {(row.users, row.route): row for row in route_rows(results)}
    rag = rows[(2, "rag")]
    assert rag.retrieve is not None and rag.generate is not None
    assert rag.retrieve.average == pytest.approx(4.3047, abs=1e-3)
    assert rag.generate.average == pytest.approx(35.8285, abs=1e-3)
    finetuned = rows[(2, "finetuned")]
    assert finetuned.retrieve is not None and finetuned.retrieve.average == 0  # no retrieval on that route


def test_one_step_without_streams(results: Path, tmp_path: Path) -> None:
    """One run that sent no streams: no TTFT, no tokens/s, and no throughput panel."""
    single = tmp_path / "single"
    single.mkdir()
    kept = [
        line
        for line in (results / "users-2-rag_stats.csv").read_text().splitlines()
        if not line.startswith(("TTFT,", "TOKENS_PER_S,", "POST,rag stream,"))
    ]
    (single / "users-2-rag_stats.csv").write_text("\n".join(kept) + "\n")

    report, picture = build_report(single)

    assert "| 2 | rag | 94 | 4 | 24.51 | 39 | 43 | 49 | n/a | n/a | n/a | n/a | n/a | 4 | 34 |" in report.read_text()
    assert "## Failures" not in report.read_text()
    assert _png_size(picture) == (1200, 450)


def test_a_folder_without_results_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Locust results"):
        build_report(tmp_path)


def test_a_run_in_which_no_answer_completed_is_named_not_dropped(results: Path) -> None:
    header = (FIXTURE / "users-2-rag_stats.csv").read_text().splitlines()[0]
    aggregated = ",Aggregated,0,0,0,0,0,0,0,0,0" + ",N/A" * (header.count(",") - 10)
    (results / "users-64-hybrid_stats.csv").write_text(f"{header}\n{aggregated}\n")
    report, _ = build_report(results)
    assert "these steps have no row: users-64-hybrid." in report.read_text()


def test_the_report_names_the_question_set_the_collection_and_the_adapter(results: Path, tmp_path: Path) -> None:
    """The runner records what its users read (run.json); here it runs no step, and the report is
    built from the fixture's CSV files."""
    own = Path(shutil.copy(EVAL_SET, tmp_path / "own.jsonl"))
    questions = len(own.read_text().splitlines())
    settings = {"LOADTEST_QUESTIONS": str(own), "LOADTEST_COLLECTION": "my-kb", "LOADTEST_ADAPTER": ""}
    report, _ = run_load_test(
        "http://127.0.0.1:8000", labels=[], steps=[], duration_s=1, out_dir=results, env=settings, say=print
    )
    assert json.loads((results / "run.json").read_text()) == {
        "data": str(own),
        "questions": questions,
        "collection": "my-kb",
        "adapter": None,
    }
    lines = report.read_text().splitlines()
    assert lines[2] == f"Questions from `{own}` ({questions:,}); collection `my-kb`; adapter the gateway's default."
