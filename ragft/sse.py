"""Server-sent events as OpenAI's streaming API uses them: each event one `data: <JSON>` line
and a blank line, the stream ended by `data: [DONE]`. Written and read here only."""

import json
from collections.abc import Iterable
from typing import Any

import pydantic_core

DONE = b"data: [DONE]\n\n"
DONE_DATA = b"[DONE]"


def encode(payload: dict[str, Any]) -> bytes:
    """One event, its JSON compact (pydantic-core's encoder: 4x the standard library's)."""
    return b"data: " + pydantic_core.to_json(payload) + b"\n\n"


def data(line: bytes | str) -> bytes | None:
    """The data of an event, or of one line of a stream read line by line; None for a line
    that carries none (a blank line, a comment)."""
    raw = line.encode() if isinstance(line, str) else line
    return raw[5:].strip() if raw.startswith(b"data:") else None


def decode(event: bytes | str) -> Any:
    """The JSON an event carries. Raises ValueError when it carries none, or no JSON."""
    found = data(event)
    if found is None:
        raise ValueError(f"not a data event: {event[:100]!r}")
    return json.loads(found)


def events(lines: Iterable[bytes | str]) -> list[Any]:
    """A whole stream's events in order, read line by line: each one's JSON, and DONE_DATA as
    the string "[DONE]"."""
    found = [d for line in lines if (d := data(line)) is not None]
    return [d.decode() if d == DONE_DATA else json.loads(d) for d in found]
