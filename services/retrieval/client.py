"""The retrieval API as commands call it: failures in the service's own words, and a
collection's documents page by page."""

from collections.abc import Iterator
from typing import Any

import httpx

from ragft.errors import UserFacingError, error_message

PAGE = 1000


class RetrievalCallFailed(UserFacingError):
    """A call answered an error; the message names the call and gives the service's reason."""


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    message = error_message(response.content) or response.text[:300]
    request = response.request
    raise RetrievalCallFailed(f"{request.method} {request.url.path}: {response.status_code} {message}")


def document_summaries(client: httpx.Client, collection: str) -> Iterator[dict[str, Any]]:
    """`{id, title, metadata}` of each of the collection's documents, by id."""
    offset = 0
    while True:
        page = client.get(f"/v1/collections/{collection}/documents", params={"offset": offset, "limit": PAGE})
        if page.status_code == 404:
            raise RetrievalCallFailed(f"collection {collection!r} does not exist")
        listed = checked(page).json()
        yield from listed["documents"]
        offset += len(listed["documents"])
        if not listed["documents"] or offset >= listed["total"]:
            return
