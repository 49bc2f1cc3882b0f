"""The store's record of one answer (gateway/store.py), written before the answer goes out, so
feedback on it always finds it; the answer's token usage is charged to the key's budgets in the
same write."""

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import structlog

from gateway.budgets import Budget
from gateway.plan import Plan
from gateway.store import Charge, Store
from ragft.errors import UpstreamUnavailable
from ragft.logging import get_logger

log = get_logger(__name__)


def answer_id(suffix: str = "") -> str:
    """The id an answer is recorded under: the request id, and the route's within /v1/compare."""
    request_id = structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex
    return f"{request_id}-{suffix}" if suffix else str(request_id)


@dataclass
class AnswerRecord:
    """One answer's record. A store that fails costs the record, never the answer."""

    store: Store
    tenant: str
    request_id: str
    budgets: tuple[Budget, ...]  # the key's, charged with the answer's tokens in the same write
    started: float = field(default_factory=time.perf_counter)

    async def opened(self, plan: Plan) -> None:
        await self._kept(self.store.opened(self.tenant, self.request_id, _asked(plan)))

    async def answered(self, plan: Plan, outcome: str, usage: dict[str, int]) -> None:
        """A whole answer, or a refusal, in one write."""
        ended = _asked(plan) | self._ended(outcome, usage)
        await self._kept(self.store.opened(self.tenant, self.request_id, ended, self._charge(usage)))

    async def finished(self, outcome: str, usage: dict[str, int], ttft_ms: float | None, spent: dict[str, int]) -> None:
        """A stream's end: its usage chunk's counts, if it came, and what it `spent` for the budgets."""
        ended = self._ended(outcome, usage) | ({"ttft_ms": ttft_ms} if ttft_ms is not None else {})
        await self._kept(self.store.finished(self.tenant, self.request_id, ended, self._charge(spent)))

    def _charge(self, usage: dict[str, int]) -> Charge | None:
        return Charge(self.budgets, sum(usage.values())) if self.budgets else None

    def _ended(self, outcome: str, usage: dict[str, int]) -> dict[str, str | float]:
        return {"outcome": outcome, "latency_ms": round((time.perf_counter() - self.started) * 1000, 1), **usage}

    @staticmethod
    async def _kept(write: Awaitable[None]) -> None:
        try:
            await write
        except UpstreamUnavailable as exc:
            log.warning("the answer's record was not kept", error=exc.message)


def _asked(plan: Plan) -> dict[str, str | float]:
    arm = plan.arm
    return {
        "experiment": arm.experiment if arm else "",
        "arm": arm.route if arm else plan.asked,
        "user": arm.user if arm else "",
        "route": plan.route.value,
    }
