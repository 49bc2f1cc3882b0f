"""Retrieval commands: `serve retrieval`, `ingest`, and the knowledge-base step of `up`."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ragft.cli.app import app, console, fail, serve, serve_app

if TYPE_CHECKING:
    from services.retrieval.runtime import Retrieval
    from services.retrieval.schemas import DocumentIn


@serve_app.command("retrieval")
def serve_retrieval(
    host: Annotated[str, typer.Option(envvar="RAGFT_RETRIEVAL_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="RAGFT_RETRIEVAL_PORT", help="Port to listen on.")] = 8001,
) -> None:
    """The retrieval service (embeddings + Qdrant) on :8001."""
    serve("services.retrieval.app:create_app", host, port)


def _load(paths: list[Path]) -> "list[DocumentIn]":
    """Every file is read before anything is written, so one bad file stops the run early."""
    from services.retrieval.ingest import IngestError, load_documents
    from services.retrieval.loaders import UnreadableFile

    try:
        return load_documents(paths)
    except (UnreadableFile, IngestError) as exc:
        fail(exc)


def _ingest(
    documents: "list[DocumentIn]",
    collection: str,
    *,
    url: str | None = None,
    retrieval: "Retrieval | None" = None,
    batch_size: int = 64,
) -> None:
    """Through the service at `url`, or straight into `retrieval`'s store when given."""
    from services.retrieval.ingest import IngestError, ingest_direct, ingest_http

    target = "the embedded store (direct)" if retrieval else url
    console.print(f"Ingesting {len(documents)} documents into {collection!r} through {target}")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    try:
        with progress:
            task = progress.add_task("documents", total=len(documents))

            def advance(n: int) -> None:
                progress.advance(task, n)

            if retrieval:
                summary = ingest_direct(retrieval, collection, documents, batch_size, advance)
            else:
                assert url is not None
                summary = ingest_http(url, collection, documents, batch_size, advance)
    except IngestError as exc:
        fail(exc)
    rate = summary.chunks / summary.seconds if summary.seconds else 0.0
    console.print(
        f"Ingested {summary.documents} documents ({summary.chunks} chunks) into {collection!r} "
        f"in {summary.seconds:.1f} s ({rate:.0f} chunks/s)"
    )


def _open_retrieval() -> "Retrieval":
    from services.retrieval.config import RetrievalSettings
    from services.retrieval.runtime import Retrieval
    from services.retrieval.store.edge import StoreLocked

    try:
        return Retrieval.open(RetrievalSettings())
    except StoreLocked as exc:
        fail(exc)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.md .txt .html .pdf).")],
    collection: Annotated[
        str, typer.Option("--collection", "-c", envvar="RAGFT_COLLECTION", help="Target collection.")
    ] = "help-center",
    url: Annotated[str | None, typer.Option(envvar="RAGFT_RETRIEVAL_URL", help="Retrieval service URL.")] = None,
    direct: Annotated[
        bool, typer.Option("--direct", help="Write to the embedded store in-process (service stopped).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per request.")] = 64,
) -> None:
    """Load documents into a collection, with a progress bar and a summary."""
    if not direct:
        from ragft.settings import RagftSettings

        _ingest(_load(paths), collection, url=url or RagftSettings().retrieval_url, batch_size=batch_size)
        return
    documents = _load(paths)
    retrieval = _open_retrieval()
    try:
        _ingest(documents, collection, retrieval=retrieval, batch_size=batch_size)
    finally:
        retrieval.close()


def ensure_knowledge_base(collection: str, kb: Path) -> None:
    """Ingest `kb` when the collection holds fewer documents: the first run, or a first run
    that was interrupted (upserts make repeating it safe)."""
    documents = _load([kb])
    retrieval = _open_retrieval()
    try:
        held = retrieval.store.count(collection)[0] if collection in retrieval.store.collections() else 0
        if held >= len(documents):
            console.print(f"Collection {collection!r} already holds {held} documents: not ingesting again.")
        else:
            _ingest(documents, collection, retrieval=retrieval)
    finally:
        retrieval.close()
