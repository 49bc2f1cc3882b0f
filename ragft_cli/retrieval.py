"""Retrieval commands: `serve retrieval`, `ingest`, `finetune-retriever`, `reindex`, and `up`'s knowledge-base step."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer

from ragft.errors import UserFacingError
from ragft.progress import progress_bar
from ragft.sample_data import EVAL_SET, SAMPLE_COLLECTION, SAMPLE_KB
from ragft_cli.app import RetrievalOption, app, console, say, serve, serve_app

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
    from services.retrieval.ingest import load_documents

    return load_documents(paths)


def _ingest(
    documents: "list[DocumentIn]",
    collection: str,
    *,
    url: str | None = None,
    retrieval: "Retrieval | None" = None,
    batch_size: int = 64,
    allowed_domains: list[str] | None = None,
) -> None:
    """Through the service at `url`, or straight into `retrieval`'s store when given."""
    from services.retrieval.ingest import ingest_direct, ingest_http

    target = "the embedded store (direct)" if retrieval else url
    console.print(f"Ingesting {len(documents)} documents into {collection!r} through {target}")
    with progress_bar(console=console) as progress:
        task = progress.add_task("documents", total=len(documents))

        def advance(n: int) -> None:
            progress.advance(task, n)

        if retrieval:
            summary = ingest_direct(retrieval, collection, documents, batch_size, advance, allowed_domains)
        else:
            assert url is not None
            summary = ingest_http(url, collection, documents, batch_size, advance, allowed_domains)
    rate = summary.chunks / summary.seconds if summary.seconds else 0.0
    console.print(
        f"Ingested {summary.documents} documents ({summary.chunks} chunks) into {collection!r} "
        f"in {summary.seconds:.1f} s ({rate:.0f} chunks/s)"
    )
    if summary.flagged:
        console.print(
            f"[yellow]{len(summary.flagged)} held text addressed to the assistant, set aside as not evidence "
            f"(GET /v1/collections/{collection}/documents shows it): {', '.join(summary.flagged)}[/yellow]"
        )


def _open_retrieval() -> "Retrieval":
    from services.retrieval.config import RetrievalSettings
    from services.retrieval.runtime import Retrieval

    return Retrieval.open(RetrievalSettings())


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (.md .txt .html .pdf).")],
    collection: Annotated[
        str, typer.Option("--collection", "-c", envvar="RAGFT_COLLECTION", help="Target collection.")
    ] = SAMPLE_COLLECTION,
    url: Annotated[str | None, typer.Option(envvar="RAGFT_RETRIEVAL_URL", help="Retrieval service URL.")] = None,
    direct: Annotated[
        bool, typer.Option("--direct", help="Write to the embedded store in-process (service stopped).")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per request.")] = 64,
    allow_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-domain",
            help="A domain (with its subdomains) whose links and e-mail addresses answers may give; repeat it. "
            "Given, it replaces the collection's list; never given, answers may give any the documents hold.",
        ),
    ] = None,
) -> None:
    """Load documents into a collection, with a progress bar and a summary. The sample's collection,
    help-center, takes only the sample's articles: your documents go into a collection of yours.
    Text in a document addressed to the assistant rather than the customer is set aside, and named."""
    documents = _load(paths)
    domains = _domains(allow_domain) if allow_domain else None
    if collection == SAMPLE_COLLECTION:
        _check_sample_articles(documents)
    if not direct:
        from ragft.settings import RagftSettings

        url = url or RagftSettings().retrieval_url
        _ingest(documents, collection, url=url, batch_size=batch_size, allowed_domains=domains)
        return
    retrieval = _open_retrieval()
    try:
        _ingest(documents, collection, retrieval=retrieval, batch_size=batch_size, allowed_domains=domains)
    finally:
        retrieval.close()


class KnowledgeBaseRefused(UserFacingError):
    pass


