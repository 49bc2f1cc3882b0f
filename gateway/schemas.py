"""The chat request the gateway reads, and the OpenAI answers of vLLM it relays. Only what it
needs is checked in a request; every other OpenAI field (temperature, max_tokens, stop, seed,
...) passes through to vLLM, which checks it. An answer is checked against the fields OpenAI's
schema requires, and its other fields are relayed as vLLM sent them."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.experiments import MAX_USER_CHARS
from ragft.settings import DocumentId
from services.retrieval.schemas import DocumentIn, UpsertRequest


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    # The route and adapter headers decide what runs; the response's `model` says what ran.
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    # Checked here too, so the commonest mistakes get a clear message before any upstream work.
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=1, description="one answer per request")
    stream_options: dict[str, Any] | None = None
    # OpenAI's end-user id: an experiment keeps each user on one arm (gateway/experiments.py).
    user: str | None = Field(None, min_length=1, max_length=MAX_USER_CHARS)

    def upstream_body(self, model: str, messages: list[ChatMessage], *, default_max_tokens: int) -> dict[str, Any]:
        body = self.model_dump(exclude_none=True, exclude={"messages"})
        if self.max_tokens is None and self.max_completion_tokens is None:
            body["max_tokens"] = default_max_tokens  # no request runs to the end of the context
        if self.stream:  # vLLM's usage chunk feeds the token metrics; it reaches only clients that asked
            body["stream_options"] = {**(self.stream_options or {}), "include_usage": True}
        body["model"] = model
        body["messages"] = [message.model_dump(exclude_none=True) for message in messages]
        return body

    @property
    def wants_usage(self) -> bool:
        """Whether the client asked for the stream's usage chunk (`stream_options.include_usage`)."""
        return (self.stream_options or {}).get("include_usage") is True


class NewDocument(BaseModel):
    """A document added from the playground; the retrieval service checks its size."""

    model_config = ConfigDict(extra="forbid")

    id: DocumentId
    text: str = Field(min_length=1)
    title: str | None = Field(None, max_length=200)

    def upsert_body(self) -> dict[str, Any]:
        """The retrieval service's own upsert request, unchecked here: the service checks it."""
        metadata = {"title": self.title} if self.title else {}
        document = DocumentIn.model_construct(id=self.id, text=self.text, metadata=metadata)
        return UpsertRequest.model_construct(documents=[document]).model_dump()


class Relayed(BaseModel):
    """An upstream's answer: the fields declared are checked, every other one is relayed."""

    model_config = ConfigDict(extra="allow")


def _null(value: object) -> bool:
    return value is None


def absent_if_null() -> Any:
    """A field vLLM sends as null where OpenAI's schema allows only a value or no field (strictly
    typed clients refuse the null): relayed when it has a value, left out when null."""
    return Field(None, exclude_if=_null)


class CompletionMessage(Relayed):
    role: Literal["assistant"]
    content: str | None = None
    refusal: str | None = None
    annotations: list[Any] | None = absent_if_null()
    function_call: dict[str, Any] | None = absent_if_null()


class CompletionChoice(Relayed):
    index: int
    message: CompletionMessage
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class Usage(Relayed):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, Any] | None = absent_if_null()
    completion_tokens_details: dict[str, Any] | None = absent_if_null()


class ChatCompletion(Relayed):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[CompletionChoice] = Field(min_length=1)
    usage: Usage | None = absent_if_null()
    system_fingerprint: str | None = absent_if_null()


class ModelCard(Relayed):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Relayed):
    object: Literal["list"]
    data: list[ModelCard]
