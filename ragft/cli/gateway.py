"""Gateway commands: `serve gateway`."""

from typing import Annotated

import typer
import uvicorn

from ragft.cli.app import serve_app


@serve_app.command("gateway")
def serve_gateway(
    host: Annotated[str, typer.Option(envvar="RAGFT_GATEWAY_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RAGFT_GATEWAY_PORT", help="Port to listen on.")] = 8000,
) -> None:
    """The OpenAI-compatible gateway on :8000: rag, finetuned or hybrid by X-Ragft-Route."""
    uvicorn.run("services.gateway.app:create_app", factory=True, host=host, port=port, log_config=None)
