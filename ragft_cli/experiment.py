"""`ragft experiment report`: an experiment's arms side by side, from the records the gateway
keeps of every answer and the feedback on it; `ragft experiment simulate`: users from the eval
set, to try an experiment before real traffic."""

import re
from pathlib import Path
from typing import Annotated

import httpx
import typer

from gateway.config import GatewaySettings
from ragft.errors import UserFacingError, error_message
from ragft.http import sync_client
from ragft.process import sigterm_as_exit
from ragft.sample_data import EVAL_SET
from ragft.settings import REPO
from ragft_cli.app import (
    GatewayOption,
    MaxTokensOption,
    SplitOption,
    StartupTimeoutOption,
    app,
    comma_separated,
    say,
)
from ragft_cli.evaluate import gateway_and_key
from ragft_cli.localstack import gateway_up

experiment_app = typer.Typer(help="Live experiments between routes (RAGFT_EXPERIMENT).", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


class ReportFailed(UserFacingError):
    pass


@experiment_app.command("report")
def report(
    gateway: Annotated[
        str | None, typer.Option(help="The gateway's URL; default: RAGFT_GATEWAY_HOST and _PORT.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="An earlier experiment, as rag:50/hybrid:50; default: the running one.")
    ] = None,
    detect: Annotated[
        float, typer.Option(min=0.01, max=2, help="The difference in mean score to size the sample for.")
    ] = 0.2,
    out: Annotated[
        Path | None, typer.Option(help="The report's folder; default: evals/results/experiment-<name>/.")
    ] = None,
) -> None:
    """Per arm: requests and users, the feedback rate and mean score with their 95% intervals,
    latency and time to first token, tokens and errors; each pair of arms compared (the
    difference in mean score, its interval and p-value); and how many more feedbacks it takes
    to detect a difference of --detect. Writes report.md, report.png and records.json. Reads
    GET /v1/ragft/experiment with the first key of RAGFT_API_KEYS (a key with every right)."""
    # Imported here: only this command needs the evals package (and matplotlib, for its chart).
    from evals.experiment import build_report
    from gateway.contract import ExperimentRecords

    settings = GatewaySettings()
    url = (gateway or f"http://{settings.gateway_host}:{settings.gateway_port}").rstrip("/")
    key = settings.api_keys.get_secret_value().split(",")[0].strip()
    payload = ExperimentRecords.model_validate(_records(url, key, name))
    folder = out or REPO / "evals" / "results" / f"experiment-{re.sub(r'[^a-z0-9]+', '-', payload.experiment.name)}"
    report_md, chart = build_report(payload, folder, detect=detect)
    say(report_md.read_text())
    say(f"Report: {report_md}\nChart:  {chart}")


def _records(url: str, key: str, name: str | None) -> object:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with sync_client(url, timeout=60) as client:
            response = client.get("/v1/ragft/experiment", params={"name": name} if name else {}, headers=headers)
    except httpx.HTTPError as exc:
        raise ReportFailed(f"the gateway at {url} does not answer: {exc}") from None
    if response.status_code != 200:
        message = error_message(response.content) or response.text[:300]
        raise ReportFailed(f"the gateway answered {response.status_code}: {message}")
    return response.json()


@experiment_app.command("simulate")
def simulate(
    users: Annotated[int, typer.Option(min=1, help="Simulated users, each sticky to its arm.")] = 12,
    questions: Annotated[int, typer.Option(min=1, help="Questions each user asks.")] = 3,
    data: Annotated[Path, typer.Option(help="The eval set whose answerable questions the users ask.")] = EVAL_SET,
    split: SplitOption = "heldout",
    max_tokens: MaxTokensOption = 64,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests at once.")] = 4,
    gateway: GatewayOption = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 300,
    startup_timeout: StartupTimeoutOption = 1200,
) -> None:
    """Users from the eval set go through the running experiment: each asks its questions with
    X-Ragft-Route: experiment (the gateway assigns the arm), then posts the scorer's feedback: up
    when the answer states the question's facts, down when not. The scorer stands in for people: it tries
    the experiment's whole path, and its report measures fact accuracy, not what users think.
    Uses the gateway when it answers; otherwise runs `ragft up` meanwhile (with RAGFT_EXPERIMENT
    and RAGFT_STORE_URL set, and the store running). Then: `ragft experiment report`."""
    from evals.dataset import load_questions
    from evals.simulate import simulate_users, summary, visits

    url, api_key = gateway_and_key(GatewaySettings(), gateway, None)
    planned = visits(load_questions(data, comma_separated(split)), users, questions)
    say(f"{users} users x {questions} questions through the experiment at {url}")
    log = REPO / "var" / "experiment-simulate-stack.log"
    with sigterm_as_exit(), gateway_up(url, timeout_s=startup_timeout, log=log, say=say):
        outcomes = simulate_users(
            url, planned, api_key=api_key, max_tokens=max_tokens, concurrency=concurrency, timeout_s=timeout
        )
    say(summary(outcomes))
    if any(outcome.error for outcome in outcomes):
        raise typer.Exit(1)
