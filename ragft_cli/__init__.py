"""The `ragft` command line: one Typer app, its commands grouped by service."""

from pydantic import ValidationError

from ragft.settings import settings_errors
from ragft_cli import evaluate, experiment, gateway, generation, loadtest, retrieval, stack
from ragft_cli.app import app, say

__all__ = ["app", "evaluate", "experiment", "gateway", "generation", "loadtest", "main", "retrieval", "stack"]


def main() -> None:
    """`ragft`. A `RAGFT_` setting that fails validation ends any command with one line per
    setting, never a traceback, and never the value (it may be a key)."""
    try:
        app(prog_name="ragft")
    except ValidationError as exc:
        for line in settings_errors(exc):
            say(line)
        raise SystemExit(1) from None
