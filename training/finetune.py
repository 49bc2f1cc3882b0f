"""`ragft finetune` from its inputs to the adapter: the examples checked against what the eval
holds out, grounded in the retrieval service's passages when asked (RAFT), then trained."""

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from rich.progress import Progress

from evals.dataset import load_questions, load_unseen_docs
from evals.voice import voice_beside
from ragft.progress import progress_bar
from training.grounded import Grounding, Searcher, bare_records, check_held_out, grounded_mix, read_examples
from training.lora import Precision, TrainOptions, TrainReport, choose_precision, load_conversations, train


def grounding_record(grounding: Grounding, unseen: frozenset[str]) -> dict[str, Any]:
    """How `--grounded` makes its examples, as the adapter's ragft.json records it."""
    return asdict(grounding) | {"unseen_docs": sorted(unseen)}


def finetune_adapter(
    data: Path,
    out: Path,
    options: TrainOptions,
    *,
    precision: Precision = "auto",
    eval_set: Path,
    unseen_docs: Path,
    base_model: Callable[[], str],
    grounding: Grounding | None = None,
    retrieval: Callable[[], AbstractContextManager[httpx.Client]] | None = None,
    progress: Callable[[], Progress] = progress_bar,
    say: Callable[[str], None] = print,
) -> TrainReport:
    """Trains on `data` once every example is checked against `eval_set`'s held-out questions
    and the unseen documents; with `grounding`, on the mix built by searching through the
    client `retrieval` opens. `precision` the device cannot run is refused first; `base_model`
    (its path, prepared if need be) is asked for last, so refused data costs no model."""
    chosen = choose_precision(precision)
    examples = read_examples(data, load_conversations(data))
    voice_beside(data)  # a bad voice file is refused before a search or a model
    unseen = load_unseen_docs(unseen_docs)
    check_held_out(examples, load_questions(eval_set), unseen)
    say(
        f"Checked {len(examples)} examples against the held-out questions of {eval_set} "
        f"and {len(unseen)} unseen documents"
    )
    records, recorded = bare_records(examples), None
    if grounding:
        if retrieval is None:
            raise ValueError("grounded training searches the retrieval service: pass `retrieval`")
        recorded = grounding_record(grounding, unseen)
        with retrieval() as client, progress() as shown:
            task = shown.add_task("grounded examples", total=sum(e.single_turn for e in examples))
            records = grounded_mix(examples, Searcher(client, grounding, unseen), lambda: shown.advance(task))
        kinds = Counter(r["kind"] for r in records)
        say(
            f"Built {len(records)} examples from {grounding.collection!r}: "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        )
    return train(base_model(), data, out, options, precision=chosen, examples=records, grounding=recorded)
