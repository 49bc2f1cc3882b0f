"""The gateway's published contract: the routes a request may ask for, the headers that carry
them, and the token counts of an answer's usage. Tools that call the gateway over HTTP import
this module and `gateway.client`, nothing else of the gateway."""

from enum import StrEnum
from typing import Any


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


def token_counts(usage: Any) -> dict[str, int]:
    """The prompt and completion counts of OpenAI's `usage` object (a completion's or a usage
    chunk's), those it holds."""
    if not isinstance(usage, dict):
        return {}
    return {
        name: tokens for name in ("prompt_tokens", "completion_tokens") if isinstance(tokens := usage.get(name), int)
    }
