"""Token-bounded chunks with overlap, and the point ids derived from them."""

import uuid
from dataclasses import dataclass
from typing import Any

from semantic_text_splitter import MarkdownSplitter
from tokenizers import Tokenizer

from ragft.errors import InvalidRequest
from ragft.instructions import screen

# Fixed forever: changing it would orphan every stored point.
POINT_NAMESPACE = uuid.UUID("6f1c2f4e-5d1b-4a51-9a43-2b7e8f0c1d25")


def point_id(doc_id: str, chunk_index: int) -> str:
    """The same (document, chunk number) always maps to the same point, so a retried
    upsert overwrites instead of duplicating."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{doc_id}\x1f{chunk_index}"))


def chunk_id(doc_id: str, chunk_index: int) -> str:
    return f"{doc_id}#{chunk_index}"


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int
    text: str
    title: str
    metadata: dict[str, Any]
    # The document's sentences addressed to the assistant, set aside at ingest (ragft.instructions).
    instructions: tuple[str, ...] = ()

    @property
    def point_id(self) -> str:
        return point_id(self.doc_id, self.index)

    @property
    def indexed_text(self) -> str:
        """What is embedded and keyword-indexed: the title travels with every chunk, so a
        passage deep in an article still matches questions about the article's subject."""
        if not self.title or self.text.startswith(self.title):
            return self.text
        return f"{self.title}\n\n{self.text}"


def document_title(text: str, metadata: dict[str, Any]) -> str:
    if title := str(metadata.get("title", "")).strip():
        return title
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line.lstrip("#").strip()[:200]


class Chunker:
    """Splits at the largest semantic boundary (heading, paragraph, sentence) that keeps a
    chunk within `max_tokens` of the embedding model's own tokenizer."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> None:
        self._splitter = MarkdownSplitter.from_huggingface_tokenizer(tokenizer, capacity=max_tokens, overlap=overlap)

    def split(self, doc_id: str, text: str, metadata: dict[str, Any]) -> list[Chunk]:
        """The document's chunks, without what addresses the assistant: it is not evidence."""
        title = document_title(text, metadata)
        screened = screen(text)
        if not screened.text.strip():
            raise InvalidRequest(
                f"document {doc_id!r} holds nothing but text addressed to the assistant: {screened.instructions[0]!r}"
            )
        pieces = [piece for piece in self._splitter.chunks(screened.text) if piece.strip()]
        instructions = tuple(screened.instructions)
        return [Chunk(doc_id, i, piece, title, metadata, instructions) for i, piece in enumerate(pieces)]
