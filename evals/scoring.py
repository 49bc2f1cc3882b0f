"""Scores one answer against its question: the facts it must state, abstention, the right
document among the sources, the sources it cites, and the voice of the adapter under test
(its rules: evals.voice)."""

import re
import unicodedata
from dataclasses import dataclass

from evals.dataset import Question
from evals.voice import VoiceRules

DASHES = re.compile(r"[\u2010-\u2015\u2212]")
QUOTES = re.compile(r"[\u2018\u2019\u02bc]")
STEP = re.compile(r"(\d+)\. \S")
SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?:\s|$)")
# Ways an answer says it does not know; matched on normalized text.
ABSTENTION = re.compile(
    r"\b(don't|do not) have (that |this |the |any |enough |more |specific )?(information|details)"
    r"|\bi (don't|do not) know\b|\bi'?m not sure\b|\bi am not sure\b"
    r"|\b(isn't|is not|are not|aren't|not) (mentioned|stated|specified|covered|listed) in\b"
    r"|\b(sources?|help center|context|documents?|articles?|knowledge base) (do not|does not|don't|doesn't) "
    r"(contain|mention|say|include|provide|specify|cover|have)"
    r"|\bno (information|mention|details?) (about|on|of|regarding|in)\b"
    r"|\bi (cannot|can't|could not|couldn't|am unable to|was unable to) (find|answer|determine|tell|provide|say)\b"
)
MARKUP = re.compile(r"[*`]")  # Markdown emphasis and code marks, which a model may copy from the sources
# A citation of the numbered sources in the prompt (gateway/prompt.py): [1], [1, 2].
CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


def normalize(text: str) -> str:
    """NFKC, lower case, one kind of dash and apostrophe, no Markdown marks, single spaces: what
    facts are matched on."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = MARKUP.sub("", QUOTES.sub("'", DASHES.sub("-", text)))
    return re.sub(r"\s+", " ", text).strip()


def states(facts: tuple[str, ...], answer: str) -> bool:
    """Whether the answer matches every fact pattern."""
    text = normalize(answer)
    return all(re.search(pattern, text) for pattern in facts)


def states_facts(question: Question, answer: str) -> bool:
    return states(question.facts, answer)


def abstains(answer: str) -> bool:
    return bool(ABSTENTION.search(normalize(answer)))


@dataclass(frozen=True)
class Voice:
    """Which of the voice's rules an answer follows: greeting first, sign-off last, and a body of
    numbered steps or one line of a few sentences."""

    greeting: bool
    sign_off: bool
    format: bool

    @property
    def all(self) -> bool:
        return self.greeting and self.sign_off and self.format


def voice(answer: str, rules: VoiceRules) -> Voice:
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    greeting = bool(lines) and lines[0] == rules.greeting
    sign_off = bool(lines) and lines[-1] == rules.sign_off
    body = lines[int(greeting) : len(lines) - int(sign_off and len(lines) > 1)]
    return Voice(greeting=greeting, sign_off=sign_off, format=_body_format(body, rules))


def _body_format(body: list[str], rules: VoiceRules) -> bool:
    if not body:
        return False
    steps = [STEP.match(line) for line in body]
    if all(steps):
        return len(body) <= rules.max_steps and [int(m[1]) for m in steps if m] == list(range(1, len(body) + 1))
    return len(body) == 1 and 1 <= len(SENTENCE_END.findall(body[0])) <= rules.max_sentences


def citation_markers(answer: str) -> list[int]:
    """The source numbers an answer cites, in order: `[1]`, `[1][2]` and `[1, 2]` alike."""
    return [int(number) for marker in CITATION.findall(answer) for number in marker.split(",")]


@dataclass(frozen=True)
class Citations:
    cites: bool  # at least one marker points to a source of the prompt
    cites_document: bool  # one points to a passage of the question's document
    cites_missing: bool  # one points to no source: [0], or past the last


def citations(answer: str, source_doc_ids: list[str], doc_id: str | None) -> Citations:
    """The answer's markers against the prompt's sources: marker n is source_doc_ids[n - 1]."""
    markers = citation_markers(answer)
    cited = [source_doc_ids[n - 1] for n in markers if 1 <= n <= len(source_doc_ids)]
    return Citations(
        cites=bool(cited),
        cites_document=doc_id is not None and doc_id in cited,
        cites_missing=len(cited) < len(markers),
    )


@dataclass(frozen=True)
class Score:
    correct: bool  # answerable: states every fact; unanswerable: abstains
    abstained: bool
    retrieved: bool | None  # the question's document among the sources; None: nothing to find or no retrieval
    citations: Citations | None  # None: no retrieval, nothing to cite
    voice: Voice | None  # None: no voice rules to score


def score(
    question: Question, answer: str, source_doc_ids: list[str] | None, voice_rules: VoiceRules | None = None
) -> Score:
    """`source_doc_ids` is None on a route that does not retrieve; `voice_rules` None where the
    adapter under test has none (its voice is not scored, rather than scored against another's)."""
    abstained = abstains(answer)
    correct = states_facts(question, answer) if question.answerable else abstained
    retrieved = cited = None
    if source_doc_ids is not None:
        cited = citations(answer, source_doc_ids, question.doc_id)
        if question.doc_id is not None:
            retrieved = question.doc_id in source_doc_ids
    voiced = voice(answer, voice_rules) if voice_rules is not None else None
    return Score(correct=correct, abstained=abstained, retrieved=retrieved, citations=cited, voice=voiced)
