"""A few seconds of headless Locust against the real stack (the session's gateway, retrieval
service and vLLM): every route answers with no failure, and the report has each route's row."""

from pathlib import Path

from loadtests.report import build_report, route_rows
from loadtests.run import run_step


def test_a_short_locust_run_per_route_reaches_the_report(gateway_url: str, tmp_path: Path) -> None:
    settings = {"LOADTEST_STREAM": "mixed", "LOADTEST_MAX_TOKENS": "8"}
    for route in ("rag", "finetuned", "hybrid"):
        # A hybrid answer took over 30 s on a slow day here (the adapter's prefill of a long prompt).
        run_step(gateway_url, route, users=1, duration_s=8, out_dir=tmp_path, stop_timeout_s=120, env=settings)
    rows = {row.route: row for row in route_rows(tmp_path)}
    assert set(rows) == {"rag", "finetuned", "hybrid"}
    for route, row in rows.items():
        assert row.requests >= 1, route
        assert row.failures == 0, route
        assert row.generate is not None and row.generate.requests >= 1, route
    assert rows["rag"].retrieve is not None and rows["rag"].retrieve.average > 0
    report, chart = build_report(tmp_path)
    table = report.read_text()
    for route, row in rows.items():
        assert f"| 1 | {route} | {row.requests:,} | 0 |" in table
    assert "## Failures" not in table
    assert chart.read_bytes().startswith(b"\x89PNG")
