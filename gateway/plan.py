"""What a chat request will run: its route, collection and adapter, read from the headers; and
for `auto`, the route chosen from the search it makes."""

import re
from dataclasses import dataclass, replace
from typing import Any

from starlette.datastructures import Headers

from gateway.config import GatewaySettings
from gateway.contract import (
    ADAPTER_HEADER,
    AUTO,
    COLLECTION_HEADER,
    GROUNDING_HEADER,
    GROUNDING_POLICIES,
    ROUTE_HEADER,
    ROUTE_NAMES,
    Route,
)
from gateway.experiments import Arm
from ragft.errors import InvalidRequest, RagftError, UnknownRoute
from ragft.settings import COLLECTION_NAME
from services.retrieval.schemas import Hit, SearchResponse

ROUTES = ", ".join(ROUTE_NAMES)


def covered_route(headers: Headers, settings: GatewaySettings) -> Route:
    """auto's route when the knowledge base covers the question: hybrid when the request names
    an adapter, else `RAGFT_AUTO_COVERED_ROUTE` (hybrid on the default adapter, or rag)."""
    if ADAPTER_HEADER in headers:
        return Route.HYBRID
    return Route(settings.auto_covered_route)


@dataclass
class Plan:
    """The route, and the collection and adapter it uses. An `auto` plan searches as the route it
    takes when the knowledge base covers the question (`covered_route`) until `chosen` settles
    its route."""

    route: Route
    collection: str | None
    adapter: str | None
    model: str
    asked: str  # the route the request asked for: one of the three, or auto
    # Set when the route could not run as asked and a lesser one answered instead.
    degraded: dict[str, str] | None = None
    route_reason: dict[str, Any] | None = None  # why auto chose the route
    arm: Arm | None = None  # the experiment's arm that asked for the route
    grounding: str = "mark"  # what an answer that fails the grounding check gets: GROUNDING_POLICIES

    @classmethod
    def from_headers(
        cls, headers: Headers, settings: GatewaySettings, arm: Arm | None = None, key_grounding: str | None = None
    ) -> "Plan":
        """The plan of the route the headers ask for, or of the experiment's arm (`arm_for`); its
        grounding policy from the header, else the API key's (`key_grounding`), else the setting."""
        raw = arm.route if arm else headers.get(ROUTE_HEADER, settings.default_route)
        asked = raw.strip().lower()
        if asked == AUTO:
            route = covered_route(headers, settings)
        else:
            try:
                route = Route(asked)
            except ValueError:
                raise UnknownRoute(
                    f"{ROUTE_HEADER} {raw!r} is not a route; use one of: {ROUTES}", param=ROUTE_HEADER
                ) from None
        collection = headers.get(COLLECTION_HEADER, settings.collection) if route.retrieves else None
        if collection is not None and not re.match(COLLECTION_NAME, collection):
            raise InvalidRequest(
                f"{COLLECTION_HEADER} {collection!r} is not a collection name: letters, digits, _ and -",
                param=COLLECTION_HEADER,
            )
        # auto keeps the adapter for the finetuned answer it may choose.
        adapter: str | None = headers.get(ADAPTER_HEADER, settings.default_adapter)
        if not (route.uses_adapter or asked == AUTO):
            adapter = None
        if adapter is not None and not adapter.strip():
            raise InvalidRequest(f"the {asked} route needs an adapter name", param=ADAPTER_HEADER)
        model = adapter if adapter and route.uses_adapter else settings.served_model_name
        grounding = headers.get(GROUNDING_HEADER, key_grounding or settings.grounding_policy).strip().lower()
        if grounding not in GROUNDING_POLICIES:
            raise InvalidRequest(
                f"{GROUNDING_HEADER} {grounding!r} is not a policy; use one of: {', '.join(GROUNDING_POLICIES)}",
                param=GROUNDING_HEADER,
            )
        return cls(route, collection, adapter, model, asked, arm=arm, grounding=grounding)

    def without_retrieval(self, error: RagftError) -> "Plan":
        """hybrid or auto answered as finetuned, saying so."""
        reason = {"component": "retrieval", "requested_route": self.asked, "message": error.message}
        return self.finetuned(f"retrieval failed: {error.message}", degraded=reason)

    def chosen(self, found: SearchResponse, threshold: float) -> "Plan":
        """auto's route: the knowledge base's (rag or hybrid) when the best keyword score reaches
        the threshold, else finetuned. The fused scores only rank passages; they are reported."""
        score = found.keyword_score
        scores = [hit.score for hit in found.hits]
        evidence: dict[str, Any] = {
            "keyword_score": score,
            "min_keyword_score": threshold,
            "top_score": scores[0] if scores else None,
            "score_gap": round(scores[0] - scores[1], 6) if len(scores) > 1 else None,
            "covered_route": self.route.value,
        }
        if not found.hits:
            return self.finetuned(f"collection {self.collection!r} has no passages for the question", evidence)
        if score is None:
            return self.finetuned("the knowledge base does not cover the question: no passage shares a word", evidence)
        if score < threshold:
            because = f"the knowledge base does not cover the question: best keyword score {score:g} < {threshold:g}"
            return self.finetuned(because, evidence)
        because = f"the knowledge base covers the question: best keyword score {score:g} >= {threshold:g}"
        return replace(
            self,
            adapter=self.adapter if self.route is Route.HYBRID else None,
            route_reason={"chosen": self.route.value, "because": because, **evidence},
        )

    def finetuned(
        self, because: str, evidence: dict[str, Any] | None = None, degraded: dict[str, str] | None = None
    ) -> "Plan":
        """The adapter alone, with no retrieval; auto's reason says why."""
        reason = {"chosen": Route.FINETUNED.value, "because": because, **(evidence or {})}
        return replace(
            self,
            route=Route.FINETUNED,
            collection=None,
            model=self.adapter or self.model,
            degraded=degraded,
            route_reason=reason if self.asked == AUTO else None,
        )

    def ragft(self, sources: list[Hit]) -> dict[str, Any]:
        ragft: dict[str, Any] = {
            "route": self.route.value,
            "adapter": self.adapter,
            "collection": self.collection,
            "sources": [source.model_dump() for source in sources],
        }
        if reason := {**(self.route_reason or {}), **(self.arm.reason() if self.arm else {})}:
            ragft["route_reason"] = reason
        return ragft | ({"degraded": self.degraded} if self.degraded else {})
