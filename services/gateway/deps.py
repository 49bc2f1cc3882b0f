"""Per-request dependencies: the gateway runtime, the caller (API key and rate limit), and the deadline."""

import asyncio
import secrets
from typing import Annotated

from fastapi import Depends, Request

from ragft.errors import Unauthorized
from services.gateway.runtime import Gateway


async def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def admit_caller(request: Request, gateway: GatewayDep) -> None:
    """Authenticates the caller, then counts the call against its rate limit: per API key, or
    per client address when the gateway has no keys."""
    key = _api_key(request, gateway.settings.keys)
    gateway.rate_limiter.take(key or (request.client.host if request.client else "unknown"))


def _api_key(request: Request, keys: frozenset[str]) -> str | None:
    """With RAGFT_API_KEYS set, every API call needs `Authorization: Bearer KEY`."""
    if not keys:
        return None
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("this gateway needs an API key: send Authorization: Bearer KEY")
    offered = key.strip().encode()
    # Compare with every key, so the time taken says nothing about which one nearly matched.
    if not sum(secrets.compare_digest(offered, known.encode()) for known in keys):
        raise Unauthorized("the API key is not valid")
    return offered.decode()


async def _deadline(gateway: GatewayDep) -> float:
    return asyncio.get_running_loop().time() + gateway.settings.deadline_s


DeadlineDep = Annotated[float, Depends(_deadline)]
