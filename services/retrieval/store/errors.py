"""The store's errors, in ragft's error tree: the service answers them in its error shape, and
the commands that open the store directly (`ragft reindex`) print them. So they name what to do in
the store's terms, never as an HTTP call."""

from ragft.errors import NotFound, UpstreamUnavailable


class CollectionNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist: create it first")


class StoreUnavailable(UpstreamUnavailable):
    """The vector store failed or cannot be reached; the request can be retried as is."""
