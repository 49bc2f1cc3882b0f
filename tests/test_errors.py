"""The one reader of an error body (ragft.errors.error_message), as the gateway, the tools and
the commands meet error bodies."""

import json

import pytest

from ragft.errors import error_body, error_message


@pytest.mark.parametrize(
    ("body", "message", "typed"),
    [
        (error_body("not_found", "no such adapter"), "no such adapter", "not_found: no such adapter"),
        ({"object": "error", "type": "BadRequestError", "message": "bad"}, "bad", "BadRequestError: bad"),  # older vLLM
    ],
)
def test_ragfts_and_vllms_shapes_give_their_message(body: object, message: str, typed: str) -> None:
    raw = json.dumps(body)
    assert error_message(raw) == error_message(raw.encode()) == message
    assert error_message(raw, typed=True) == typed


@pytest.mark.parametrize(
    "raw", [b"Internal Server Error", b"\xff\xfe", b'{"detail": "Not Found"}', b'{"error": {"message": ""}}', b"[1]"]
)
def test_any_other_body_leaves_the_fallback_to_the_caller(raw: bytes) -> None:
    assert error_message(raw) is None
