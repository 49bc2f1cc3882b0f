"""The evidence an answer is given: the retrieved passages, without what addresses the assistant
and the links the collection does not allow, cut down to the parts that bear on the question
(sentences, table rows under their table's header, list items under their lead-in) within a
budget of characters. Most of a passage does not bear on the question: it costs prompt tokens and
time to the first token, and it offers the model figures to mistake for the answer (a worked
example's total for a price). The parts are scored by the question's words they share, each
weighted by how rare it is among the parts (a lexical overlap, as FILCO's simplest filter)."""

import math
import re
from dataclasses import dataclass

from gateway.grounding import without_disallowed_contacts
from ragft.instructions import SENTENCE_END, screen
from services.retrieval.schemas import Hit, SearchResponse

WORD = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
STOPWORDS = frozenset(
    WORD.findall(
        "a an the and or but of to in on for is are was were be been can could do does did i me my we our "
        "you your it its how what when where which who whom why with at by from this that these those as if "
        "not no there their them they has have had will would should shall may might must than then so about "
        "into any all much many often long get need want know tell please "
    )
)
TABLE_ROW = re.compile(r"^\s*\|")
TABLE_RULE = re.compile(r"^\s*\|[\s:|-]+\|\s*$")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,2}[.)])\s")
# Parts scoring below this share of the best part's score are left out, whatever the budget.
RELATIVE_FLOOR = 1 / 3


@dataclass(frozen=True)
class Part:
    """A sentence, a table row or a list item, and what must come before it to be read: its
    table's header, or its list's lead-in; and the heading it sits under."""

    text: str
    context: str | None
    position: int  # in its passage
    heading: str | None = None  # "## QB-7218 — Required fields not completed": what the section is about

    @property
    def scored(self) -> str:
        """A row is read with its header, an item with its lead-in, each under its heading: "plan"
        in a header counts for each row, an error code in a heading for each line below it."""
        return " ".join(line for line in (self.heading, self.context, self.text) if line)


@dataclass(frozen=True)
class Evidence:
    passages: list[Hit]
    # The share of the question's words (each weighted by its rarity among the passages' parts, a
    # word in none the rarest) that the passages hold: low when the question asks about something
    # they never name, such as a plan that does not exist.
    coverage: float


def evidence(found: SearchResponse, question: str, budget: int) -> Evidence:
    """The passages as the model and the grounding check see them: screened, then (`budget` > 0)
    only their parts that share words with `question` (a third of the best part's score at
    least), best first until `budget` characters, each passage's parts in their own order. A
    passage with no such part is left out. When no part shares a word, or `budget` is 0, the
    passages are kept whole. The coverage is of the whole screened passages."""
    passages = [
        hit.model_copy(update={"text": without_disallowed_contacts(screen(hit.text).text, found.allowed_domains)})
        for hit in found.hits
    ]
    parts = [parts_of(passage.text) for passage in passages]
    scores, coverage = _scores(question, [part.scored for part in _flat(parts)])
    if budget <= 0 or not any(scores):
        return Evidence(passages, coverage)
    floor = max(scores) * RELATIVE_FLOOR
    ranked = sorted(
        ((score, i, part) for i, (part, score) in enumerate(zip(_flat(parts), scores, strict=True)) if score >= floor),
        key=lambda ranked_part: -ranked_part[0],
    )
    owner = [p for p, passage in enumerate(parts) for _ in passage]
    chosen: dict[int, list[Part]] = {}
    spent = 0
    for _, i, part in ranked:
        cost = len(part.scored)
        if spent + cost > budget and spent:
            break
        chosen.setdefault(owner[i], []).append(part)
        spent += cost
    cut = [passage.model_copy(update={"text": _render(chosen[p])}) for p, passage in enumerate(passages) if p in chosen]
    return Evidence(cut, coverage)


def parts_of(text: str) -> list[Part]:
    """A passage's parts in order. Headings and table rules are context, not parts."""
    parts: list[Part] = []
    heading: str | None = None  # the last heading above
    header: str | None = None  # the table's header row and rule, while in a table
    lead_in: str | None = None  # the line before a list, while in the list
    previous = ""
    for line in text.split("\n"):
        stripped = line.strip()
        if TABLE_ROW.match(line):
            if header is None:
                header = stripped
            elif TABLE_RULE.match(line):
                header = f"{header}\n{stripped}"
            else:
                parts.append(Part(stripped, header, len(parts), heading))
            continue
        header = None
        if LIST_ITEM.match(line):
            if lead_in is None:
                lead_in = previous if previous.endswith(":") else ""
            parts.append(Part(stripped, lead_in or None, len(parts), heading))
            continue
        lead_in = None
        if stripped.startswith("#"):
            heading = stripped
        elif stripped:
            sentences = [s for s in SENTENCE_END.split(stripped) if s.strip()]
            parts += [Part(sentence, None, len(parts) + n, heading) for n, sentence in enumerate(sentences)]
        previous = stripped
    return parts


def terms(text: str) -> set[str]:
    return {_stem(word) for word in WORD.findall(text.lower()) if word not in STOPWORDS}


def _scores(question: str, texts: list[str]) -> tuple[list[float], float]:
    """Each text's shared words with `question`, each weighted by its inverse document frequency
    among the texts (a word in none of them as if in one), and the share of the question's
    weight the texts hold (1 for a question of stop words alone, 0 without texts)."""
    if not texts:
        return [], 0.0
    asked = terms(question)
    held = [terms(text) & asked for text in texts]
    frequency = {term: sum(term in words for words in held) for term in asked}
    weight = {term: math.log(1 + len(texts) / max(count, 1)) for term, count in frequency.items()}
    total = sum(weight.values())
    coverage = sum(weight[term] for term, count in frequency.items() if count) / total if total else 1.0
    return [sum(weight[term] for term in words) for words in held], coverage


def _render(parts: list[Part]) -> str:
    """The chosen parts in their passage's order, each heading and context once, before its
    first part (a lead-in is a part of its own too: it may state a fact)."""
    lines: list[str] = []
    for part in sorted(parts, key=lambda part: part.position):
        for line in (part.heading, part.context, part.text):
            if line and line not in lines:
                lines.append(line)
    return "\n".join(lines)


def _flat(parts: list[list[Part]]) -> list[Part]:
    return [part for passage in parts for part in passage]


def _stem(word: str) -> str:
    """Plurals and the commonest endings folded, so "seats" meets "seat" and "billed" meets "billing"."""
    for ending, length in (("ies", 4), ("ing", 5), ("ed", 4), ("s", 3)):
        if word.endswith(ending) and len(word) > length and not word.endswith("ss"):
            return word[: -len(ending)] + ("y" if ending == "ies" else "")
    return word
