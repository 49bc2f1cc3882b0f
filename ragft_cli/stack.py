"""`ragft up`: the whole local stack under one supervisor (honcho)."""

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import GatewaySettings
from gateway.contract import Route
from ragft.sample_data import FINETUNE_SET, SAMPLE_COLLECTION
from ragft_cli.app import app, comma_separated, say
from ragft_cli.generation import ensure_base_model, ensure_default_adapter
from ragft_cli.retrieval import ensure_knowledge_base
from services.generation.config import GenerationSettings
from services.retrieval.config import RetrievalSettings

SERVICES = ("retrieval", "generation", "gateway")


@app.command()
def up(
    services: Annotated[str, typer.Option(help="Comma-separated: retrieval, generation, gateway.")] = ",".join(
        SERVICES
    ),
    collection: Annotated[
        str, typer.Option(envvar="RAGFT_COLLECTION", help="Collection to serve.")
    ] = SAMPLE_COLLECTION,
    kb: Annotated[
        Path | None,
        typer.Option(
            help="A folder of your documents, ingested into your collection when it is short of them. Default: the "
            f"sample knowledge base, into its own collection {SAMPLE_COLLECTION!r} only; nothing into yours."
        ),
    ] = None,
    adapter_data: Annotated[
        Path,
        typer.Option(help="Fine-tuning set of the default adapter: the shipped one if trained from it, else trained."),
    ] = FINETUNE_SET,
) -> None:
    """The local stack: set up what is missing (once), then run the services until Ctrl-C.

    Ingests the sample knowledge base into its own collection (or --kb into yours), prepares the
    base model and installs the default adapter (the shipped one, or trained from --adapter-data
    when that is not its data) when they are missing, then runs retrieval (:8001), generation
    (:8002) and the gateway (:8000) under honcho; Ctrl-C or SIGTERM stops them all.
    """
    chosen = comma_separated(services)
    if unknown := set(chosen) - set(SERVICES):
        raise typer.BadParameter(f"unknown service(s) {', '.join(sorted(unknown))}; choose from {', '.join(SERVICES)}")
    import honcho.manager  # here: the gateway image runs `ragft serve gateway` without honcho

    # honcho sends SIGKILL 5 s after SIGTERM by default; the generation launcher needs the time to
    # stop vLLM's process group itself (it escalates to SIGKILL after 30 s).
    honcho.manager.KILL_WAIT = 40
    retrieval, generation, gateway = RetrievalSettings(), GenerationSettings(), GatewaySettings()
    env = {**os.environ, "RAGFT_COLLECTION": collection}  # --collection, for the services too
    manager = honcho.manager.Manager()
    if "retrieval" in chosen:
        ensure_knowledge_base(collection, kb)
        manager.add_process("retrieval", _ragft("serve", "retrieval"), env=env)
    if "generation" in chosen:
        ensure_base_model(generation)
        ensure_default_adapter(generation, adapter_data)
        manager.add_process("generation", _ragft("serve", "generation"), env=env)
    if "gateway" in chosen:
        manager.add_process("gateway", _ragft("serve", "gateway"), env=env)
    _print_examples(chosen, retrieval, generation, gateway, collection)
    manager.loop()
    raise typer.Exit(manager.returncode or 0)


def _ragft(*args: str) -> str:
    return shlex.join([sys.executable, "-m", "ragft_cli", *args])


def _print_examples(
    chosen: list[str],
    retrieval: RetrievalSettings,
    generation: GenerationSettings,
    gateway: GatewaySettings,
    collection: str,
) -> None:
    if "retrieval" in chosen:
        url = f"http://{retrieval.retrieval_host}:{retrieval.retrieval_port}"
        say(
            f"Retrieval:  {url}\n  curl -s {url}/v1/collections/{collection}/search "
            "-H 'content-type: application/json' -d '{\"query\": \"How much does the Team plan cost?\"}'"
        )
    if "generation" in chosen:
        url = f"http://{generation.generation_host}:{generation.generation_port}"
        say(
            f"Generation: {url} (ready about 40 s after start on a CPU)\n  curl -s {url}/v1/chat/completions "
            f'-H \'content-type: application/json\' -d \'{{"model": "{generation.default_adapter}", '
            '"messages": [{"role": "user", "content": "How do I reset my password?"}]}\''
        )
    if "gateway" in chosen:
        url = f"http://{gateway.gateway_host}:{gateway.gateway_port}"
        auth = " -H 'Authorization: Bearer KEY'" if gateway.key_ring else ""
        say(f"Gateway:    {url}  (answers once generation is ready)")
        for route in Route:
            say(
                f"  curl -s {url}/v1/chat/completions{auth} -H 'X-Ragft-Route: {route}' "
                "-H 'content-type: application/json' "
                '-d \'{"messages": [{"role": "user", "content": "How much does the Team plan cost?"}]}\''
            )
    say("Ctrl-C stops everything.")
