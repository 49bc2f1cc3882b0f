"""The `ragft` Typer app and what its command modules share."""

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(help="ragft: RAG, fine-tuned and hybrid answers, measured side by side.", no_args_is_help=True)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

console = Console(stderr=True)

# Options that several commands take, declared once.
GatewayOption = Annotated[
    str | None, typer.Option(help="The gateway's URL (loopback only); default: RAGFT_GATEWAY_HOST and _PORT.")
]
RetrievalOption = Annotated[str | None, typer.Option(help="The retrieval service's URL; default: RAGFT_RETRIEVAL_URL.")]
AdapterHeaderOption = Annotated[str | None, typer.Option(help="X-Ragft-Adapter; default: the gateway's.")]
MaxTokensOption = Annotated[int, typer.Option(min=1, help="max_tokens of each answer.")]
SplitOption = Annotated[str, typer.Option(help="Comma-separated splits of the eval set: heldout, train.")]
StartupTimeoutOption = Annotated[
    float, typer.Option(help="Seconds to wait for a stack this command starts (the first run sets it up).")
]


def comma_separated(text: str) -> list[str]:
    """An option's comma-separated values, stripped, the empty ones left out."""
    return [part.strip() for part in text.split(",") if part.strip()]


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
