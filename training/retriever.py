"""Retriever fine-tuning: (question, passage) pairs from a collection, the embedding model trained
on them with MultipleNegativesRankingLoss (each question's passage against the batch's other
passages), and the dense hit rate on the held-out questions before and after.

Pairs come from the collection itself, read through the retrieval API: each train-split question
of the eval set with the chunk of its document that states its facts, and each chunk whose text
opens with a section heading with the question "<title>: <heading>". Held-out questions never
train, worded alike or not (case, spaces and punctuation aside)."""

import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from evals.dataset import Question
from evals.scoring import normalize, states_facts
from ragft.errors import UserFacingError
from ragft.http import sync_client
from services.retrieval.chunking import Chunk
from services.retrieval.client import checked, document_summaries
from services.retrieval.embedding import Embedder

MIN_PAIRS = 32
HEADING = re.compile(r"#{1,6}\s+(.+)")
RECORD = "ragft.json"


class RetrieverError(UserFacingError):
    pass


@dataclass(frozen=True)
class Pair:
    question: str
    passage: str
    source: str  # "eval-train" or "heading"


@dataclass(frozen=True)
class Passage:
    doc_id: str
    text: str  # as the service embeds it: the title, then the chunk
    title: str = ""
    heading: str | None = None  # the section heading the chunk opens with


def collection_passages(retrieval_url: str, collection: str, timeout_s: float = 60) -> list[Passage]:
    """Every chunk of the collection, through the retrieval API, with the heading it opens with."""
    passages: list[Passage] = []
    try:
        with sync_client(retrieval_url, timeout=timeout_s) as client:
            for summary in document_summaries(client, collection):
                path = f"/v1/collections/{collection}/documents/{quote(summary['id'], safe='/')}"
                document = checked(client.get(path)).json()
                for number, chunk in enumerate(document["chunks"]):
                    opening = HEADING.match(chunk["text"].lstrip())
                    heading = opening.group(1).strip() if opening else None
                    embedded = Chunk(document["id"], number, chunk["text"], document["title"], {}).indexed_text
                    passages.append(Passage(document["id"], embedded, document["title"], heading))
    except httpx.HTTPError as exc:  # the service did not answer
        raise RetrieverError(str(exc)) from exc
    if not passages:
        raise RetrieverError(f"collection {collection!r} is empty")
    return passages


def training_pairs(train: list[Question], heldout: list[Question], passages: list[Passage]) -> list[Pair]:
    """Train-split questions with their passage, and heading questions; never a held-out question."""
    by_doc: dict[str, list[Passage]] = {}
    for passage in passages:
        by_doc.setdefault(passage.doc_id, []).append(passage)
    pairs = []
    for question in train:
        stating = [p for p in by_doc.get(question.doc_id or "", []) if states_facts(question, p.text)]
        if stating:
            pairs.append(Pair(question.question, stating[0].text, "eval-train"))
    for passage in passages:
        if passage.heading and passage.title and passage.heading != passage.title:
            pairs.append(Pair(f"{passage.title}: {passage.heading}", passage.text, "heading"))
    held = {_wording(q.question) for q in heldout}
    pairs = [pair for pair in pairs if _wording(pair.question) not in held]
    if len(pairs) < MIN_PAIRS:
        raise RetrieverError(
            f"{len(pairs)} training pairs; retriever training needs at least {MIN_PAIRS}: ingest more "
            "documents with headings, or add train-split questions to the eval set"
        )
    return pairs


def _wording(question: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", normalize(question)).split())


def hit_rates(embedder: Embedder, passages: list[Passage], questions: list[Question]) -> dict[str, float]:
    """The share of the questions whose document is among the top 1 and top 5 documents of a dense
    search over every passage (the questions must have a document in the passages)."""
    answerable = questions
    chunks = np.array(embedder.embed([p.text for p in passages]))
    asked = np.array(embedder.embed([q.question for q in answerable]))
    hits = {1: 0, 5: 0}
    for question, scores in zip(answerable, asked @ chunks.T, strict=True):
        ranked = list(dict.fromkeys(passages[i].doc_id for i in np.argsort(-scores)))
        for k in hits:
            hits[k] += question.doc_id in ranked[:k]
    return {f"hit@{k}": round(hit / len(answerable), 3) for k, hit in hits.items()}


@dataclass(frozen=True)
class RetrieverOptions:
    epochs: int = 3
    batch_size: int = 32
    max_steps: int | None = None  # stop after this many steps, before the epochs end
    learning_rate: float = 2e-5
    seed: int = 0


def train_retriever(
    base_model: str,
    pairs: list[Pair],
    out: Path,
    options: RetrieverOptions,
    record: dict[str, Any],
    measure: Callable[[Embedder], dict[str, float]] | None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measures the base model, trains a copy of it on the pairs, measures that, and writes it
    with `ragft.json` (the record, the training and both measures) to `out`: whole, or not at all."""
    check_out(out)
    before = measure(Embedder(base_model)) if measure else None
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(base_model)
    data = Dataset.from_dict({"anchor": [p.question for p in pairs], "positive": [p.passage for p in pairs]})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=options.epochs,
            max_steps=options.max_steps or -1,  # -1: the trainer's "no limit"
            per_device_train_batch_size=options.batch_size,
            learning_rate=options.learning_rate,
            warmup_steps=0.1,  # a tenth of the steps
            # A batch never holds two pairs with the same passage: they would be each other's negatives.
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            save_strategy="no",
            report_to=[],
            seed=options.seed,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)
        )
        result = trainer.train()
        staged = Path(scratch) / "model"
        model.save(str(staged))
        record = record | {
            "base_model": base_model,
            "pairs": {source: sum(p.source == source for p in pairs) for source in ("eval-train", "heading")},
            "options": asdict(options),
            "steps": result.global_step,
            "train_loss": round(result.training_loss, 4),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        after = measure(Embedder(str(staged))) if measure else None
        record["heldout_dense_hit_rate"] = {"before": before, "after": after}
        (staged / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        staged.rename(out)
    say(f"Trained {result.global_step} steps, loss {result.training_loss:.4f}; wrote {out}")
    return record


def check_out(out: Path) -> None:
    if out.exists():
        raise RetrieverError(f"{out} already exists; remove it or choose another --out")
