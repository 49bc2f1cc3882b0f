"""Runs the load test against a gateway that is up: one headless Locust run per step and route
(a subprocess, bounded by `-t` and `--stop-timeout`, loopback only), then the report. Locust's
users read their options (loadtests/options.py) from the environment it runs in.

`run_step` is the unit a test can call on its own: one Locust run, its CSVs in a folder."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from loadtests.options import RUN_FILE, Options
from ragft.errors import UserFacingError
from ragft.http import check_loopback
from ragft.settings import REPO

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
RESULTS = Path(__file__).resolve().with_name("results")
# What each run is named after (its CSV files: users-<N>-<label>_stats.csv) and the class it runs.
USER_CLASSES = {
    "rag": "RagUser",
    "finetuned": "FinetunedUser",
    "hybrid": "HybridUser",
    "auto": "AutoUser",
    "mixed": "MixedUser",
}


class LoadTestFailed(UserFacingError):
    """Locust did not stop by itself, or exited with an error."""


def parse_duration(text: str) -> int:
    """`30`, `30s`, `2m` -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s*([sm]?)\s*", text)
    if not match or int(match[1]) == 0:
        raise ValueError(f"duration {text!r}: a positive number of seconds (30, 30s) or minutes (2m)")
    return int(match[1]) * (60 if match[2] == "m" else 1)


def locust_env(settings: Mapping[str, str] | None) -> dict[str, str]:
    """The environment Locust runs in: this process's, with the LOADTEST_* `settings` over it."""
    return {**os.environ, **(settings or {})}


def run_step(
    host: str,
    label: str,
    users: int,
    duration_s: int,
    out_dir: Path,
    *,
    stop_timeout_s: int = 30,
    env: Mapping[str, str] | None = None,
) -> Path:
    """One headless Locust run of `label`'s user class (a route, or "mixed") with `users` users,
    all started at once, for `duration_s`; users then get `stop_timeout_s` to finish the answer
    they are waiting for. Writes out_dir/users-<N>-<label>_{stats,failures,exceptions,stats_history}.csv
    and a .log, and returns the _stats.csv. `env` adds LOADTEST_* settings for the locustfile."""
    check_loopback(host)
    if label not in USER_CLASSES:
        raise ValueError(f"unknown run {label!r}; choose from {', '.join(USER_CLASSES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"users-{users}-{label}"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "-u", str(users), "-r", str(users), "-t", f"{duration_s}s", "--stop-timeout", str(stop_timeout_s),
        "--csv", str(prefix), "--only-summary", "--exit-code-on-error", "0", USER_CLASSES[label],
    ]  # fmt: skip
    log = prefix.with_name(prefix.name + ".log")
    with log.open("wb") as output:
        try:
            process = subprocess.run(
                command,
                cwd=REPO,  # the locustfile imports loadtests.options from the working directory
                env=locust_env(env),
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=duration_s + stop_timeout_s + 60,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LoadTestFailed(f"Locust did not stop by itself; its output: {log}") from None
    stats = prefix.with_name(prefix.name + "_stats.csv")
    if process.returncode != 0 or not stats.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LoadTestFailed(f"Locust exited with status {process.returncode} ({log}):\n{tail}")
    return stats


def run_load_test(
    gateway: str,
    *,
    labels: Iterable[str],
    steps: Iterable[int],
    duration_s: int,
    out_dir: Path,
    env: Mapping[str, str] | None = None,
    stop_timeout_s: int = 30,
    say: Callable[[str], None] = print,
) -> tuple[Path, Path]:
    """The whole load test; returns (report.md, report.png). Each step runs every label in turn, so
    the routes are compared under the same conditions. RUN_FILE records the questions, the
    collection and the adapter that every run's users read from `env`, for the report."""
    from loadtests.report import build_report  # matplotlib only when a report is made

    options = Options.from_env(locust_env(env))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_FILE).write_text(json.dumps(options.described(), indent=2) + "\n")
    gateway = gateway.rstrip("/")
    labels, steps = list(labels), sorted(set(steps))
    for users in steps:
        for label in labels:
            say(f"{label}: {users} user(s) for {duration_s} s")
            run_step(gateway, label, users, duration_s, out_dir, stop_timeout_s=stop_timeout_s, env=env)
    return build_report(out_dir)


def results_folder() -> Path:
    """loadtests/results/<timestamp>/, the default."""
    return RESULTS / datetime.now().strftime("%Y%m%d-%H%M%S")
