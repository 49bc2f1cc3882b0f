"""What the gateway holds for its lifetime: its settings, one client per upstream, admission
control, the rate limiter, and the store and experiment when it has them."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

from gateway.config import GatewaySettings
from gateway.contract import ADAPTER_HEADER, COLLECTION_HEADER
from gateway.experiments import Experiment
from gateway.resilience import Admission, CircuitBreaker, RateLimiter, RetryBudget
from gateway.schemas import ModelList
from gateway.store import Store
from gateway.upstreams import Upstream
from ragft.errors import NotFound
from services.retrieval.schemas import SearchMode, SearchResponse

READINESS_S = 3.0
COMPLETIONS = "/v1/chat/completions"


@dataclass
class Gateway:
    settings: GatewaySettings
    retrieval: Upstream
    generation: Upstream
    admission: Admission
    rate_limiter: RateLimiter
    store: Store | None
    experiment: Experiment | None

    @classmethod
    def open(cls, settings: GatewaySettings) -> "Gateway":
        def upstream(name: str, url: str) -> Upstream:
            return Upstream(
                name,
                url,
                connections=settings.upstream_connections,
                retry_after=settings.retry_after_s,
                breaker=CircuitBreaker(name, settings.breaker_failures, settings.breaker_cooldown_s),
                budget=RetryBudget(settings.retry_budget),
            )

        return cls(
            settings,
            upstream("retrieval", settings.retrieval_url),
            upstream("generation", settings.generation_url),
            Admission(settings.max_in_flight, settings.retry_after_s),
            RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
            Store(settings.store_url, settings.store_retention_days * 86_400) if settings.store_url else None,
            settings.split,
        )

    async def close(self) -> None:
        await self.retrieval.close()
        await self.generation.close()
        if self.store is not None:
            await self.store.close()

    async def search(
        self, collection: str, query: str, *, deadline: float, keyword_score: bool = False, mode: SearchMode = "hybrid"
    ) -> SearchResponse:
        path = f"/v1/collections/{quote(collection, safe='')}/search"
        body = {"query": query, "top_k": self.settings.top_k, "keyword_score": keyword_score, "mode": mode}
        try:
            return await self.retrieval.json("POST", path, SearchResponse, deadline=deadline, body=body)
        except NotFound as exc:
            raise NotFound(exc.message, param=COLLECTION_HEADER) from exc

    async def models(self, *, deadline: float) -> ModelList:
        return await self.generation.json("GET", "/v1/models", ModelList, deadline=deadline)

    async def not_ready(self) -> str | None:
        """None when both upstreams answer their health checks, else what is wrong."""
        deadline = asyncio.get_running_loop().time() + READINESS_S
        checks = [(self.retrieval, "/readyz"), (self.generation, "/health")]
        results = await asyncio.gather(
            *(upstream.check(path, deadline=deadline) for upstream, path in checks), return_exceptions=True
        )
        problems = [str(result) for result in results if isinstance(result, Exception)]
        if self.store is not None and (problem := await self.store.not_ready()):
            problems.append(problem)
        return "; ".join(problems) or None


def adapter_not_found(adapter: str) -> NotFound:
    return NotFound(
        f"adapter {adapter!r} is not served by the generation service; GET /v1/models lists those that are",
        param=ADAPTER_HEADER,
    )


@contextmanager
def adapter_named(adapter: str | None) -> Iterator[None]:
    """vLLM's 404 for an unknown model, told in the terms of the request's header."""
    try:
        yield
    except NotFound as exc:
        if adapter is None:
            raise
        raise adapter_not_found(adapter) from exc
