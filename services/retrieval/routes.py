"""Retrieval API: collections, documents, search. Handlers are sync on purpose: embedding
and the embedded store are CPU-bound, so FastAPI runs them in its thread pool."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from ragft.errors import NotFound, PayloadTooLarge
from ragft.settings import COLLECTION_NAME
from services.retrieval.chunking import chunk_id
from services.retrieval.deps import RetrievalDep
from services.retrieval.schemas import (
    ChunkOut,
    CollectionInfo,
    CollectionList,
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

CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME, description="letters, digits, _ and -")]


@router.put("/{name}", status_code=status.HTTP_200_OK)
def create_collection(name: CollectionName, retrieval: RetrievalDep, response: Response) -> CollectionInfo:
    """Create a collection; creating one that exists changes nothing."""
    store = retrieval.store
    if store.create_collection(name):
        response.status_code = status.HTTP_201_CREATED
    documents, chunks = store.count(name)
    return CollectionInfo(name=name, documents=documents, chunks=chunks)


@router.get("")
def list_collections(retrieval: RetrievalDep) -> CollectionList:
    """Every collection with its document and chunk counts."""
    infos = []
    for name in retrieval.store.collections():
        documents, chunks = retrieval.store.count(name)
        infos.append(CollectionInfo(name=name, documents=documents, chunks=chunks))
    return CollectionList(collections=infos)


@router.delete("/{name}")
def delete_collection(name: CollectionName, retrieval: RetrievalDep) -> dict[str, str]:
    """Delete a collection and everything in it."""
    if not retrieval.store.delete_collection(name):
        raise CollectionNotFound(name)
    return {"deleted": name}


@router.post("/{name}/documents")
def upsert_documents(name: CollectionName, body: UpsertRequest, retrieval: RetrievalDep) -> UpsertResponse:
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
    return UpsertResponse(collection=name, documents=result.documents, chunks=result.chunks)


@router.get("/{name}/documents")
def list_documents(
    name: CollectionName,
    retrieval: RetrievalDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentList:
    """The collection's documents by id: id, title and metadata, a page at a time."""
    documents = retrieval.store.documents(name)
    page = documents[offset : offset + limit]
    return DocumentList(
        documents=[DocumentSummary(id=d.doc_id, title=d.title, metadata=d.metadata) for d in page],
        total=len(documents),
    )


@router.get("/{name}/documents/{doc_id:path}")
def get_document(name: CollectionName, doc_id: str, retrieval: RetrievalDep) -> DocumentOut:
    """A document's metadata and its chunks, in order."""
    chunks = retrieval.store.document(name, doc_id)
    if not chunks:
        raise NotFound(f"document {doc_id!r} is not in collection {name!r}")
    return DocumentOut(
        id=doc_id,
        title=chunks[0].title,
        metadata=chunks[0].metadata,
        chunks=[ChunkOut(chunk_id=chunk_id(doc_id, c.chunk_index), text=c.text) for c in chunks],
    )


@router.delete("/{name}/documents/{doc_id:path}")
def delete_document(name: CollectionName, doc_id: str, retrieval: RetrievalDep) -> dict[str, str | int]:
    """Delete a document and all its chunks."""
    deleted = retrieval.indexer.delete(name, doc_id)
    if not deleted:
        raise NotFound(f"document {doc_id!r} is not in collection {name!r}")
    return {"deleted": doc_id, "chunks": deleted}


@router.post("/{name}/search")
def search(name: CollectionName, body: SearchRequest, retrieval: RetrievalDep) -> SearchResponse:
    """Hybrid (dense + BM25, fused by reciprocal rank), dense-only or keyword-only search."""
    hits = retrieval.search(name, body)
    return SearchResponse(
        keyword_score=retrieval.keyword_score(name, body) if body.keyword_score and body.mode != "dense" else None,
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
