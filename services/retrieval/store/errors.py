"""The store's errors, in ragft's error tree: the service answers them in its error shape."""

from ragft.errors import NotFound, UpstreamUnavailable


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist (create it with PUT /v1/collections/{name})")


class StoreUnavailable(UpstreamUnavailable):
    """The vector store failed or cannot be reached; the request can be retried as is."""
