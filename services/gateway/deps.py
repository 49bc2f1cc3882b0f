"""Per-request dependencies: the gateway runtime, the caller's API key, and the deadline."""

import asyncio
import secrets
from typing import Annotated

from fastapi import Depends, Request

from ragft.errors import Unauthorized
from services.gateway.runtime import Gateway


async def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def require_api_key(request: Request, gateway: GatewayDep) -> None:
    """With RAGFT_API_KEYS set, every API call needs `Authorization: Bearer KEY`."""
    keys = gateway.settings.keys
    if not keys:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("this gateway needs an API key: send Authorization: Bearer KEY")
    offered = key.strip().encode()
    # Compare with every key, so the time taken says nothing about which one nearly matched.
    if not sum(secrets.compare_digest(offered, known.encode()) for known in keys):
        raise Unauthorized("the API key is not valid")


async def _deadline(gateway: GatewayDep) -> float:
    return asyncio.get_running_loop().time() + gateway.settings.deadline_s


DeadlineDep = Annotated[float, Depends(_deadline)]
