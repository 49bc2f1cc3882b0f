"""Gateway settings (`RAGFT_` environment variables)."""

from enum import StrEnum
from functools import cached_property, lru_cache

from pydantic import Field

from ragft.settings import RagftSettings


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


class GatewaySettings(RagftSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    default_route: Route = Route.RAG
    # Comma-separated bearer keys; empty: no authentication.
    api_keys: str = ""
    # Whole-request budget: retrieval, generation and (streaming) every read of the stream.
    deadline_s: float = Field(120, gt=0)
    # Passages put in the prompt; 4 chunks of ~200 tokens fit the 2048-token base model.
    top_k: int = Field(4, ge=1, le=20)
    # Earlier user turns carried into the search query so follow-ups keep their subject.
    max_query_chars: int = Field(1000, ge=50, le=4000)
    upstream_connections: int = Field(256, ge=1)
    retry_after_s: int = Field(5, ge=1)

    @cached_property
    def keys(self) -> frozenset[str]:
        """Parsed once: every API request checks them."""
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
