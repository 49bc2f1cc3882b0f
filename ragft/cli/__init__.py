"""The `ragft` command line: one Typer app, its commands grouped by service."""

from ragft.cli import evaluate, gateway, generation, loadtest, retrieval, stack
from ragft.cli.app import app

__all__ = ["app", "evaluate", "gateway", "generation", "loadtest", "retrieval", "stack"]
