"""The `ragft` Typer app and what its command modules share; its edge, where every command's
errors end, is `Commands.invoke`."""

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ragft.errors import UserFacingError
from ragft.settings import settings_errors

console = Console(stderr=True)


class Commands(TyperGroup):
    """Every command runs inside `invoke`: ragft's own errors (`UserFacingError`, from any
    layer) end it with their message and status 1, and a `RAGFT_` setting that fails validation
    with one line per setting, never its value (it may be a key); never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # ctx: a Context of the click that typer vendors (typer._click)
        try:
            return super().invoke(ctx)
        except UserFacingError as exc:
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(1) from exc
        except ValidationError as exc:
            for line in settings_errors(exc):
                say(line)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=Commands, help="ragft: RAG, fine-tuned and hybrid answers, measured side by side.", no_args_is_help=True
)
serve_app = typer.Typer(help="Run one service in the foreground.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")

# Options that several commands take, declared once.
GatewayOption = Annotated[
    str | None, typer.Option(help="The gateway's URL (loopback only); default: RAGFT_GATEWAY_HOST and _PORT.")
]
RetrievalOption = Annotated[str | None, typer.Option(help="The retrieval service's URL; default: RAGFT_RETRIEVAL_URL.")]
AdapterHeaderOption = Annotated[str | None, typer.Option(help="X-Ragft-Adapter; default: the gateway's.")]
CollectionHeaderOption = Annotated[str | None, typer.Option(help="X-Ragft-Collection; default: the gateway's.")]
EvalSetOption = Annotated[Path, typer.Option(help="The eval set (JSONL; data/README.md has the format).")]
MaxTokensOption = Annotated[int, typer.Option(min=1, help="max_tokens of each answer.")]
SplitOption = Annotated[
    str, typer.Option(help="Comma-separated splits of the eval set: heldout, train, dev (for choosing thresholds).")
]
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
