"""The gateway's published contract: the routes a request may ask for, the headers that carry
them, the token counts of an answer's usage, and the records of an experiment (GET
/v1/ragft/experiment). Tools that call the gateway over HTTP import this module and
`gateway.client`, nothing else of the gateway."""

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, PositiveInt, model_validator


class Route(StrEnum):
    RAG = "rag"
    FINETUNED = "finetuned"
    HYBRID = "hybrid"

    @property
    def retrieves(self) -> bool:
        return self is not Route.FINETUNED

    @property
    def uses_adapter(self) -> bool:
        return self is not Route.RAG


# The route that picks one of the three per request, from the search it makes.
AUTO = "auto"
ROUTE_NAMES = (*Route, AUTO)
# The route value that asks for an arm of the experiment the gateway runs (RAGFT_EXPERIMENT).
EXPERIMENT = "experiment"

ROUTE_HEADER = "X-Ragft-Route"
ADAPTER_HEADER = "X-Ragft-Adapter"
COLLECTION_HEADER = "X-Ragft-Collection"
DEGRADED_HEADER = "X-Ragft-Degraded"
# The caller's end user, for a sticky experiment arm (the body's OpenAI `user` field wins).
USER_HEADER = "X-Ragft-User"
# On an answer from an experiment: `NAME; arm=ROUTE; assigned=sticky|per-request`.
EXPERIMENT_HEADER = "X-Ragft-Experiment"
# What the gateway does with an answer its grounding check finds unsupported: `mark` it, or
# `abstain`: send the abstention instead (RAGFT_GROUNDING_POLICY; a key's own in the keys file).
GROUNDING_HEADER = "X-Ragft-Grounding"
GROUNDING_POLICIES = ("mark", "abstain")


def token_counts(usage: Any) -> dict[str, int]:
    """The prompt and completion counts of OpenAI's `usage` object (a completion's or a usage
    chunk's), those it holds."""
    if not isinstance(usage, dict):
        return {}
    return {
        name: tokens for name in ("prompt_tokens", "completion_tokens") if isinstance(tokens := usage.get(name), int)
    }


# An experiment record's outcome: OUTCOME_OK, the error's type (such as "upstream_timeout"), or
# OUTCOME_UNFINISHED for an answer that never finished (the gateway stopped mid-stream).
OUTCOME_OK = "ok"
OUTCOME_UNFINISHED = ""


class ExperimentRecord(BaseModel):
    """One answer the gateway gave an experiment, and the feedback on it. The defaults are what a
    record holds before its answer ends, or without feedback."""

    id: str
    arm: str  # the route that answered
    user: str = ""  # an opaque hash of the caller's user; "" when the request named none
    sticky: bool = False  # whether the arm followed the user (one was named)
    created: float  # unix seconds
    outcome: str = OUTCOME_UNFINISHED
    latency_ms: float | None = None
    ttft_ms: float | None = None  # streamed answers only
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    score: float | None = Field(None, ge=-1, le=1)  # the feedback; None: none was posted
    comment: str | None = None


class ExperimentArms(BaseModel):
    name: str  # the split itself, as rag:50/hybrid:50
    arms: dict[str, PositiveInt]  # route -> weight, in the experiment's order


class ExperimentRecords(BaseModel):
    """GET /v1/ragft/experiment: an experiment and the records the gateway keeps of it, oldest first."""

    experiment: ExperimentArms
    records: list[ExperimentRecord]

    @model_validator(mode="after")
    def _records_are_of_its_arms(self) -> "ExperimentRecords":
        strays = sorted({r.arm for r in self.records} - set(self.experiment.arms))
        if strays:
            raise ValueError(f"records of arms the experiment does not have: {', '.join(strays)}")
        return self
