"""Request and response bodies of the retrieval API."""

import re
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ragft.settings import COLLECTION_NAME, DocumentId

METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$")

SearchMode = Literal["hybrid", "dense", "keyword"]


DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ALLOWED_DOMAINS = (
    "the domains (each with its subdomains) whose links and e-mail addresses an answer may hand the "
    "customer; null: any that the collection's documents hold"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(Strict):
    id: DocumentId
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is empty or whitespace only")
        return text


class UpsertRequest(Strict):
    documents: list[DocumentIn] = Field(min_length=1)

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        seen: set[str] = set()
        for doc in documents:
            if doc.id in seen:
                raise ValueError(f"document id {doc.id!r} appears twice in one batch")
            seen.add(doc.id)
        return documents


INSTRUCTIONS = "sentences addressed to the assistant rather than the customer, set aside at ingest: not evidence"


class UpsertResponse(BaseModel):
    collection: str
    documents: int
    chunks: int
    # A retrieval service older than its caller screens nothing.
    flagged: list[str] = Field(default_factory=list, description=f"documents that held {INSTRUCTIONS}")


class Range(Strict):
    """Bounds that are all numbers (a version, a count) or all dates and times (RFC 3339, such as
    `2026-11-27` or `2026-11-27T09:00:00Z`: a `valid_from` or `updated_at` in the metadata)."""

    gt: float | datetime | None = None
    gte: float | datetime | None = None
    lt: float | datetime | None = None
    lte: float | datetime | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Self:
        given = [v for v in (self.gt, self.gte, self.lt, self.lte) if v is not None]
        if not given:
            raise ValueError("a range needs at least one of gt, gte, lt, lte")
        if len({isinstance(v, datetime) for v in given}) > 1:
            raise ValueError("a range's bounds are all numbers or all dates, not both")
        return self

    @property
    def bounds(self) -> dict[str, float | datetime]:
        return self.model_dump(exclude_none=True)

    @property
    def of_dates(self) -> bool:
        return any(isinstance(v, datetime) for v in self.bounds.values())


class Condition(Strict):
    """One test on a field: `doc_id`, or a metadata key (dots reach into nested objects)."""

    key: str
    match: str | int | bool | None = None
    any: list[str | int] | None = Field(default=None, min_length=1)
    range: Range | None = None

    @field_validator("key")
    @classmethod
    def _valid_key(cls, key: str) -> str:
        if not METADATA_KEY.match(key):
            raise ValueError(f"invalid field key {key!r}")
        return key

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        given = [name for name in ("match", "any", "range") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a condition needs exactly one of match, any, range")
        return self


class Filter(Strict):
    """All of `must`, at least one of `should` (when given), none of `must_not`."""

    must: list["Condition | Filter"] = Field(default_factory=list)
    should: list["Condition | Filter"] = Field(default_factory=list)
    must_not: list["Condition | Filter"] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not (self.must or self.should or self.must_not):
            raise ValueError("a filter needs at least one of must, should, must_not")
        return self


class SearchRequest(Strict):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(5, ge=1, le=100)
    mode: SearchMode = "hybrid"
    filter: Filter | None = None
    # Also return keyword_score (hybrid and keyword modes): one more, cheap, keyword query.
    keyword_score: bool = False

    @field_validator("query")
    @classmethod
    def _not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("query is empty or whitespace only")
        return query


class Hit(BaseModel):
    """One retrieved passage; the gateway reads it as a source."""

    doc_id: str
    chunk_id: str
    score: float
    title: str = ""  # a retrieval service older than its caller sends none
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[Hit]
    # The best chunk's BM25 score per query term (hybrid and keyword modes; None when no chunk
    # shares a term): whether the collection covers the question at all, which `auto` reads.
    keyword_score: float | None = None
    allowed_domains: list[str] | None = Field(None, description=ALLOWED_DOMAINS)


class CollectionCreate(Strict):
    embedding_model: str | None = Field(
        None,
        min_length=1,
        description="a sentence-transformers model folder on the retrieval host; default: the service's model",
    )
    allowed_domains: list[str] | None = Field(None, description=f"{ALLOWED_DOMAINS}; given, replaces the list")

    @field_validator("allowed_domains")
    @classmethod
    def _domain_names(cls, domains: list[str] | None) -> list[str] | None:
        if domains is None:
            return None
        normalized = sorted({domain.strip().lower().removeprefix("www.") for domain in domains})
        if bad := [domain for domain in normalized if not DOMAIN.match(domain)]:
            raise ValueError(f"not a domain name: {bad[0]!r} (write quillbyte.app, without a scheme or path)")
        return normalized


class CollectionInfo(BaseModel):
    name: str
    documents: int
    chunks: int
    embedding_model: str
    # A retrieval service older than its caller sends none: it embedded with PyTorch.
    embedding_backend: str = Field("torch", description="what computes its vectors: torch or onnx")
    alias_of: str | None = Field(None, description="set when the name is an alias: the collection it reads")
    allowed_domains: list[str] | None = Field(None, description=ALLOWED_DOMAINS)


class CopyRequest(Strict):
    source: str = Field(pattern=COLLECTION_NAME)
    ids: list[DocumentId] = Field(min_length=1)


class AliasIn(Strict):
    collection: str = Field(pattern=COLLECTION_NAME)


class AliasInfo(BaseModel):
    name: str
    collection: str
    shadows: bool = Field(description="a collection of the alias's own name exists: kept, but not read by that name")
    previous: str | None = Field(None, description="after a switch: the collection the name read before")


class AliasList(BaseModel):
    aliases: list[AliasInfo]


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class ChunkOut(BaseModel):
    chunk_id: str
    text: str


class DocumentOut(BaseModel):
    id: str
    title: str
    metadata: dict[str, Any]
    instructions: list[str] = Field(default_factory=list, description=INSTRUCTIONS)
    chunks: list[ChunkOut]


class DocumentDeleted(BaseModel):
    deleted: str
    chunks: int


class DocumentSummary(BaseModel):
    id: str
    title: str
    metadata: dict[str, Any]
    instructions: list[str] = Field(default_factory=list, description=INSTRUCTIONS)


class DocumentList(BaseModel):
    documents: list[DocumentSummary]
    total: int = Field(description="documents in the collection; page through them with offset")
