"""`POST /v1/compare`: one chat body answered on several routes at once, side by side. Each
route runs exactly as a chat completion on it would (limits, admission, metrics); one route
failing gives that route an error while the others still answer."""

import asyncio
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack
from typing import Any

from fastapi.responses import Response
from pydantic import Field
from starlette.datastructures import Headers

from gateway.chat import Completed, recorded_answer
from gateway.contract import ROUTE_HEADER, ROUTE_NAMES, Route
from gateway.deps import Call
from gateway.limits import check_limits
from gateway.plan import ROUTES, Plan
from gateway.record import answer_id
from gateway.runtime import Gateway
from gateway.schemas import ChatRequest
from gateway.stream import EventStream, Streamed
from ragft import sse
from ragft.errors import InvalidRequest, RagftError, UnknownRoute, UpstreamFailed, error_body
from ragft.web import FastJSONResponse


class CompareRequest(ChatRequest):
    routes: list[str] = Field(
        default_factory=lambda: [route.value for route in Route], min_length=1, max_length=len(ROUTE_NAMES)
    )

    def chat_request(self) -> ChatRequest:
        return ChatRequest.model_validate(self.model_dump(exclude={"routes"}, exclude_none=True))


def plans(body: CompareRequest, headers: Headers, gateway: Gateway, key_grounding: str | None = None) -> list[Plan]:
    """One plan per route asked for (auto too), each with the adapter, collection and grounding
    headers (the API key's grounding policy where none is sent)."""
    chosen = [name.strip().lower() for name in body.routes]
    if unknown := [name for name in chosen if name not in ROUTE_NAMES]:
        raise UnknownRoute(f"{unknown[0]!r} is not a route; use one of: {ROUTES}", param="routes")
    if len(set(chosen)) < len(chosen):
        raise InvalidRequest(f"routes {body.routes} name a route twice", param="routes")
    asking = headers.mutablecopy()
    routes = []
    for name in chosen:
        asking[ROUTE_HEADER] = name
        routes.append(Plan.from_headers(asking, gateway.settings, key_grounding=key_grounding))
    return routes


async def compare(body: CompareRequest, headers: Headers, call: Call) -> Response:
    request = body.chat_request()
    check_limits(request, call.gateway.settings)  # once: a request over a limit fails as a whole
    await call.check_budgets()  # once too; every route's tokens are charged
    routes = plans(body, headers, call.gateway, call.caller.grounding)
    if request.stream:  # each route's stream holds its own slot and upstream response
        return EventStream(_merged(request, routes, call), AsyncExitStack(), headers={})
    results = await asyncio.gather(*(_one(request, plan, call) for plan in routes))
    return FastJSONResponse({"object": "ragft.comparison", "results": results})


async def _one(request: ChatRequest, plan: Plan, call: Call) -> dict[str, Any]:
    """A route's answer (`id`: what feedback names it by), sources, timing and tokens; or its
    error, in the error shape."""
    recorded_as = answer_id(plan.asked)
    try:
        answered = await recorded_answer(request, plan, call, recorded_as)
    except RagftError as exc:
        return {"route": plan.asked, "status": exc.status_code, **error_body(exc.type, exc.message, exc.param)}
    assert isinstance(answered, Completed)
    completion = answered.completion
    usage = completion.get("usage") or {}
    return {
        "route": plan.asked,
        "id": recorded_as,
        "status": 200,
        "answered_as": answered.plan.route.value,
        "answer": completion["choices"][0]["message"]["content"],  # checked: gateway.schemas.ChatCompletion
        "model": completion["model"],
        "ragft": completion["ragft"],
        "timing": answered.timing.ms,
        "usage": {kind: usage.get(kind) for kind in ("prompt_tokens", "completion_tokens")},
    }


async def _merged(request: ChatRequest, routes: list[Plan], call: Call) -> AsyncGenerator[bytes]:
    """Every route's stream as it arrives, each event tagged with its route: at its first token
    `{"route", "id", "answered_as", "timing"}` (retrieve and ttft so far), then `{"route", "chunk"}`,
    or `{"route", "error"}`; when a route's stream ends, `{"route", "done": true}`; then
    `[DONE]`. Leaving early (a client that disconnects) stops every route's generation."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def relay(plan: Plan) -> None:
        route, recorded_as = plan.asked, answer_id(plan.asked)
        try:
            try:
                answered = await recorded_answer(request, plan, call, recorded_as)
            except RagftError as exc:
                await queue.put(_tagged(route, error_body(exc.type, exc.message, exc.param)))
                return
            assert isinstance(answered, Streamed)
            started = {"id": recorded_as, "answered_as": answered.plan.route.value, "timing": dict(answered.timing.ms)}
            await queue.put(_tagged(route, started))
            try:
                async for event in answered.events:
                    if event != sse.DONE:
                        await queue.put(_tagged(route, _payload(event)))
            finally:
                await answered.events.aclose()
                await answered.held.aclose()  # a no-op when the events closed it
        finally:
            await queue.put(_tagged(route, {"done": True}))
            await queue.put(None)

    tasks = [asyncio.create_task(relay(plan)) for plan in routes]
    try:
        running = len(tasks)
        while running:
            event = await queue.get()
            if event is None:
                running -= 1
            else:
                yield event
        yield sse.DONE
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _payload(event: bytes) -> dict[str, Any]:
    """A route's event for the merged stream: its error, or the chunk."""
    try:
        payload = sse.decode(event)
    except ValueError:
        message = f"the generation service sent an event that is not JSON: {event[:100]!r}"
        return error_body(UpstreamFailed.type, message)
    return payload if "error" in payload else {"chunk": payload}


def _tagged(route: str, payload: dict[str, Any]) -> bytes:
    return sse.encode({"route": route, **payload})
