"""`ragft loadtest`: Locust against the gateway, one route at a time, then a report."""

from pathlib import Path
from typing import Annotated

import typer

from gateway.config import GatewaySettings
from ragft.process import sigterm_as_exit
from ragft.sample_data import EVAL_SET
from ragft_cli.app import (
    AdapterHeaderOption,
    CollectionHeaderOption,
    EvalSetOption,
    GatewayOption,
    StartupTimeoutOption,
    app,
    comma_separated,
    say,
)
from ragft_cli.evaluate import gateway_and_key
from ragft_cli.localstack import gateway_up

STEP_USERS = "1,4,16,64"


def _users(text: str) -> list[int]:
    try:
        users = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: comma-separated numbers of users, e.g. 4 or 1,4,16,64") from None
    if not users or min(users) < 1:
        raise typer.BadParameter(f"{text!r}: at least one step, each of 1 user or more")
    return users


@app.command()
def loadtest(
    users: Annotated[str, typer.Option(help="Users per run, comma-separated: one step (4) or several (1,4,16).")] = "4",
    step: Annotated[bool, typer.Option("--step", help=f"The step mode: users {STEP_USERS}.")] = False,
    duration: Annotated[str, typer.Option(help="How long each step runs, per route: 30, 30s, 2m.")] = "30s",
    routes: Annotated[
        str, typer.Option(help="Comma-separated runs: rag, finetuned, hybrid, auto, and mixed (routes by --weights).")
    ] = "rag,finetuned,hybrid",
    weights: Annotated[str, typer.Option(help="The mixed run's share of each route.")] = "rag=1,finetuned=1,hybrid=1",
    stream: Annotated[str, typer.Option(help="Streamed requests: mixed (every other one), 1 (all) or 0 (none).")] = (
        "mixed"
    ),
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of each request.")] = 64,
    data: EvalSetOption = EVAL_SET,
    collection: CollectionHeaderOption = None,
    adapter: AdapterHeaderOption = None,
    gateway: GatewayOption = None,
    out: Annotated[Path | None, typer.Option(help="Results folder; default: loadtests/results/<timestamp>/.")] = None,
    startup_timeout: StartupTimeoutOption = 1200,
    stop_timeout: Annotated[int, typer.Option(help="Seconds a run's users get to finish their last answer.")] = 30,
) -> None:
    """Load-test the gateway with Locust, headless: every route (--routes) at every step (--users),
    for --duration each, then report.md and report.png in the results folder. The users ask the
    questions of --data, in --collection, with --adapter; the report names all three.

    Uses the gateway when it answers; otherwise runs `ragft up` while the test runs, and stops it.
    """
    # Imported here: the loadtests package lives in the checkout beside ragft, and only this command needs it.
    from evals.dataset import load_questions
    from loadtests.options import STREAM_MODES, check_collection, parse_weights
    from loadtests.run import USER_CLASSES, parse_duration, results_folder, run_load_test

    labels = comma_separated(routes)
    if not labels or not set(labels) <= set(USER_CLASSES):
        raise typer.BadParameter(f"--routes {routes!r}: choose from {', '.join(USER_CLASSES)}")
    if stream not in STREAM_MODES:
        raise typer.BadParameter(f"--stream {stream!r}: choose from {', '.join(STREAM_MODES)}")
    try:
        seconds = parse_duration(duration)
        parse_weights(weights)
        if collection is not None:
            check_collection(collection, "--collection")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    load_questions(data)  # a bad eval set is refused before the stack starts, naming its line
    url, api_key = gateway_and_key(GatewaySettings(), gateway, collection)
    # Set even when empty: a LOADTEST_* of the calling shell must not override an option.
    env = {
        "LOADTEST_QUESTIONS": str(data.resolve()),  # Locust runs in the checkout, not this directory
        "LOADTEST_COLLECTION": collection or "",
        "LOADTEST_ADAPTER": adapter or "",
        "LOADTEST_WEIGHTS": weights,
        "LOADTEST_STREAM": stream,
        "LOADTEST_MAX_TOKENS": str(max_tokens),
        "LOADTEST_API_KEY": api_key,
    }
    chosen_steps = _users(STEP_USERS if step else users)
    out = out or results_folder()
    out.mkdir(parents=True, exist_ok=True)
    with sigterm_as_exit(), gateway_up(url, timeout_s=startup_timeout, log=out / "stack.log", say=say):
        report, chart = run_load_test(
            url,
            labels=labels,
            steps=chosen_steps,
            duration_s=seconds,
            out_dir=out,
            env=env,
            stop_timeout_s=stop_timeout,
            say=say,
        )
    say(f"Report: {report}\nChart:  {chart}")