def _domains(given: list[str]) -> list[str]:
    """The domains as the retrieval service keeps them, refused here, before anything is sent."""
    from pydantic import ValidationError

    from services.retrieval.schemas import CollectionCreate

    try:
        return CollectionCreate(allowed_domains=given).allowed_domains or []
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise typer.BadParameter(message, param_hint="--allow-domain") from None


def _check_sample_articles(documents: "list[DocumentIn]") -> None:
    """Refuses documents that are not the sample's articles (by id: a copy or an edit of one is
    still one) for the sample's own collection."""
    articles = {path.stem for path in SAMPLE_KB.iterdir()}
    if others := sorted(d.id for d in documents if d.id not in articles):
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise KnowledgeBaseRefused(
            f"{SAMPLE_COLLECTION!r} is the sample knowledge base's collection, and {shown} is not one of its "
            "articles: ingest your documents into a collection of your own (--collection NAME)"
        )


def ensure_knowledge_base(collection: str, kb: Path | None) -> None:
    """`ragft up`'s knowledge base. The sample goes only into its own collection (SAMPLE_COLLECTION),
    and a collection of yours gets only the folder you name; either is ingested when the collection
    holds fewer documents: the first run, or a first run that was interrupted (upserts make
    repeating it safe)."""
    sample = collection == SAMPLE_COLLECTION
    if kb is None and not sample:
        console.print(
            f"Collection {collection!r} is yours: ragft up ingests nothing into it. Add your documents with "
            f"`ragft ingest DIR --collection {collection}` (or `ragft up --kb DIR`)."
        )
        return
    kb = kb or SAMPLE_KB
    if sample != (kb.resolve() == SAMPLE_KB.resolve()):
        raise KnowledgeBaseRefused(
            f"{collection!r} is the sample knowledge base's collection: ingest {kb} into a collection of your own "
            "(RAGFT_COLLECTION=NAME)"
            if sample
            else f"the sample knowledge base ({SAMPLE_KB}) goes only into its own collection, {SAMPLE_COLLECTION!r}, "
            f"never into {collection!r}"
        )
    documents = _load([kb])
    retrieval = _open_retrieval()
    try:
        read = retrieval.store.resolve(collection)
        held = retrieval.store.count(read)[0] if read in retrieval.store.collections() else 0
        if held >= len(documents):
            console.print(f"Collection {collection!r} already holds {held} documents: not ingesting again.")
        else:
            _ingest(documents, collection, retrieval=retrieval)
    finally:
        retrieval.close()


