"""Gateway commands: `serve gateway`."""

from typing import Annotated

import typer

from ragft_cli.app import serve, serve_app


@serve_app.command("gateway")
def serve_gateway(
    host: Annotated[str, typer.Option(envvar="RAGFT_GATEWAY_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RAGFT_GATEWAY_PORT", help="Port to listen on.")] = 8000,
) -> None:
    """The OpenAI-compatible gateway on :8000: rag, finetuned, hybrid or auto by X-Ragft-Route."""
    serve("gateway.app:create_app", host, port)
