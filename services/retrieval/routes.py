"""Retrieval API: collections, documents, search. Handlers are sync on purpose: embedding
and the embedded store are CPU-bound, so FastAPI runs them in its thread pool."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from ragft.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from ragft.settings import COLLECTION_NAME
from services.retrieval.chunking import chunk_id
from services.retrieval.deps import RetrievalDep
from services.retrieval.runtime import Retrieval
from services.retrieval.schemas import (
    AliasIn,
    AliasInfo,
    AliasList,
    ChunkOut,
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CopyRequest,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    DocumentSummary,
    Hit,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from services.retrieval.store import CollectionNotFound

router = APIRouter(prefix="/v1/collections", tags=["retrieval"])
aliases = APIRouter(prefix="/v1/aliases", tags=["retrieval"])

CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME, description="letters, digits, _ and -")]


def _resolved(name: CollectionName, retrieval: RetrievalDep) -> str:
    return retrieval.store.resolve(name)


# The collection a name in the path reads: an alias's target, else the collection of that name.
Collection = Annotated[str, Depends(_resolved)]


def _info(retrieval: Retrieval, name: str, collection: str) -> CollectionInfo:
    documents, chunks = retrieval.store.count(collection)
    return CollectionInfo(
        name=name,
        documents=documents,
        chunks=chunks,
        embedding_model=retrieval.model_of(collection) or retrieval.embedder.name,
        embedding_backend=retrieval.store.catalog().backend_of(collection),
        alias_of=collection if collection != name else None,
        allowed_domains=retrieval.store.catalog().allowed_domains.get(collection),
    )


@router.put("/{name}", status_code=status.HTTP_200_OK)
def create_collection(
    name: CollectionName,
    collection: Collection,
    retrieval: RetrievalDep,
    response: Response,
    body: CollectionCreate | None = None,
) -> CollectionInfo:
    """Create a collection, optionally embedded by its own model; creating one that exists changes
    nothing but the allowed domains, when given."""
    model = retrieval.check_model(body.embedding_model) if body and body.embedding_model else None
    exists = collection in retrieval.store.collections()
    if exists and model is not None and model != retrieval.model_of(collection):
        raise Conflict(
            f"collection {collection!r} is embedded by {retrieval.model_of(collection) or 'the packaged model'!r}, "
            f"not {model!r}: reindex it into a new collection instead (ragft reindex)",
            param="embedding_model",
        )
    retrieval.create_collection(collection, model)  # also completes one a failed create left half-made
    if body and body.allowed_domains is not None:
        retrieval.store.record_allowed_domains(collection, body.allowed_domains)
    if not exists:
        response.status_code = status.HTTP_201_CREATED
    return _info(retrieval, name, collection)


@router.get("")
def list_collections(retrieval: RetrievalDep) -> CollectionList:
    """Every name a client can read, aliases included, with document and chunk counts."""
    collections = retrieval.store.collections()
    named = {c: c for c in collections} | retrieval.store.catalog().aliases
    return CollectionList(
        collections=[_info(retrieval, name, named[name]) for name in sorted(named) if named[name] in collections]
    )


@router.delete("/{name}")
def delete_collection(name: CollectionName, retrieval: RetrievalDep) -> dict[str, str]:
    """Delete the collection of exactly this name and everything in it; never one an alias reads."""
    retrieval.store.remove_collection(name)
    return {"deleted": name}


@router.post("/{name}/documents")
def upsert_documents(name: Collection, body: UpsertRequest, retrieval: RetrievalDep) -> UpsertResponse:
    """Insert or replace documents; answers after the store acknowledged every chunk."""
    settings = retrieval.settings
    if len(body.documents) > settings.max_batch_documents:
        raise PayloadTooLarge(
            f"{len(body.documents)} documents in one batch; the limit is {settings.max_batch_documents}",
            param="documents",
        )
    for i, doc in enumerate(body.documents):
        if len(doc.text) > settings.max_document_chars:
            raise PayloadTooLarge(
                f"document {doc.id!r} has {len(doc.text)} characters; the limit is {settings.max_document_chars}",
                param=f"documents.{i}.text",
            )
    if name not in retrieval.store.collections():
        raise CollectionNotFound(name)
    result = retrieval.indexer.index(name, body.documents)
    return UpsertResponse(collection=name, documents=result.documents, chunks=result.chunks, flagged=result.flagged)


@router.post("/{name}/copy")
def copy_documents(name: Collection, body: CopyRequest, retrieval: RetrievalDep) -> UpsertResponse:
    """Re-embed documents' stored chunks from another collection into this one, with this
    collection's model: how `ragft reindex` fills a new collection."""
    source = retrieval.store.resolve(body.source)
    if source == name:
        raise InvalidRequest(f"{body.source!r} is the collection being written", param="source")
    if len(body.ids) > retrieval.settings.max_batch_documents:
        raise PayloadTooLarge(
            f"{len(body.ids)} documents in one batch; the limit is {retrieval.settings.max_batch_documents}",
            param="ids",
        )
    collections = retrieval.store.collections()
    for collection in (name, source):
        if collection not in collections:
            raise CollectionNotFound(collection)
    result = retrieval.indexer.copy(source, name, body.ids)
    return UpsertResponse(collection=name, documents=result.documents, chunks=result.chunks, flagged=result.flagged)


