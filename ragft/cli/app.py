"""The `ragft` Typer app and what its command modules share."""

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="ragft: RAG, fine-tuned and hybrid answers, measured side by side.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

console = Console(stderr=True)
# Where `make run` finds the sample data: a checkout of the repository.


def say(message: str) -> None:
    """Plain text, never wrapped: vLLM's log lines are full of [brackets] that rich would read as
    markup, and a printed command must survive copy and paste."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def serve(factory: str, host: str, port: int) -> None:
    """A service's app factory (`module:create_app`) under uvicorn, logging through ragft's own
    setup, draining on SIGTERM."""
    from uvicorn.importer import import_from_string

    from ragft.web import run_service

    run_service(import_from_string(factory)(), host, port)


def fail(exc: Exception) -> NoReturn:
    """The package's own errors end the command with their message and status 1, no traceback."""
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1) from exc
