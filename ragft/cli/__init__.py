"""The `ragft` command line: one Typer app, its commands grouped by service."""

from ragft.cli import gateway, generation, loadtest, retrieval, stack
from ragft.cli.app import app

__all__ = ["app", "gateway", "generation", "loadtest", "retrieval", "stack"]
