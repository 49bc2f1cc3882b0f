"""`ragft freshness` against the real retrieval service and a real gateway, on a collection made
here from the sample knowledge base's files. vLLM is the scripted stand-in answering with its
prompt (a model that copies its passages), so what is measured is whether the updated passage
reaches the prompt on the next request; the real model's answers are in the README's freshness table."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evals.dataset import BadEvalSet
from evals.freshness import Change, KnowledgeBase, freshness_report, load_changes, run_freshness
from evals.run import EvalConfig, EvalFailed
from evals.scoring import states
from ragft.sample_data import FRESHNESS_SET, SAMPLE_KB
from tests.gateway.scripted_vllm import Answer, Fail, ScriptedVllm, scripted_vllm
from tests.utils.processes import Processes

KB = SAMPLE_KB
CHANGES = load_changes(FRESHNESS_SET)[:3]
ROUTES = ("rag", "finetuned")


@pytest.fixture
def collection(retrieval_url: str) -> Iterator[str]:
    """The changed documents' files, ingested into a collection of their own."""
    name = f"fresh-{uuid.uuid4().hex[:8]}"
    sources = KnowledgeBase("", name, KB, timeout_s=60)
    documents = [sources.source(doc_id).model_dump() for doc_id in {change.doc_id for change in CHANGES}]
    assert httpx.put(f"{retrieval_url}/v1/collections/{name}", timeout=60).status_code in (200, 201)
    stored = httpx.post(f"{retrieval_url}/v1/collections/{name}/documents", json={"documents": documents}, timeout=120)
    assert stored.status_code == 200, stored.text
    yield name
    httpx.delete(f"{retrieval_url}/v1/collections/{name}", timeout=60)


@pytest.fixture
def stack(processes: Processes, tmp_path: Path, retrieval_url: str) -> Iterator[tuple[str, ScriptedVllm]]:
    with (
        scripted_vllm(Answer(echo=True)) as vllm,
        processes.gateway(tmp_path, None, RAGFT_GENERATION_URL=vllm.url, RAGFT_RETRIEVAL_URL=retrieval_url) as (url, _),
    ):
        yield url, vllm


def _stored(retrieval_url: str, collection: str, doc_id: str) -> str:
    got = httpx.get(f"{retrieval_url}/v1/collections/{collection}/documents/{doc_id}", timeout=60)
    return "\n".join(chunk["text"] for chunk in got.json()["chunks"])


def _run(url: str, kb: KnowledgeBase, out: Path) -> list[dict[str, object]]:
    config = EvalConfig(url, "freshness.jsonl", ROUTES, max_tokens=64, collection=kb.collection)
    return run_freshness(CHANGES, config, kb, out, api_key="", timeout_s=60)


def test_rag_answers_from_the_updated_fact_on_the_next_request_and_the_documents_come_back(
    stack: tuple[str, ScriptedVllm], retrieval_url: str, collection: str, tmp_path: Path
) -> None:
    url, _ = stack
    records = _run(url, KnowledgeBase(retrieval_url, collection, KB, timeout_s=60), tmp_path / "out")

    def states(route: str, phase: str, key: str) -> list[bool]:
        return [bool(r[key]) for r in records if r.get("route") == route and r["phase"] == phase]

    assert states("rag", "before", "states_old") == [True] * len(CHANGES)
    assert states("rag", "after", "states_new") == [True] * len(CHANGES)
    assert states("rag", "after", "states_old") == [False] * len(CHANGES)
    assert not any(states("finetuned", "after", "states_new"))  # no retrieval: the update cannot reach it
    assert all(r["states_new"] for r in records if r["phase"] == "search")
    assert len((tmp_path / "out" / "freshness.jsonl").read_text().splitlines()) == len(records)

    report = freshness_report(records, CHANGES, ROUTES)
    all_, none = f"{len(CHANGES)}/{len(CHANGES)}", f"0/{len(CHANGES)}"
    assert f"| rag | {all_} | {all_} | {all_} | {none} |" in report
    assert f"| finetuned | {none} | {none} | {none} | {none} | never |" in report
    for change in CHANGES:
        restored = _stored(retrieval_url, collection, change.doc_id)
        assert change.old in restored and change.new not in restored


