"""`ragft reindex`: a collection's chunks re-embedded by another model into a new collection,
then the name clients use switched to it by an alias in one step.

Searches keep reading the old collection until the switch and the new one after it, so none
finds a half-built index. The old collection stays until someone deletes it, and a failure
before the switch leaves the name as it was."""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ragft.errors import UserFacingError
from services.retrieval.client import checked, document_summaries


class ReindexError(UserFacingError):
    pass


@dataclass(frozen=True)
class Reindexed:
    name: str
    source: str  # the collection the name read before; kept
    target: str
    documents: int
    chunks: int
    seconds: float


def default_target(name: str, model: Path) -> str:
    """`<name>-<model folder>`, in the letters a collection name allows."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", model.name).strip("-")
    return f"{name}-{slug}"[:64]


def _collections(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {info["name"]: info for info in checked(client.get("/v1/collections")).json()["collections"]}


def reindex(
    client: httpx.Client,
    name: str,
    model: Path,
    target: str,
    *,
    replace: bool = False,
    batch_size: int = 64,
    on_total: Callable[[int], None] = lambda total: None,
    on_documents: Callable[[int], None] = lambda done: None,
) -> Reindexed:
    started = time.perf_counter()
    listed = _collections(client)
    if name not in listed:
        raise ReindexError(f"collection {name!r} does not exist")
    source = listed[name]["alias_of"] or name
    if not listed[name]["documents"]:
        raise ReindexError(f"collection {name!r} is empty: nothing to reindex")
    if target in (name, source):
        raise ReindexError(f"{target!r} is the collection being reindexed: choose another --into")
    if target in listed:
        if listed[target]["alias_of"]:
            raise ReindexError(f"{target!r} is an alias of {listed[target]['alias_of']!r}: choose another --into")
        if not replace:
            raise ReindexError(f"collection {target!r} exists: pass --replace to rebuild it, or choose another --into")
        checked(client.delete(f"/v1/collections/{target}"))  # refused while an alias reads it
    checked(client.put(f"/v1/collections/{target}", json={"embedding_model": str(model)}))
    ids = [summary["id"] for summary in document_summaries(client, source)]
    on_total(len(ids))
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        checked(client.post(f"/v1/collections/{target}/copy", json={"source": source, "ids": batch}))
        on_documents(len(batch))
    now = _collections(client)
    built, current = now.get(target), now.get(name)
    unchanged = (
        current is not None and (current["alias_of"] or name) == source and current["chunks"] == listed[name]["chunks"]
    )
    if not (unchanged and [s["id"] for s in document_summaries(client, source)] == ids):
        raise ReindexError(
            f"{name!r} changed during the reindex: it still reads {source!r}; "
            "run again with --replace when writes have stopped"
        )
    if built is None or (built["documents"], built["chunks"]) != (len(ids), listed[name]["chunks"]):
        raise ReindexError(
            f"{target!r} does not hold every document and chunk of {source!r}: {name!r} still reads {source!r}"
        )
    checked(client.put(f"/v1/aliases/{name}", json={"collection": target}))
    return Reindexed(name, source, target, len(ids), built["chunks"], time.perf_counter() - started)
