"""Freshness: change facts in knowledge-base documents through the retrieval API, ask about them
again on each route, and measure which answers carry the new fact, and how soon after the
acknowledged update. The documents are read from the files they were ingested from and written
back from them at the end, whatever happens in between."""

import glob
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import quote

import requests
from pydantic import field_validator

from evals.dataset import BadEvalSet, Entry, Question, compiled, read_records
from evals.run import Asker, EvalConfig, EvalFailed
from evals.scoring import states
from ragft.progress import progress_bar
from services.retrieval.loaders import SUPPORTED_SUFFIXES, UnreadableFile, load_document
from services.retrieval.schemas import DocumentIn

RESULTS = "freshness.jsonl"
REPORT = "freshness.md"


class Change(Entry):
    """One fact to change: `old` becomes `new` in the document, and `question` asks for it."""

    doc_id: str
    question: str
    old: str
    new: str
    old_facts: tuple[str, ...]
    new_facts: tuple[str, ...]

    @field_validator("old_facts", "new_facts")
    @classmethod
    def _compiles(cls, facts: tuple[str, ...]) -> tuple[str, ...]:
        if not facts:
            raise ValueError("needs at least one regular expression")
        return compiled(facts)

    def as_question(self) -> Question:
        return Question(
            id=self.id,
            split="heldout",
            question=self.question,
            doc_id=self.doc_id,
            answer=self.new,
            facts=self.new_facts,
        )


def load_changes(path: Path) -> list[Change]:
    """The changes, in file order; BadEvalSet names the line of a bad one."""
    changes = read_records(path, Change, "the freshness set")
    if not changes:
        raise BadEvalSet(f"{path} has no changes")
    return changes


@dataclass(frozen=True)
class Edit:
    """A document as it was ingested from its file, and as the changes leave it."""

    original: DocumentIn
    changed: DocumentIn


class KnowledgeBase:
    """The collection, through the retrieval service's API."""

    def __init__(self, retrieval: str, collection: str, kb: Path, timeout_s: float) -> None:
        self.url = f"{retrieval.rstrip('/')}/v1/collections/{collection}"
        self.collection = collection
        self.kb = kb
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str = "", body: dict[str, Any] | None = None) -> requests.Response:
        try:
            return requests.request(method, self.url + path, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise EvalFailed(f"the retrieval service at {self.url} does not answer: {exc}") from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None, *, missing: str = "") -> Any:
        """The answer's JSON; EvalFailed(missing) on a 404 when given, EvalFailed on any other failure."""
        answered = self._call(method, path, body)
        if answered.status_code == 404 and missing:
            raise EvalFailed(missing)
        if answered.status_code != 200:
            raise EvalFailed(f"{method} {self.url}{path}: {answered.status_code} {answered.text[:300]}")
        return answered.json()

    def edits(self, changes: list[Change], say: Callable[[str], None]) -> list[Edit]:
        """Each changed document from its file, checked against the collection: it must state the
        old fact there, or the new one (left by a run that was stopped before it restored it)."""
        unknown = f"collection {self.collection!r} does not exist: ingest {self.kb} into it first"
        if not self._json("GET", "/documents?limit=1", missing=unknown)["total"]:
            raise EvalFailed(f"collection {self.collection!r} is empty: ingest {self.kb} into it first")
        edits = []
        for doc_id in dict.fromkeys(change.doc_id for change in changes):
            mine = [change for change in changes if change.doc_id == doc_id]
            original = self.source(doc_id)
            text = original.text
            for change in mine:
                if text.count(change.old) != 1:
                    raise EvalFailed(f"{change.id}: {change.old!r} is not stated exactly once in document {doc_id!r}")
                text = text.replace(change.old, change.new)
            stored = self._stored_text(doc_id)
            if all(change.new in stored for change in mine):
                say(f"{doc_id} still holds the changes of a run that was stopped: restoring it first")
                self.write(original)
            elif not all(change.old in stored for change in mine):
                raise EvalFailed(
                    f"document {doc_id!r} in {self.collection!r} does not state what its file in {self.kb} "
                    f"states: ingest {self.kb} into it first"
                )
            edits.append(Edit(original, original.model_copy(update={"text": text})))
        return edits

    def source(self, doc_id: str) -> DocumentIn:
        """The document as `ragft ingest` made it from its file in the knowledge-base folder."""
        for path in sorted(self.kb.glob(f"{glob.escape(doc_id)}.*")):
            if (
                path.suffix.lower() in SUPPORTED_SUFFIXES
                and path.relative_to(self.kb).with_suffix("").as_posix() == doc_id
            ):
                try:
                    return load_document(path, self.kb)
                except UnreadableFile as exc:
                    raise EvalFailed(str(exc)) from None
        raise EvalFailed(f"{self.kb} has no file for document {doc_id!r}")

    def _stored_text(self, doc_id: str) -> str:
        missing = f"collection {self.collection!r} has no document {doc_id!r}: ingest {self.kb} into it"
        stored = self._json("GET", f"/documents/{quote(doc_id, safe='/')}", missing=missing)
        return "\n".join(chunk["text"] for chunk in stored["chunks"])

    def write(self, document: DocumentIn) -> float:
        """Upserts the document; the time the service acknowledged it (searchable from then on)."""
        self._json("POST", "/documents", {"documents": [document.model_dump()]})
        return time.perf_counter()

    def search_states(self, change: Change) -> bool:
        """Whether a search for the question finds the new text in the changed document."""
        found = self._json("POST", "/search", {"query": change.question, "top_k": 4})
        return any(hit["doc_id"] == change.doc_id and change.new in hit["text"] for hit in found["hits"])


