"""What the gateway keeps beyond one request, in Redis (`RAGFT_STORE_URL`): a record of each
answer (whose API key asked, its experiment arm, latency, tokens, outcome) and the feedback on
it. Redis because the gateway's replicas must share it, a write must be on disk before it is
acknowledged (appendfsync always: nothing acknowledged is lost to kill -9), and a check-and-set
must be atomic (a Lua script); ragft holds no state of its own."""

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from prometheus_client import Counter
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from redis.typing import EncodableT

from gateway.budgets import Budget
from ragft.errors import NotFound, UpstreamUnavailable

STORE_ERRORS = Counter("ragft_gateway_store_errors_total", "Failed writes and reads of the gateway's store.", ["op"])
PREFIX = "ragft:"

# Feedback on a record that exists, atomically: -1 when there is none, else whether feedback
# was replaced, and the record's experiment and arm.
FEEDBACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, '', ''} end
local had = redis.call('HEXISTS', KEYS[1], 'score')
redis.call('HSET', KEYS[1], 'score', ARGV[1], 'comment', ARGV[2], 'feedback_at', ARGV[3])
return {had, redis.call('HGET', KEYS[1], 'experiment'), redis.call('HGET', KEYS[1], 'arm')}
"""


@dataclass(frozen=True)
class Feedback:
    replaced: bool
    experiment: str
    arm: str


@dataclass(frozen=True)
class Charge:
    """Tokens an answer spent, for the budgets of the key that asked."""

    budgets: tuple[Budget, ...]
    tokens: int


class Store:
    """Records by API key and request id, `ragft:answer:TENANT:ID` (a hash, kept `retention_s`),
    so a key reaches only its own, whatever X-Request-ID it sends; each experiment's records by
    time, `ragft:experiment:NAME` (a sorted set of TENANT:ID); and the tokens a key spent in a
    budget's window, `ragft:budget:TENANT:WINDOW:N` (a counter, kept two windows)."""

    def __init__(self, url: str, retention_s: int) -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
        self.retention_s = retention_s
        self._feedback = self.client.register_script(FEEDBACK)

    async def close(self) -> None:
        await self.client.aclose()

    async def not_ready(self) -> str | None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            return f"the store does not answer: {exc}"
        return None

    async def opened(
        self, tenant: str, request_id: str, fields: Mapping[str, str | float], charge: Charge | None = None
    ) -> None:
        """The record of an answer about to be sent, so feedback on it can never miss it; with
        its tokens charged to the key's budgets in the same transaction."""
        key, now = f"{tenant}:{request_id}", time.time()
        async with _failures("open"), self.client.pipeline(transaction=True) as pipe:
            pipe.hset(_answer(key), mapping=_encodable({**fields, "created": now}))
            pipe.expire(_answer(key), self.retention_s)
            if experiment := str(fields.get("experiment", "")):
                pipe.zadd(_experiment(experiment), {key: now})
                pipe.expire(_experiment(experiment), self.retention_s)
            _charged(pipe, tenant, charge, now)
            await pipe.execute()

    async def finished(
        self, tenant: str, request_id: str, fields: Mapping[str, str | float], charge: Charge | None = None
    ) -> None:
        async with _failures("finish"), self.client.pipeline(transaction=True) as pipe:
            pipe.hset(_answer(f"{tenant}:{request_id}"), mapping=_encodable(fields))
            _charged(pipe, tenant, charge, time.time())
            await pipe.execute()

    async def check_budgets(self, tenant: str, budgets: tuple[Budget, ...]) -> None:
        """Refuses the key once it has spent a budget in the window running now."""
        now = time.time()
        async with _failures("budget"):
            spent = await self.client.mget([_budget(tenant, budget, now) for budget in budgets])
        for budget, tokens in zip(budgets, spent, strict=True):
            budget.refuse_if_spent(int(tokens or 0), now)

    async def feedback(self, tenant: str, request_id: str, score: float, comment: str) -> Feedback:
        """Feedback on the key's own answer; another key's answer is as unknown as one never made."""
        async with _failures("feedback"):
            key = _answer(f"{tenant}:{request_id}")
            had, experiment, arm = await self._feedback(keys=[key], args=[score, comment, time.time()])
        if had == -1:
            raise NotFound("no answer with this id was made with this API key", param="id")
        return Feedback(bool(had), experiment, arm)

    async def records(self, experiment: str) -> list[dict[str, Any]]:
        """Every record of the experiment that is still kept, oldest first."""
        async with _failures("read"):
            keys = [str(key) for key in await self.client.zrange(_experiment(experiment), 0, -1)]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(_answer(key))
                found = await pipe.execute()
        # The id without the tenant: the report names no key.
        return [{**fields, "id": key.partition(":")[2]} for key, fields in zip(keys, found, strict=True) if fields]


def _charged(pipe: Pipeline, tenant: str, charge: Charge | None, now: float) -> None:
    if charge is None or not charge.tokens:
        return
    for budget in charge.budgets:
        key = _budget(tenant, budget, now)
        pipe.incrby(key, charge.tokens)
        pipe.expire(key, 2 * budget.seconds)


@asynccontextmanager
async def _failures(op: str) -> AsyncIterator[None]:
    """Redis's errors as ragft's: the store is an upstream like the others."""
    try:
        yield
    except (RedisError, OSError) as exc:
        STORE_ERRORS.labels(op).inc()
        raise UpstreamUnavailable(f"the store does not answer ({op}): {exc}") from exc


def _answer(request_id: str) -> str:
    return f"{PREFIX}answer:{request_id}"


def _experiment(name: str) -> str:
    return f"{PREFIX}experiment:{name}"


def _budget(tenant: str, budget: Budget, now: float) -> str:
    return f"{PREFIX}budget:{tenant}:{budget.window}:{budget.window_at(now)}"


def _encodable(fields: Mapping[str, str | float]) -> dict[EncodableT, EncodableT]:
    return dict(fields.items())
