"""ragft's names over the store's collections, kept in the store itself, and the rules for
changing them. The store reads and writes the catalog whole (services/retrieval/store/base.py)."""

from pydantic import BaseModel, Field

from ragft.errors import Conflict, InvalidRequest, NotFound
from services.retrieval.config import Backend
from services.retrieval.store.errors import CollectionNotFound


class Catalog(BaseModel):
    """ragft's names over the store's collections, kept in the store itself: aliases (the name
    clients use -> the collection it reads) and the embedding model each collection was built
    with (absent: the service's `RAGFT_EMBEDDING_MODEL`; "": the packaged all-MiniLM-L6-v2) and
    the backend that computes its vectors (absent: torch, which built every collection before),
    and the domains its answers may link to (absent: any its documents hold)."""

    aliases: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)
    backends: dict[str, Backend] = Field(default_factory=dict)
    allowed_domains: dict[str, list[str]] = Field(default_factory=dict)

    def with_alias(self, alias: str, collection: str, collections: list[str]) -> "tuple[Catalog, str | None]":
        """`alias` pointed at `collection`, and the collection the name read before, if any."""
        if collection == alias:
            raise InvalidRequest(
                f"an alias cannot read itself: delete alias {alias!r} to read collection {alias!r} again",
                param="collection",
            )
        if alias in self.aliases.values():
            raise InvalidRequest(f"collection {alias!r} is read through an alias: an alias cannot take its name")
        if collection in self.aliases:
            raise InvalidRequest(f"{collection!r} is an alias: name a collection", param="collection")
        if collection not in collections:
            raise CollectionNotFound(collection)
        was = self.aliases.get(alias, alias)
        return self.model_copy(update={"aliases": {**self.aliases, alias: collection}}), (
            was if was in collections else None
        )

    def without_alias(self, alias: str) -> "tuple[Catalog, str]":
        """The alias removed, and the collection it read."""
        if alias not in self.aliases:
            raise NotFound(f"no alias {alias!r}")
        remaining = {a: c for a, c in self.aliases.items() if a != alias}
        return self.model_copy(update={"aliases": remaining}), self.aliases[alias]

    def with_model(self, collection: str, model: str, backend: Backend) -> "Catalog":
        return self.model_copy(
            update={"models": {**self.models, collection: model}, "backends": {**self.backends, collection: backend}}
        )

    def with_allowed_domains(self, collection: str, domains: list[str]) -> "Catalog":
        return self.model_copy(update={"allowed_domains": {**self.allowed_domains, collection: domains}})

    def backend_of(self, collection: str) -> Backend:
        return self.backends.get(collection, "torch")

    def check_deletable(self, name: str) -> None:
        """A collection an alias reads is never deleted."""
        readers = sorted(alias for alias, collection in self.aliases.items() if collection == name)
        if readers:
            raise Conflict(
                f"collection {name!r} is read through alias {', '.join(map(repr, readers))}: "
                "point the alias elsewhere or delete it first"
            )

    def without_collection(self, name: str) -> "Catalog":
        """The catalog once `name` is deleted: its model, backend and domains forgotten."""
        return self.model_copy(
            update={
                "models": {c: m for c, m in self.models.items() if c != name},
                "backends": {c: b for c, b in self.backends.items() if c != name},
                "allowed_domains": {c: d for c, d in self.allowed_domains.items() if c != name},
            }
        )

    def not_found(self, name: str) -> NotFound:
        """What deleting `name`, which is no collection, reports."""
        if name in self.aliases:
            return NotFound(f"{name!r} is an alias of {self.aliases[name]!r}: delete the alias to remove it")
        return CollectionNotFound(name)
