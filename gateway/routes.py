"""The gateway's API: OpenAI-compatible chat completions and models, the knowledge-base calls the
playground makes (proxied to the retrieval service), and the playground page itself."""

from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response

from gateway.chat import chat
from gateway.compare import CompareRequest, compare
from gateway.contract import ExperimentRecords
from gateway.deps import CallDep
from gateway.experiments import arm_for
from gateway.feedback import FeedbackIn, FeedbackOut, experiment_records, post_feedback
from gateway.plan import Plan
from gateway.schemas import ChatRequest, NewDocument
from ragft.errors import InvalidRequest
from ragft.settings import COLLECTION_NAME, check_document_id
from services.retrieval.schemas import (
    CollectionList,
    DocumentDeleted,
    DocumentList,
    DocumentOut,
    SearchRequest,
    SearchResponse,
    UpsertResponse,
)

PLAYGROUND = FilePath(__file__).with_name("playground")

router = APIRouter(prefix="/v1", tags=["openai"])
knowledge = APIRouter(prefix="/v1/ragft/collections", tags=["knowledge base"])
experiments = APIRouter(prefix="/v1/ragft/experiment", tags=["experiments"])
page = APIRouter(include_in_schema=False)

# `"stream": true` answers with server-sent events: each one's data is a JSON chunk, then [DONE].
SSE_EVENT = {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}
STREAMS: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {"schema": SSE_EVENT}}}}

CollectionName = Annotated[str, Path(pattern=COLLECTION_NAME, description="letters, digits, _ and -")]


@router.post("/chat/completions", response_model=None, responses=STREAMS)
async def chat_completions(body: ChatRequest, request: Request, call: CallDep) -> Response:
    """An OpenAI chat completion. `X-Ragft-Route` picks rag, finetuned, hybrid or auto; `X-Ragft-Adapter`
    and `X-Ragft-Collection` pick the adapter and the knowledge base."""
    experiment = call.caller.experiment or call.gateway.experiment  # the key's own first
    arm = arm_for(experiment, request.headers, body.user, call.tenant)
    plan = Plan.from_headers(request.headers, call.gateway.settings, arm, call.caller.grounding)
    return await chat(body, plan, call)


@router.post("/compare", response_model=None, responses=STREAMS)
async def compare_routes(body: CompareRequest, request: Request, call: CallDep) -> Response:
    """The same chat body on several routes at once (`routes`, default all three): per route the
    answer, sources, timing and tokens, or its error. `stream: true` interleaves the routes'
    events, each tagged with its route."""
    return await compare(body, request.headers, call)


@router.post("/feedback")
async def feedback(body: FeedbackIn, call: CallDep) -> FeedbackOut:
    """A score on an answer this API key got, by its completion id or X-Request-ID: -1 to 1, or
    `up`/`down`. A second post replaces the first. An id unknown to this key is a 404, whether
    or not another key's answer has it."""
    return await post_feedback(body, call)


@experiments.get("")
async def experiment(call: CallDep, name: Annotated[str | None, Query(max_length=200)] = None) -> ExperimentRecords:
    """The running experiment's records (or an earlier one's, by `name`, as `rag:50/hybrid:50`),
    with their feedback: what `ragft experiment report` reads. For keys with every right."""
    return await experiment_records(call, name)


@router.get("/models")
async def models(call: CallDep) -> Any:
    """The base model and every adapter the generation service serves."""
    return await call.gateway.models(deadline=call.deadline)


@knowledge.get("")
async def list_collections(call: CallDep) -> Any:
    """The collections this API key may read, with their document and chunk counts (not what an
    alias reads, nor the model's path on the retrieval host)."""
    listed = await call.gateway.retrieval.json("GET", "/v1/collections", CollectionList, deadline=call.deadline)
    return {
        "collections": [
            info.model_dump(include={"name", "documents", "chunks"})
            for info in listed.collections
            if call.caller.can_read(info.name)
        ]
    }


@knowledge.post("/{name}/search")
async def search(name: CollectionName, body: SearchRequest, call: CallDep) -> SearchResponse:
    """The retrieval service's search: the chunks that best answer `query`, with their scores."""
    call.caller.check_read(name, param="name")
    path = f"/v1/collections/{name}/search"
    search = body.model_dump(exclude_none=True)
    return await call.gateway.retrieval.json("POST", path, SearchResponse, deadline=call.deadline, body=search)


@knowledge.get("/{name}/documents")
async def list_documents(
    name: CollectionName,
    call: CallDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DocumentList:
    """A page of the collection's documents (id, title, metadata) and how many there are."""
    call.caller.check_read(name, param="name")
    path = f"/v1/collections/{name}/documents?offset={offset}&limit={limit}"
    return await call.gateway.retrieval.json("GET", path, DocumentList, deadline=call.deadline)


@knowledge.get("/{name}/documents/{doc_id:path}")
async def get_document(name: CollectionName, doc_id: str, call: CallDep) -> DocumentOut:
    """A document's metadata and its chunks, in order."""
    call.caller.check_read(name, param="name")
    return await call.gateway.retrieval.json("GET", _document_path(name, doc_id), DocumentOut, deadline=call.deadline)


@knowledge.delete("/{name}/documents/{doc_id:path}")
async def delete_document(name: CollectionName, doc_id: str, call: CallDep) -> DocumentDeleted:
    """Deletes a document and its chunks (admin keys)."""
    call.caller.check_admin(name, param="name")
    return await call.gateway.retrieval.json(
        "DELETE", _document_path(name, doc_id), DocumentDeleted, deadline=call.deadline
    )


def _document_path(collection: str, doc_id: str) -> str:
    try:
        check_document_id(doc_id)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="doc_id") from None
    return f"/v1/collections/{collection}/documents/{quote(doc_id, safe='/')}"


@knowledge.post("/{name}/documents")
async def add_document(name: CollectionName, body: NewDocument, call: CallDep) -> UpsertResponse:
    """Adds (or replaces) one document (admin keys); answers once it is searchable."""
    call.caller.check_admin(name, param="name")
    path = f"/v1/collections/{name}/documents"
    return await call.gateway.retrieval.json(
        "POST", path, UpsertResponse, deadline=call.deadline, body=body.upsert_body()
    )


@page.get("/")
async def playground() -> FileResponse:
    """The playground: the three routes side by side, and the knowledge base."""
    return FileResponse(PLAYGROUND / "index.html")