@app.command("finetune-retriever")
def finetune_retriever(
    out: Annotated[Path, typer.Option(help="The model folder to write (must not exist).")],
    collection: Annotated[
        str | None, typer.Option(help="The collection to train on; default: RAGFT_COLLECTION.")
    ] = None,
    data: Annotated[
        Path, typer.Option(help="The eval set: its train split trains, its held-out split measures.")
    ] = EVAL_SET,
    base: Annotated[
        str | None, typer.Option(help="The model to start from; default: RAGFT_EMBEDDING_MODEL (all-MiniLM-L6-v2).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=100)] = 3,
    batch_size: Annotated[int, typer.Option(min=2, max=1024, help="Pairs per batch: each one's negatives.")] = 32,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many steps (a quick try), before the epochs end.")
    ] = None,
    retrieval: RetrievalOption = None,
) -> None:
    """Train the embedding model on (question, passage) pairs from a collection.

    Pairs: the eval set's train-split questions with the chunk that states their facts, and each
    chunk that opens with a section heading with "<title>: <heading>"; never a held-out question. The loss
    is MultipleNegativesRankingLoss. Writes the model folder with ragft.json (pairs, steps, loss,
    and the dense hit rate on the held-out questions before and after). Put it to work with
    `ragft reindex --model OUT`.
    """
    from evals.dataset import load_questions
    from ragft.process import sigterm_as_exit
    from services.retrieval.config import RetrievalSettings
    from services.retrieval.embedding import default_model_path
    from training.retriever import (
        RetrieverError,
        RetrieverOptions,
        check_out,
        collection_passages,
        hit_rates,
        train_retriever,
        training_pairs,
    )

    settings = RetrievalSettings()
    name = collection or settings.collection
    start = base or settings.embedding_model or default_model_path()
    try:
        import datasets  # noqa: F401  # training needs it: say so before any work
    except ImportError:
        raise RetrieverError(
            "retriever training needs the train extra: `make install` (its default EXTRAS include it), or pip install "
            "-c constraints.txt -e '.[train]'"
        ) from None
    check_out(out)
    passages = collection_passages(retrieval or settings.retrieval_url, name)
    questions = load_questions(data)
    train = [q for q in questions if q.split == "train"]
    heldout = [q for q in questions if q.split == "heldout"]
    pairs = training_pairs(train, heldout, passages)
    stored = {passage.doc_id for passage in passages}
    measured = [q for q in heldout if q.doc_id in stored]  # held-out questions this collection answers
    say(f"{len(pairs)} pairs from {len(passages)} chunks of {name!r}; {len(measured)} held-out questions to measure")
    with sigterm_as_exit():
        record = train_retriever(
            start,
            pairs,
            out,
            RetrieverOptions(epochs=epochs, batch_size=batch_size, max_steps=max_steps),
            {"collection": name, "data": str(data), "heldout_questions": len(measured)},
            (lambda embedder: hit_rates(embedder, passages, measured)) if measured else None,
            say=say,
        )
    rates = record["heldout_dense_hit_rate"]
    if rates["before"] and rates["after"]:
        changes = ", ".join(f"{k} {rates['before'][k]} -> {rates['after'][k]}" for k in rates["before"])
        say(f"Held-out dense hit rate, before -> after: {changes}")


@app.command()
def reindex(
    model: Annotated[
        Path, typer.Option(help="The embedding model folder (from finetune-retriever), as the service's host sees it.")
    ],
    collection: Annotated[str | None, typer.Option(help="The name clients read; default: RAGFT_COLLECTION.")] = None,
    into: Annotated[
        str | None, typer.Option(help="The new collection; default: <collection>-<model folder name>.")
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Rebuild --into when it exists.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=256, help="Documents per request.")] = 64,
    retrieval: RetrievalOption = None,
) -> None:
    """Re-embed a collection with another model into a new collection, then switch its name over.

    The name becomes an alias of the new collection in one step, so a search reads the old
    collection or the complete new one, never a half-built index. The old collection is kept:
    DELETE /v1/collections/<old> removes it, DELETE /v1/aliases/<name> switches back.
    """
    from ragft.http import sync_client
    from services.retrieval.config import RetrievalSettings
    from services.retrieval.reindex import ReindexError, default_target
    from services.retrieval.reindex import reindex as run_reindex

    settings = RetrievalSettings()
    name = collection or settings.collection
    # The service loads the folder: an absolute path when it is here too, else as given (a remote host's path).
    folder = model.expanduser().resolve() if model.expanduser().exists() else model
    target = into or default_target(name, folder)
    progress = progress_bar(console=console)
    task = progress.add_task("documents", total=None)
    try:
        with sync_client(retrieval or settings.retrieval_url, timeout=600) as client, progress:
            done = run_reindex(
                client,
                name,
                folder,
                target,
                replace=replace,
                batch_size=batch_size,
                on_total=lambda total: progress.update(task, total=total),
                on_documents=lambda n: progress.advance(task, n),
            )
    except httpx.HTTPError as exc:  # the client this command opened: the service did not answer
        raise ReindexError(str(exc)) from exc
    say(
        f"{done.name!r} now reads {done.target!r}: {done.documents} documents, {done.chunks} chunks "
        f"embedded by {folder} in {done.seconds:.1f} s"
    )
    say(
        f"The previous collection {done.source!r} is kept: DELETE /v1/collections/{done.source} removes it; "
        f"DELETE /v1/aliases/{done.name} switches back."
    )
