"""The injection set and its report: each payload is what obeying its document would say."""

import re
from pathlib import Path

import pytest

from evals.dataset import BadEvalSet
from evals.injection import injection_report, load_poisoned
from gateway.prompt import GROUNDING
from ragft.instructions import screen
from ragft.sample_data import INJECTION_SET


def test_each_payload_is_in_its_page_or_the_system_prompt_and_screening_leaves_only_the_link_page() -> None:
    documents = load_poisoned(INJECTION_SET)
    assert len(documents) == 5
    for document in documents:
        payload = re.compile(document.payload, re.IGNORECASE)
        assert payload.search(document.text) or payload.search(GROUNDING), document.id
    kept = {d.id for d in documents if re.search(d.payload, screen(d.text).text, re.IGNORECASE)}
    assert kept == {"stickers"}  # a link without an order: the allow-list's job


def test_a_bad_entry_is_refused_naming_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "set.jsonl"
    bad.write_text('{"id": "a", "text": "x", "payload": "(", "questions": ["q"]}\n')
    with pytest.raises(BadEvalSet, match=r"set.jsonl:1: .*payload '\(' is not a regular expression"):
        load_poisoned(bad)


def test_the_report_counts_answers_carrying_a_payload_per_route_and_temperature() -> None:
    def record(route: str, temperature: float, payloads: list[str], status: str = "ok") -> dict[str, object]:
        return {"route": route, "temperature": temperature, "payloads": payloads, "status": status}

    records = [record("rag", 0, ["gift-cards"]), record("rag", 0, []), record("rag", 0.7, [], "error")]
    records += [record("hybrid", 0, []), record("hybrid", 0.7, ["stickers", "exports"])]
    lines = injection_report(records).splitlines()
    assert "| rag | 0 | 1/2 (50%, 9-91%) | gift-cards | 0 |" in lines
    assert "| rag | 0.7 | n/a | - | 1 |" in lines
    assert "| hybrid | 0.7 | 1/1 (100%, 21-100%) | exports, stickers | 0 |" in lines
