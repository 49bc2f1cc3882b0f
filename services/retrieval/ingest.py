"""Client-side ingestion for `ragft ingest`: files to documents, sent in batches to the
retrieval service over HTTP, or written to the embedded store directly."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ragft.errors import UserFacingError
from ragft.http import sync_client
from services.retrieval.client import RetrievalCallFailed, checked
from services.retrieval.loaders import find_files, load_document
from services.retrieval.schemas import DocumentIn, UpsertResponse

if TYPE_CHECKING:  # the embedder's imports take seconds; ingest over HTTP never needs them
    from services.retrieval.runtime import Retrieval

# Keeps each request body well under a few MB however large the files are.
BATCH_CHARS = 1_000_000
RETRIES = 3


class IngestError(UserFacingError):
    pass


@dataclass(frozen=True)
class IngestSummary:
    documents: int
    chunks: int
    seconds: float
    flagged: list[str]  # the documents that had text addressed to the assistant set aside


def load_documents(paths: list[Path]) -> list[DocumentIn]:
    """Reads every file before anything is written, so one bad file stops the run early."""
    documents: list[DocumentIn] = []
    sources: dict[str, Path] = {}
    for file, root in find_files(paths):
        document = load_document(file, root)
        if document.id in sources:
            raise IngestError(
                f"{sources[document.id]} and {file} would both be document {document.id!r}; "
                "rename one or ingest them separately"
            )
        sources[document.id] = file
        documents.append(document)
    if not documents:
        raise IngestError(f"no supported files under {', '.join(map(str, paths))}")
    return documents


def batches(documents: list[DocumentIn], max_documents: int) -> Iterator[list[DocumentIn]]:
    batch: list[DocumentIn] = []
    chars = 0
    for doc in documents:
        if batch and (len(batch) >= max_documents or chars + len(doc.text) > BATCH_CHARS):
            yield batch
            batch, chars = [], 0
        batch.append(doc)
        chars += len(doc.text)
    if batch:
        yield batch


def _post_with_retry(client: httpx.Client, url: str, body: dict[str, Any]) -> httpx.Response:
    """Upserts are idempotent, so a batch that met a 503 or a dropped connection is resent."""
    for attempt in range(1, RETRIES + 1):
        try:
            response = client.post(url, json=body)
        except httpx.TransportError as exc:
            if attempt == RETRIES:
                raise IngestError(f"retrieval service unreachable at {client.base_url}: {exc}") from exc
        else:
            if response.status_code != 503 or attempt == RETRIES:
                return response
        time.sleep(attempt)
    raise AssertionError("unreachable")


def _raise_for_error(response: httpx.Response) -> None:
    try:
        checked(response)
    except RetrievalCallFailed as exc:
        raise IngestError(str(exc)) from None


def _store_in_batches(
    documents: list[DocumentIn],
    batch_size: int,
    store: Callable[[list[DocumentIn]], UpsertResponse],
    on_documents: Callable[[int], None],
) -> IngestSummary:
    """Each batch to `store`, in order. An IngestError says how many documents were stored
    before it, and that running again completes the run."""
    started = time.perf_counter()
    done = chunks = 0
    flagged: list[str] = []
    try:
        for batch in batches(documents, batch_size):
            stored = store(batch)
            chunks += stored.chunks
            flagged += stored.flagged
            done += len(batch)
            on_documents(len(batch))
    except IngestError as exc:
        raise IngestError(
            f"{exc}; {done} of {len(documents)} documents were stored before it; "
            "run the same command again to store the rest (documents are replaced, not duplicated)"
        ) from exc
    return IngestSummary(len(documents), chunks, time.perf_counter() - started, flagged)


def ingest_http(
    url: str,
    collection: str,
    documents: list[DocumentIn],
    batch_size: int,
    on_documents: Callable[[int], None],
    allowed_domains: list[str] | None = None,
) -> IngestSummary:
    settings = {"allowed_domains": allowed_domains} if allowed_domains is not None else None
    with sync_client(url) as client:
        try:
            _raise_for_error(client.put(f"/v1/collections/{collection}", json=settings))
        except httpx.TransportError as exc:
            raise IngestError(f"retrieval service unreachable at {url}: {exc}") from exc

        def store(batch: list[DocumentIn]) -> UpsertResponse:
            body = {"documents": [doc.model_dump() for doc in batch]}
            response = _post_with_retry(client, f"/v1/collections/{collection}/documents", body)
            _raise_for_error(response)
            return UpsertResponse.model_validate_json(response.content)

        return _store_in_batches(documents, batch_size, store, on_documents)


def ingest_direct(
    retrieval: "Retrieval",
    collection: str,
    documents: list[DocumentIn],
    batch_size: int,
    on_documents: Callable[[int], None],
    allowed_domains: list[str] | None = None,
) -> IngestSummary:
    started = time.perf_counter()
    collection = retrieval.store.resolve(collection)
    retrieval.create_collection(collection)
    if allowed_domains is not None:
        retrieval.store.record_allowed_domains(collection, allowed_domains)
    summary = _store_in_batches(
        documents, batch_size, lambda batch: _upsert(retrieval, collection, batch), on_documents
    )
    retrieval.store.optimize(collection)  # nothing serves this store now: build the search index
    return replace(summary, seconds=time.perf_counter() - started)  # the index build counts too


def _upsert(retrieval: "Retrieval", collection: str, batch: list[DocumentIn]) -> UpsertResponse:
    """What the service's upsert answers, from the embedded store."""
    indexed = retrieval.indexer.index(collection, batch)
    return UpsertResponse(
        collection=collection, documents=indexed.documents, chunks=indexed.chunks, flagged=indexed.flagged
    )
