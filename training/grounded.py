"""Grounded fine-tuning examples (RAFT, Zhang et al. 2024, arXiv 2403.10131): each training
question behind the prompt the hybrid route serves, built by the gateway's own prompt builder
from what the retrieval service finds. In most examples the question's document is among the
passages and the answer cites it; in the rest only distractors are, and the answer is the data's
own refusal."""

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evals.dataset import MAX_JACCARD, Question, jaccard, words
from gateway.evidence import evidence
from gateway.prompt import grounded_messages, search_query
from gateway.schemas import ChatMessage
from ragft.errors import UserFacingError
from services.retrieval.client import RetrievalCallFailed, checked, document_summaries
from services.retrieval.schemas import Hit, SearchResponse

# Passages searched for distractors: enough to fill a prompt after leaving out those that state
# one of the answer's numbers.
DISTRACTOR_DEPTH = 16
CITATION_AT_END = re.compile(r"([.!?])?$")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
STEP = re.compile(r"^\d+\. ")

Conversation = list[dict[str, str]]


class GroundingError(UserFacingError):
    pass


@dataclass(frozen=True)
class Grounding:
    """How the grounded examples are made; recorded in the adapter's ragft.json."""

    collection: str
    top_k: int = 4  # the gateway's RAGFT_TOP_K: the passages a served prompt holds
    max_query_chars: int = 1000  # the gateway's RAGFT_MAX_QUERY_CHARS
    # RAFT used 0.2; at 0.2 the 135M adapter refused 66% of answerable questions on hybrid
    distractor_share: float = 0.1  # the share of examples whose document is left out
    seed: int = 0
    evidence_chars: int = 0  # the gateway's RAGFT_HYBRID_EVIDENCE_CHARS: passages cut as the hybrid route cuts them


@dataclass(frozen=True)
class Example:
    """One line of the data: a conversation and, when it answers from the knowledge base, the
    document it draws on (`doc_id`)."""

    messages: Conversation
    doc_id: str | None

    @property
    def questions(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "user"]

    @property
    def single_turn(self) -> bool:
        return [m["role"] for m in self.messages if m["role"] != "system"] == ["user", "assistant"]

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]


def read_examples(path: Path, conversations: Sequence[Conversation]) -> list[Example]:
    """The examples with the `doc_id` each line of `path` names (null: out of scope)."""
    doc_ids = [json.loads(line).get("doc_id") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(messages, doc_id) for messages, doc_id in zip(conversations, doc_ids, strict=True)]


def check_held_out(examples: Iterable[Example], eval_set: Sequence[Question], unseen_docs: frozenset[str]) -> None:
    """Refuses data that would train on what the eval holds out: a question worded like a
    held-out eval question, a question about an unseen document, or an eval set that itself
    counts a question about an unseen document as taught by fine-tuning."""
    taught = sorted({q.id for q in eval_set if q.split == "train" and q.doc_id in unseen_docs})
    if taught:
        raise GroundingError(
            f"the eval set's train split asks about unseen documents ({', '.join(taught)}): "
            "the eval set and the unseen documents disagree on what fine-tuning may teach"
        )
    held_out = [(q, words(q.question)) for q in eval_set if q.split == "heldout"]
    for number, example in enumerate(examples, 1):
        if example.doc_id in unseen_docs:
            raise GroundingError(f"example {number} is about the unseen document {example.doc_id!r}")
        for asked in example.questions:
            mine = words(asked)
            for question, theirs in held_out:
                if jaccard(mine, theirs) >= MAX_JACCARD:
                    raise GroundingError(
                        f"example {number} asks {asked!r}, too close to the held-out eval question "
                        f"{question.id} ({question.question!r}): token Jaccard {jaccard(mine, theirs):.2f}, "
                        f"the limit is below {MAX_JACCARD}"
                    )


def refusal(examples: Sequence[Example]) -> str:
    """The data's own answer to a question the knowledge base does not cover: the commonest
    answer of its single-turn out-of-scope examples."""
    answers = Counter(e.answer for e in examples if e.doc_id is None and e.single_turn)
    if not answers:
        raise GroundingError(
            "grounded training needs out-of-scope examples (single-turn, doc_id null) to learn its refusal from"
        )
    return answers.most_common(1)[0][0]


def cite(answer: str, number: int, sign_off: str) -> str:
    """The answer with `[number]` at the end of its last line before the sign-off (the data's
    own: its refusal's last line), and before that line's full stop."""
    lines = answer.split("\n")
    filled = [i for i, line in enumerate(lines) if line.strip()] or [len(lines) - 1]
    if len(filled) > 1 and lines[filled[-1]].strip() == sign_off.strip():
        filled.pop()
    at = filled[-1]
    lines[at] = CITATION_AT_END.sub(lambda m: f" [{number}]{m[1] or ''}", lines[at].rstrip(), count=1)
    return "\n".join(lines)


