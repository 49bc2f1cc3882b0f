"""The OpenAI-compatible API: chat completions on three routes, and the models behind them."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.gateway.chat import Plan, chat
from services.gateway.deps import DeadlineDep, GatewayDep, admit_caller
from services.gateway.schemas import ChatRequest

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(admit_caller)])


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request, gateway: GatewayDep, deadline: DeadlineDep) -> Response:
    """An OpenAI chat completion. `X-Ragft-Route` picks rag, finetuned or hybrid; `X-Ragft-Adapter`
    and `X-Ragft-Collection` pick the adapter and the knowledge base."""
    plan = Plan.from_headers(request.headers, gateway.settings)
    return await chat(body, plan, gateway, deadline)


@router.get("/models")
async def models(gateway: GatewayDep, deadline: DeadlineDep) -> Any:
    """The base model and every adapter the generation service serves."""
    return await gateway.models(deadline=deadline)
