"""The request limits that need the gateway's settings; the request schema checks the rest."""

from gateway.config import GatewaySettings
from gateway.schemas import ChatRequest
from ragft.errors import InvalidRequest, PayloadTooLarge


def check_limits(request: ChatRequest, settings: GatewaySettings) -> None:
    if len(request.messages) > settings.max_messages:
        raise PayloadTooLarge(
            f"{len(request.messages)} messages; the limit is {settings.max_messages}", param="messages"
        )
    for number, message in enumerate(request.messages):
        if len(message.text) > settings.max_message_chars:
            raise PayloadTooLarge(
                f"message {number} has {len(message.text)} characters; the limit is {settings.max_message_chars}",
                param=f"messages.{number}.content",
            )
    for name in ("max_tokens", "max_completion_tokens"):
        asked = getattr(request, name)
        if asked is not None and asked > settings.max_tokens_limit:
            raise InvalidRequest(f"{name} is {asked}; the limit is {settings.max_tokens_limit}", param=name)