@router.get("/{name}/documents")
def list_documents(
    name: Collection,
    retrieval: RetrievalDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentList:
    """The collection's documents by id: id, title, metadata and any text addressed to the
    assistant that ingest set aside, a page at a time."""
    documents = retrieval.store.documents(name)
    page = documents[offset : offset + limit]
    return DocumentList(
        documents=[
            DocumentSummary(id=d.doc_id, title=d.title, metadata=d.metadata, instructions=list(d.instructions))
            for d in page
        ],
        total=len(documents),
    )


@router.get("/{name}/documents/{doc_id:path}")
def get_document(name: Collection, doc_id: str, retrieval: RetrievalDep) -> DocumentOut:
    """A document's metadata and its chunks, in order."""
    chunks = retrieval.store.document(name, doc_id)
    if not chunks:
        raise NotFound(f"document {doc_id!r} is not in collection {name!r}")
    return DocumentOut(
        id=doc_id,
        title=chunks[0].title,
        metadata=chunks[0].metadata,
        instructions=list(chunks[0].instructions),
        chunks=[ChunkOut(chunk_id=chunk_id(doc_id, c.chunk_index), text=c.text) for c in chunks],
    )


@router.delete("/{name}/documents/{doc_id:path}")
def delete_document(name: Collection, doc_id: str, retrieval: RetrievalDep) -> DocumentDeleted:
    """Delete a document and all its chunks."""
    deleted = retrieval.indexer.delete(name, doc_id)
    if not deleted:
        raise NotFound(f"document {doc_id!r} is not in collection {name!r}")
    return DocumentDeleted(deleted=doc_id, chunks=deleted)


@router.post("/{name}/search")
def search(name: Collection, body: SearchRequest, retrieval: RetrievalDep) -> SearchResponse:
    """Hybrid (dense + BM25, fused by reciprocal rank), dense-only or keyword-only search."""
    hits = retrieval.search(name, body)
    return SearchResponse(
        keyword_score=retrieval.keyword_score(name, body) if body.keyword_score and body.mode != "dense" else None,
        allowed_domains=retrieval.store.catalog().allowed_domains.get(name),
        hits=[
            Hit(
                doc_id=h.doc_id,
                chunk_id=chunk_id(h.doc_id, h.chunk_index),
                score=h.score,
                title=h.title,
                text=h.text,
                metadata=h.metadata,
            )
            for h in hits
        ],
    )


@aliases.get("")
def list_aliases(retrieval: RetrievalDep) -> AliasList:
    """Every alias, the collection it reads, and whether it hides a collection of its own name."""
    collections = set(retrieval.store.collections())
    return AliasList(
        aliases=[
            AliasInfo(name=alias, collection=collection, shadows=alias in collections)
            for alias, collection in sorted(retrieval.store.catalog().aliases.items())
        ]
    )


@aliases.put("/{alias}")
def switch_alias(alias: CollectionName, body: AliasIn, retrieval: RetrievalDep) -> AliasInfo:
    """Point a name at a collection in one atomic step: each search reads the old collection or
    the new one, never neither. A collection of the alias's own name is kept, unread."""
    previous = retrieval.store.set_alias(alias, body.collection)
    return AliasInfo(
        name=alias,
        collection=body.collection,
        shadows=alias in retrieval.store.collections(),
        previous=previous,
    )


@aliases.delete("/{alias}")
def delete_alias(alias: CollectionName, retrieval: RetrievalDep) -> dict[str, str]:
    """Drop an alias; its name reads the collection of that name again, if there is one."""
    return {"deleted": alias, "collection": retrieval.store.drop_alias(alias)}
