"""Per-request dependencies: the gateway runtime, the caller (API key and rate limit), and the deadline."""

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from gateway.access import Access
from gateway.runtime import Gateway


async def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def admit_caller(request: Request, gateway: GatewayDep) -> Access:
    """Authenticates the caller, then counts the call against its rate limit: per API key, or
    per client address when the gateway has no keys. FastAPI runs it once per request, so the
    routes that need the caller's rights get the same answer."""
    key, access = gateway.settings.key_ring.admit(request.headers.get("authorization", ""))
    gateway.rate_limiter.take(key or (request.client.host if request.client else "unknown"))
    return access


CallerDep = Annotated[Access, Depends(admit_caller)]


async def _deadline(gateway: GatewayDep) -> float:
    return asyncio.get_running_loop().time() + gateway.settings.deadline_s


DeadlineDep = Annotated[float, Depends(_deadline)]
