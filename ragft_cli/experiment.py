"""`ragft experiment report`: an experiment's arms side by side, from the records the gateway
keeps of every answer and the feedback on it."""

import re
from pathlib import Path
from typing import Annotated

import httpx
import typer

from gateway.config import GatewaySettings
from ragft.http import sync_client
from ragft.settings import REPO
from ragft_cli.app import app, fail, say

experiment_app = typer.Typer(help="Live experiments between routes (RAGFT_EXPERIMENT).", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")


class ReportFailed(Exception):
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
    from evals.experiment import ExperimentRecords, build_report

    settings = GatewaySettings()
    url = (gateway or f"http://{settings.gateway_host}:{settings.gateway_port}").rstrip("/")
    key = settings.api_keys.get_secret_value().split(",")[0].strip()
    try:
        payload = ExperimentRecords.model_validate(_records(url, key, name))
    except ReportFailed as exc:
        fail(exc)
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
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise ReportFailed(f"the gateway answered {response.status_code}: {message}")
    return response.json()
