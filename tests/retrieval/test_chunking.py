"""Chunking and point ids, with the real embedding model's tokenizer."""

import itertools

import pytest

from services.retrieval.chunking import Chunk, Chunker, chunk_id, document_title, point_id
from services.retrieval.embedding import Embedder


@pytest.fixture(scope="module")
def tokenizer():
    return Embedder().tokenizer


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_chunks_stay_within_the_token_budget_and_overlap(tokenizer) -> None:
    sentences = [f"Sentence number {i} says that plan {i} costs {i * 3} euros per seat." for i in range(120)]
    text = "# Pricing\n\n" + " ".join(sentences)
    chunks = Chunker(tokenizer, max_tokens=60, overlap=15).split("pricing", text, {})
    assert len(chunks) > 5
    assert all(_tokens(tokenizer, c.text) <= 60 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # Overlap: consecutive chunks share text, so a fact cut at a boundary survives in one of them.
    # (The heading is a chunk of its own: the body that follows does not fit beside it.)
    body = chunks[1:]
    overlapping = sum(1 for a, b in itertools.pairwise(body) if b.text.startswith(a.text.split(". ")[-1]))
    assert overlapping == len(body) - 1
    # Nothing is lost: every sentence number appears in some chunk.
    joined = " ".join(c.text for c in chunks)
    assert all(f"Sentence number {i} " in joined for i in range(120))


def test_short_document_is_one_chunk_and_carries_its_title(tokenizer) -> None:
    chunks = Chunker(tokenizer, max_tokens=200, overlap=20).split("d", "# Refunds\n\nRefunds take 5 days.", {})
    assert len(chunks) == 1
    assert chunks[0].title == "Refunds"


def test_indexed_text_prefixes_the_title_once() -> None:
    inner = Chunk("d", 3, "Step 4: press Save.", "Exporting notes", {})
    first = Chunk("d", 0, "Exporting notes\n\nStep 1", "Exporting notes", {})
    assert inner.indexed_text == "Exporting notes\n\nStep 4: press Save."
    assert first.indexed_text == first.text


def test_document_title_prefers_metadata_then_first_line() -> None:
    assert document_title("# Heading\nbody", {"title": "Given"}) == "Given"
    assert document_title("## Heading\nbody", {}) == "Heading"


def test_point_ids_are_deterministic_and_distinct() -> None:
    assert point_id("doc", 0) == point_id("doc", 0)
    ids = {point_id(doc, n) for doc in ("a", "b", "a1", "1") for n in range(20)}
    assert len(ids) == 80
    # No ambiguity between ("a1", 1) and ("a", 11).
    assert point_id("a1", 1) != point_id("a", 11)
    assert chunk_id("guide/setup", 2) == "guide/setup#2"
