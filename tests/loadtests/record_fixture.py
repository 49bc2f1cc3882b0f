"""Records the report's fixture (tests/loadtests/fixtures/fake-gateway-run/): real headless Locust runs
of loadtests/locustfile.py against the fake gateway (fake_gateway.py; every 25th request a 503),
kept as Locust wrote them (the _stats.csv and _failures.csv files). About 45 s:

    .venv/bin/python -m tests.loadtests.record_fixture

Runs: rag, finetuned and hybrid at 2 and 4 users, 4 s each, streaming every other request; and
MixedUser at 2 users (rag=2,finetuned=1, streaming only), so the report shows a mixed run and a
run whose latency comes from streamed answers. Recording again changes every number, so the
assertions in test_report.py must follow."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtests.run import run_step
from ragft.process import free_port, stop_process, wait_until_ready
from ragft.settings import REPO

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fake-gateway-run"


def main() -> None:
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    fake = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.loadtests.fake_gateway:app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        cwd=REPO, start_new_session=True, env={**os.environ, "FAKE_GATEWAY_FAIL_EVERY": "25"},
    )  # fmt: skip
    try:
        wait_until_ready(f"{host}/readyz", timeout=30, process=fake)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            for users in (2, 4):
                for route in ("rag", "finetuned", "hybrid"):
                    run_step(host, route, users, 4, out, stop_timeout_s=5)
            mixed = {"LOADTEST_WEIGHTS": "rag=2,finetuned=1", "LOADTEST_STREAM": "1"}
            run_step(host, "mixed", 2, 4, out, stop_timeout_s=5, env=mixed)
            shutil.rmtree(FIXTURE, ignore_errors=True)
            FIXTURE.mkdir(parents=True)
            for csv in [*out.glob("*_stats.csv"), *out.glob("*_failures.csv")]:
                shutil.copy(csv, FIXTURE / csv.name)
    finally:
        stop_process(fake, timeout=10, group=True)
    print(f"recorded {FIXTURE}")


if __name__ == "__main__":
    main()
