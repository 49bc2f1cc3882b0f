"""The one per-request dependency of the gateway's API: the runtime, the caller (API key and rate
limit) and the deadline. One, so FastAPI solves a single dependency per request."""

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.access import Access
from gateway.runtime import Gateway


@dataclass(frozen=True, slots=True)
class Call:
    gateway: Gateway
    caller: Access
    tenant: str  # a fingerprint of the API key ("" without keys): what the store keeps, never the key
    deadline: float  # on the event loop's clock

    async def check_budgets(self) -> None:
        """Refuses a key that has spent one of its token budgets (a store is set whenever a key has one)."""
        if self.caller.budgets and self.gateway.store is not None:
            await self.gateway.store.check_budgets(self.tenant, self.caller.budgets)


async def admit_call(request: Request) -> Call:
    """Authenticates the caller, then counts the call against its rate limit: per API key, or
    per client address when the gateway has no keys."""
    gateway: Gateway = request.app.state.gateway
    key, access = gateway.settings.key_ring.admit(request.headers.get("authorization", ""))
    gateway.rate_limiter.take(key or (request.client.host if request.client else "unknown"))
    tenant = hashlib.blake2b(key.encode(), digest_size=8).hexdigest() if key else ""
    return Call(gateway, access, tenant, asyncio.get_running_loop().time() + gateway.settings.deadline_s)


# Every API route takes it: a route without it would answer without a key.
CallDep = Annotated[Call, Depends(admit_call)]