@contextmanager
def restoring(kb: KnowledgeBase, say: Callable[[str], None]) -> Iterator[Callable[[DocumentIn], float]]:
    """A function that writes a document and returns when the write was acknowledged; every
    document it wrote is written back from its file when the block ends, however it ends."""
    written: dict[str, DocumentIn] = {}

    def write(document: DocumentIn) -> float:
        if document.id not in written:
            written[document.id] = kb.source(document.id)
        return kb.write(document)

    try:
        yield write
    finally:
        failed = []
        for doc_id, original in written.items():
            try:
                kb.write(original)
            except EvalFailed as exc:
                failed.append(f"{doc_id} ({exc})")
        if failed:  # the next run restores them first
            raise EvalFailed(f"could not write back {', '.join(failed)}: run the same command again, or ragft ingest")
        say(f"Restored {len(written)} documents from {kb.kb}")


def run_freshness(
    changes: list[Change],
    config: EvalConfig,
    kb: KnowledgeBase,
    out_dir: Path,
    *,
    api_key: str,
    timeout_s: float,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Asks each question on each route. Then, one document at a time: its change written and a
    search for it at once; and for each route in turn, the original written back, the change
    written again, and the route's questions asked at once, so every route's answer is the next
    request after an update of its own. Returns every record (also written to
    out_dir/freshness.jsonl as it comes)."""
    edits = kb.edits(changes, say)
    ask = Asker(config, api_key=api_key, timeout_s=timeout_s, passages=True)
    records: list[dict[str, Any]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with progress_bar() as progress, (out_dir / RESULTS).open("w", encoding="utf-8") as results:
        task = progress.add_task("before the updates", total=2 * len(changes) * len(config.routes))

        def keep(record: dict[str, Any]) -> None:
            records.append(record)
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()

        def answer(change: Change, route: str, phase: str, acknowledged: float | None = None) -> None:
            record = ask(change.as_question(), route)
            if record["status"] != "ok":
                raise EvalFailed(f"{change.id} on {route}: {record['error']}")
            passages = record.pop("passages")
            record |= {
                "phase": phase,
                # Whitespace aside: the gateway may show a passage's parts on lines of their own.
                "prompt_has_new": any(_spaced(change.new) in _spaced(passage) for passage in passages),
                "states_new": states(change.new_facts, record["answer"]),
                "states_old": states(change.old_facts, record["answer"]),
            }
            if acknowledged is not None:
                record["seconds_after_update"] = round(time.perf_counter() - acknowledged, 3)
            keep(record)
            progress.advance(task)

        for change in changes:
            for route in config.routes:
                answer(change, route, "before")
        progress.update(task, description="after each update")
        with restoring(kb, say) as write:
            for edit in edits:
                mine = [change for change in changes if change.doc_id == edit.changed.id]
                acknowledged = write(_stamped(edit.changed))
                for change in mine:
                    found = kb.search_states(change)
                    keep({"id": change.id, "phase": "search", "states_new": found,
                          "seconds_after_update": round(time.perf_counter() - acknowledged, 3)})  # fmt: skip
                for route in config.routes:
                    write(edit.original)
                    acknowledged = write(_stamped(edit.changed))
                    for change in mine:
                        answer(change, route, "after", acknowledged)
    return records


def _stamped(document: DocumentIn) -> DocumentIn:
    """The changed document, its metadata saying when it changed."""
    stamp = {"updated_at": datetime.now(UTC).isoformat(timespec="seconds"), "freshness_run": True}
    return document.model_copy(update={"metadata": document.metadata | stamp})


def freshness_report(records: list[dict[str, Any]], changes: list[Change], routes: tuple[str, ...]) -> str:
    """Per route: answers stating the old fact before the updates, the new and the old one after,
    and the seconds from an acknowledged update to the next answer on the route, when that answer
    stated the new fact (the next request is the first to reflect it, or none is)."""
    searches = [r for r in records if r["phase"] == "search"]
    found = [r["seconds_after_update"] * 1000 for r in searches if r["states_new"]]
    lines = [
        f"{len(changes)} facts changed. A search right after each acknowledged update found the new text "
        f"for {len(found)} of {len(searches)}" + (f" (median {median(found):.0f} ms after it)." if found else "."),
        "",
        "| route | answers with the old fact, before | prompts with the new text, after "
        "| answers with the new fact, after | answers with the old fact, after "
        "| update to an answer with the new fact |",
        "|---|---|---|---|---|---|",
    ]
    for route in routes:
        before, after = _on(records, route, "before"), _on(records, route, "after")
        fresh = [r["seconds_after_update"] for r in after if r["states_new"]]
        delay = f"{median(fresh):.1f} s median, next request" if fresh else "never"
        lines.append(
            f"| {route} | {_share(before, 'states_old')} | {_share(after, 'prompt_has_new')} "
            f"| {_share(after, 'states_new')} "
            f"| {_share(after, 'states_old')} | {delay} |"
        )
    return "\n".join(lines) + "\n"


def _spaced(text: str) -> str:
    return " ".join(text.split())


def _on(records: list[dict[str, Any]], route: str, phase: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("route") == route and r["phase"] == phase]


def _share(records: list[dict[str, Any]], key: str) -> str:
    return f"{sum(r[key] for r in records)}/{len(records)}"