class Searcher:
    """Searches one collection of the retrieval service as the gateway does, leaving out the
    unseen documents."""

    def __init__(self, client: httpx.Client, grounding: Grounding, unseen_docs: frozenset[str]) -> None:
        self.client = client
        self.grounding = grounding
        self.unseen_docs = unseen_docs

    def check_collection(self) -> None:
        """Refuses a collection that is missing, or holds too few documents to give distractors."""
        needed = self.grounding.top_k + 1
        try:
            found = sum(1 for doc in document_summaries(self.client, self.grounding.collection)
                        if doc["id"] not in self.unseen_docs)  # fmt: skip
        except RetrievalCallFailed as exc:
            raise GroundingError(str(exc)) from None
        if found < needed:
            raise GroundingError(
                f"collection {self.grounding.collection!r} holds {found} documents besides the unseen ones; "
                f"grounded training needs at least {needed} (the question's own and {self.grounding.top_k} "
                "distractors)"
            )

    def __call__(
        self, query: str, *, depth: int | None = None, leave_out: Iterable[str] = (), only: str | None = None
    ) -> list[Hit]:
        """The passages the gateway's search finds (its `top_k`, unless `depth` asks for more:
        a deeper search fuses longer lists, so its first passages may differ)."""
        excluded = sorted(self.unseen_docs | set(leave_out))
        body: dict[str, Any] = {"query": query, "top_k": depth or self.grounding.top_k}
        conditions: dict[str, Any] = {"must_not": [{"key": "doc_id", "any": excluded}]} if excluded else {}
        if only:
            conditions["must"] = [{"key": "doc_id", "match": only}]
        if conditions:
            body["filter"] = conditions
        try:
            response = checked(self.client.post(f"/v1/collections/{self.grounding.collection}/search", json=body))
        except RetrievalCallFailed as exc:
            raise GroundingError(str(exc)) from None
        return [Hit.model_validate(hit) for hit in response.json()["hits"]]


def _prompt(example: Example, sources: list[Hit]) -> Conversation:
    """The messages the gateway sends for this conversation with these passages."""
    messages = [ChatMessage(role=m["role"], content=m["content"]) for m in example.messages[:-1]]
    return [{"role": m.role, "content": m.text} for m in grounded_messages(messages, sources)]


def _numbers(answer: str) -> set[str]:
    """The numbers an answer states, step numbers aside."""
    return {n for line in answer.splitlines() for n in NUMBER.findall(STEP.sub("", line))}


def grounded_example(
    example: Example, search: Searcher, refusal_answer: str, *, distractors_only: bool
) -> dict[str, Any]:
    """One grounded example as a JSONL record: its messages, and what it was made of."""
    top_k = search.grounding.top_k
    query = search_query(
        [ChatMessage(role="user", content=q) for q in example.questions], search.grounding.max_query_chars
    )
    if example.doc_id is None:  # what the gateway finds for a question the knowledge base does not answer
        sources, answer, kind = search(query), refusal_answer, "out_of_scope"
    elif distractors_only:
        # A distractor must not state the answer's numbers: it would teach refusing a stated fact.
        numbers = _numbers(example.answer)
        found = search(query, depth=DISTRACTOR_DEPTH, leave_out=[example.doc_id])
        sources = [s for s in found if not numbers & set(NUMBER.findall(s.text))][:top_k]
        answer, kind = refusal_answer, "distractors"
    else:
        sources = search(query)  # exactly the passages the hybrid route would put in the prompt
        # The passage of its document that best matches question and answer holds the fact: it
        # is cited, in place of a weaker passage of the same document or else of the last one.
        own = search(f"{query}\n{example.answer}", only=example.doc_id)
        if not own:
            raise GroundingError(f"the collection has no passage of {example.doc_id!r}")
        if own[0].chunk_id not in [s.chunk_id for s in sources]:
            weaker = [i for i, s in enumerate(sources) if s.doc_id == example.doc_id]
            sources[weaker[-1] if weaker else len(sources) - 1] = own[0]
        sources = _cut(sources, query, search.grounding.evidence_chars, own=own[0].chunk_id, answer=example.answer)
        number = next(i for i, s in enumerate(sources, 1) if s.chunk_id == own[0].chunk_id)
        answer, kind = cite(example.answer, number, sign_off=refusal_answer.splitlines()[-1]), "grounded"
    if kind != "grounded":
        sources = _cut(sources, query, search.grounding.evidence_chars)
    return {
        "kind": kind,
        "doc_id": example.doc_id,
        "sources": [s.chunk_id for s in sources],
        "messages": [*_prompt(example, sources), {"role": "assistant", "content": answer}],
    }


def _cut(sources: list[Hit], query: str, budget: int, *, own: str | None = None, answer: str = "") -> list[Hit]:
    """The passages as the hybrid route cuts them for `query`. When the cut leaves out the
    passage an answer cites (`own`), it is cut for the query and the answer instead, and failing
    that left whole: an example never cites what its prompt lacks (a small skew from serving,
    where the answer is unknown)."""
    for asked in (query, f"{query}\n{answer}"):
        cut = evidence(SearchResponse(hits=sources), asked, budget).passages
        if own is None or own in [s.chunk_id for s in cut]:
            return cut
    return sources


def bare_records(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """The examples as they are, as records of the examples file."""
    return [{"kind": "bare", "doc_id": e.doc_id, "messages": e.messages} for e in examples]


def grounded_mix(
    examples: Sequence[Example], search: Searcher, advance: Callable[[], None] = lambda: None
) -> list[dict[str, Any]]:
    """Every example as it is (the finetuned route's bare prompts), then a grounded copy of
    every single-turn one; a seeded `distractor_share` of those about a document see only
    distractors and learn the refusal."""
    search.check_collection()
    refusal_answer = refusal(examples)
    about_a_document = [i for i, e in enumerate(examples) if e.single_turn and e.doc_id]
    share = search.grounding.distractor_share
    distractors = set(
        random.Random(search.grounding.seed).sample(about_a_document, round(share * len(about_a_document)))
    )
    mix = bare_records(examples)
    for index, example in enumerate(examples):
        if example.single_turn:
            mix.append(grounded_example(example, search, refusal_answer, distractors_only=index in distractors))
            advance()
    return mix