def test_a_run_that_fails_after_an_update_still_restores_the_document(
    stack: tuple[str, ScriptedVllm], retrieval_url: str, collection: str, tmp_path: Path
) -> None:
    url, vllm = stack
    # Every answer before the updates, then a refusal on the first question after the first one.
    vllm.script.extend([Answer(echo=True)] * (len(CHANGES) * len(ROUTES)) + [Fail(400)])
    with pytest.raises(EvalFailed, match="400"):
        _run(url, KnowledgeBase(retrieval_url, collection, KB, timeout_s=60), tmp_path / "out")
    assert vllm.calls == len(CHANGES) * len(ROUTES) + 1  # the refusal came after the first update
    first = CHANGES[0]
    restored = _stored(retrieval_url, collection, first.doc_id)
    assert first.old in restored and first.new not in restored


def test_a_document_left_changed_by_a_stopped_run_is_restored_first(
    retrieval_url: str, collection: str, tmp_path: Path
) -> None:
    kb = KnowledgeBase(retrieval_url, collection, KB, timeout_s=60)
    left = kb.edits(CHANGES, print)[0]
    kb.write(left.changed)  # what a run killed between its update and its restore leaves
    said: list[str] = []
    kb.edits(CHANGES, said.append)
    assert said == [f"{left.original.id} still holds the changes of a run that was stopped: restoring it first"]
    assert CHANGES[0].old in _stored(retrieval_url, collection, left.original.id)


def test_an_unknown_empty_or_foreign_collection_is_refused_before_anything_changes(
    retrieval_url: str, tmp_path: Path
) -> None:
    with pytest.raises(EvalFailed, match="collection 'no-such-thing' does not exist"):
        KnowledgeBase(retrieval_url, "no-such-thing", KB, timeout_s=60).edits(CHANGES, print)
    empty = f"empty-{uuid.uuid4().hex[:8]}"
    httpx.put(f"{retrieval_url}/v1/collections/{empty}", timeout=60)
    try:
        with pytest.raises(EvalFailed, match=f"collection '{empty}' is empty"):
            KnowledgeBase(retrieval_url, empty, KB, timeout_s=60).edits(CHANGES, print)
        # A collection that holds other text under the same id is not written over.
        other = {"id": CHANGES[0].doc_id, "text": "Something else entirely."}
        httpx.post(f"{retrieval_url}/v1/collections/{empty}/documents", json={"documents": [other]}, timeout=60)
        with pytest.raises(EvalFailed, match="does not state what"):
            KnowledgeBase(retrieval_url, empty, KB, timeout_s=60).edits(CHANGES[:1], print)
        assert _stored(retrieval_url, empty, CHANGES[0].doc_id) == "Something else entirely."
    finally:
        httpx.delete(f"{retrieval_url}/v1/collections/{empty}", timeout=60)


def test_the_freshness_set_is_checked_line_by_line(tmp_path: Path) -> None:
    good = CHANGES[0].model_dump()
    bad = tmp_path / "changes.jsonl"
    bad.write_text(json.dumps(good) + "\n" + json.dumps(good | {"new_facts": ["(unclosed"]}) + "\n")
    with pytest.raises(BadEvalSet, match=r"changes\.jsonl:2: .*new_facts"):
        load_changes(bad)
    bad.write_text(json.dumps(good) + "\n\n" + json.dumps(good) + "\n")
    with pytest.raises(BadEvalSet, match=rf"changes\.jsonl:3: the id '{good['id']}' is used twice"):
        load_changes(bad)


def test_every_change_in_the_set_states_its_facts_and_not_the_others() -> None:
    sources = KnowledgeBase("", "help-center", KB, timeout_s=60)
    for change in load_changes(FRESHNESS_SET):
        assert isinstance(change, Change)
        assert states(change.old_facts, change.old) and not states(change.old_facts, change.new)
        assert states(change.new_facts, change.new) and not states(change.new_facts, change.old)
        assert sources.source(change.doc_id).text.count(change.old) == 1
