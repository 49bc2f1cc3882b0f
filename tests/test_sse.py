"""ragft.sse, the one SSE codec: what it writes reads back, line by line or event by event."""

import pytest

from ragft import sse


def test_an_event_reads_back_whole_or_line_by_line() -> None:
    event = sse.encode({"choices": [{"delta": {"content": "héllo"}}]})
    assert event.startswith(b"data: {") and event.endswith(b"\n\n") and b" " not in event[6:]
    assert sse.decode(event) == {"choices": [{"delta": {"content": "héllo"}}]}
    lines = [*event.decode().split("\n"), ": a comment", *sse.DONE.decode().split("\n")]
    assert sse.events(lines) == [{"choices": [{"delta": {"content": "héllo"}}]}, "[DONE]"]
    assert sse.data(b"data:[DONE]") == sse.DONE_DATA and sse.data("") is None


@pytest.mark.parametrize("event", [b": keep-alive\n\n", b"data: <html>\n\n"])
def test_an_event_without_json_is_a_value_error(event: bytes) -> None:
    with pytest.raises(ValueError):
        sse.decode(event)
