"""The `ragft` command line: one Typer app, its commands grouped by service."""

from ragft_cli import evaluate, experiment, gateway, generation, loadtest, retrieval, stack
from ragft_cli.app import app

__all__ = ["app", "evaluate", "experiment", "gateway", "generation", "loadtest", "main", "retrieval", "stack"]


def main() -> None:
    """`ragft`."""
    app(prog_name="ragft")
