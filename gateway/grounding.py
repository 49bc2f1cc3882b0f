"""The grounding check of an answer that retrieved: every fact it states that can be checked
mechanically (an amount, a percentage, a number, a time of day, a code, a quoted span, a link, an
e-mail address) must occur in one of the sources it was given, or in the user's own words, and
every `[n]` must point to one of its sources. ragft's check, not the model's, so it works the same
for any model. Its limit: a fact that occurs in a source passes even where the source states it
of something else (a worked example's total taken for a price)."""

import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from gateway.schemas import ChatMessage
from services.retrieval.schemas import Hit

CITATION = re.compile(r"\[(\d{1,3})\]")
STEP_NUMBER = re.compile(r"^\s*\d{1,2}[.)]\s", re.MULTILINE)  # "1. Open Settings": a list's own numbering
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone number: groups of digits, 7 to 15 in all, after a country code or a first group of two or more.
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?![\w-])")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A link's path does not end in the sentence's own punctuation.
LINK = re.compile(r"\b(?:https?://)?(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/(?:[^\s)\]>,]*[^\s)\]>,.;:!?])?)?", re.IGNORECASE)
TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
# A code has letters and digits joined, with or without hyphens: E-401, SYNC-103, QB2001.
CODE = re.compile(
    r"\b(?=[A-Za-z0-9-]*\d)(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b|\b[A-Z]{1,6}\d{2,}\b"
)
QUOTE = re.compile(r"[\"“”]([^\"“”\n]{3,120})[\"“”]")
CURRENCY = r"[€$£]|\b(?:eur|euros?|usd|dollars?|gbp|pounds?)\b"
NUMBER = re.compile(
    rf"(?P<before>(?:{CURRENCY})\s?)?(?<![\w.,])(?P<value>\d+(?:[.,]\d+)*)(?P<after>\s?(?:%|percent\b|{CURRENCY}))?",
    re.IGNORECASE,
)
TRAILING_DOT = re.compile(r"[.,;:]+$")
CONTACTS = ("link", "email", "phone")  # may come from anywhere in the collection, not only the sources
VERDICTS = Counter(
    "ragft_gateway_grounding_total",
    "Verdicts of the grounding check on answers that retrieved, by the route that answered: supported, "
    "or unsupported and marked or abstained (the abstention sent instead).",
    ["route", "verdict"],
)


@dataclass(frozen=True)
class Fact:
    kind: str  # amount, percent, number, time, code, quote, link, email, phone
    value: str  # normalized: what is compared
    text: str  # as the answer states it


@dataclass
class Grounding:
    """The verdict: supported when no fact is unsupported and every citation points to a source."""

    unsupported: list[Fact] = field(default_factory=list)
    unknown_citations: list[int] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return not self.unsupported and not self.unknown_citations

    def as_json(self) -> dict[str, Any]:
        return {
            "supported": self.supported,
            "unsupported": list(dict.fromkeys(fact.text for fact in self.unsupported)),
            "unknown_citations": self.unknown_citations,
        }


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text).replace("\u2019", "'")
    return " ".join(text.replace("*", "").replace("`", "").split())


def number_value(text: str) -> str:
    """1,080 and 1080 are one value, and so are 11.00 and 11, 15,50 and 15.50: commas or points
    before groups of three digits group thousands; one before one or two digits is the decimal
    mark. Anything else (a version, 7.3.0) is compared as written."""
    first, *groups = re.split(r"[.,]", text)
    if all(len(group) == 3 for group in groups):
        return str(int(first + "".join(groups)))
    if len(groups) == 1:
        decimals = groups[0].rstrip("0")
        return f"{int(first)}.{decimals}" if decimals else str(int(first))
    return text


def facts(text: str) -> list[Fact]:
    """The checkable facts `text` states, citation markers and list numbering left out."""
    text = STEP_NUMBER.sub(" ", CITATION.sub(" ", unicodedata.normalize("NFKC", text)))
    found = [Fact("email", m[0].lower(), m[0]) for m in EMAIL.finditer(text)]
    text = EMAIL.sub(" ", text)
    found += [Fact("link", _link(m[0]), m[0]) for m in LINK.finditer(text) if not _is_number(m[0])]
    text = LINK.sub(lambda m: m[0] if _is_number(m[0]) else " ", text)
    phones = [m for m in PHONE.finditer(text) if _is_phone(m[0])]
    found += [Fact("phone", re.sub(r"\D", "", m[0]), m[0]) for m in phones]
    text = PHONE.sub(lambda m: " " if _is_phone(m[0]) else m[0], text)
    found += [Fact("quote", normalize(m[1]), m[0]) for m in QUOTE.finditer(text) if len(m[1].split()) >= 2]
    found += [Fact("time", f"{int(m[1]):02d}:{m[2]}", m[0]) for m in TIME.finditer(text)]
    text = TIME.sub(" ", text)
    found += [Fact("code", m[0].upper(), m[0]) for m in CODE.finditer(text)]
    text = CODE.sub(" ", text)
    for m in NUMBER.finditer(text):
        unit = (m["after"] or "").strip().lower()
        kind = "percent" if unit in ("%", "percent") else "amount" if m["before"] or unit else "number"
        found.append(Fact(kind, number_value(m["value"]), m[0].strip()))
    return found


def check(
    answer: str,
    sources: Sequence[str],
    own_words: Sequence[str],
    *,
    elsewhere: Sequence[str] = (),
    domains: Sequence[str] | None = None,
) -> Grounding:
    """The verdict on `answer`: its facts against those of `sources` and of `own_words` (what the
    user wrote: restating it is not a claim of the answer's own), its citations against the
    sources; a link, an address or a phone number may also come from `elsewhere` in the
    collection, and a link or an address must be in `domains` when the collection names some."""
    given = [*sources, *own_words]
    known = {(fact.kind, fact.value) for text in given for fact in facts(text)}
    known |= {(fact.kind, fact.value) for text in elsewhere for fact in facts(text) if fact.kind in CONTACTS}
    numbers = {value for kind, value in known if kind in ("amount", "percent", "number")}
    quotable = [normalize(text) for text in given]
    verdict = Grounding()
    for fact in facts(answer):
        if fact.kind == "number":
            stated = fact.value in numbers  # a bare number may stand for an amount or a share
        elif fact.kind == "quote":
            stated = any(fact.value in text for text in quotable)
        else:
            stated = (fact.kind, fact.value) in known and allowed(fact, domains)
        if not stated:
            verdict.unsupported.append(fact)
    cited = sorted({int(n) for n in CITATION.findall(answer)})
    verdict.unknown_citations = [n for n in cited if not 1 <= n <= len(sources)]
    return verdict


async def verdict(
    route: str,
    policy: str,
    answer: str,
    sources: list[Hit],
    messages: list[ChatMessage],
    find: Callable[[str], Awaitable[list[str]]],
    domains: Sequence[str] | None,
    coverage: tuple[float, float],
) -> dict[str, Any]:
    """The `grounding` of the `ragft` object of an answer on `route` that had `sources`, counted:
    the verdict, the `policy`, and whether the answer is withheld for the abstention (`abstained`:
    policy `abstain` and the answer unsupported). A link, an address or a phone number its
    sources lack is looked up in the whole collection (`find`: the texts that hold it), as a help
    center's contact page may not be among the passages; a link or an address must also be in the
    collection's allowed `domains`, when it names some. `coverage`: the evidence's coverage of
    the question (gateway.evidence) and the least the abstain policy answers on, whatever the
    verdict; `reason` says why an answer was withheld."""
    texts = [source.text for source in sources]
    own_words = [m.text for m in messages if m.role == "user"]
    grounding = check(answer, texts, own_words, domains=domains)
    if contacts := {fact.text for fact in grounding.unsupported if fact.kind in CONTACTS and allowed(fact, domains)}:
        elsewhere = [text for contact in sorted(contacts) for text in await find(contact)]
        grounding = check(answer, texts, own_words, elsewhere=elsewhere, domains=domains)
    covered, least = coverage
    reason = None if grounding.supported else "unsupported"
    if covered < least:
        reason = "evidence"  # the passages never name what the question asks about
    abstained = policy == "abstain" and reason is not None
    VERDICTS.labels(route, "abstained" if abstained else "supported" if grounding.supported else "marked").inc()
    return {
        **grounding.as_json(),
        "policy": policy,
        "abstained": abstained,
        "reason": reason if abstained else None,
        "evidence_coverage": round(covered, 3),
    }


def without_disallowed_contacts(text: str, domains: Sequence[str] | None) -> str:
    """`text` with each link and address outside `domains` replaced by a marker, so a passage
    cannot hand the model a link the collection does not allow."""
    if domains is None:
        return text

    def kept(kind: str, value: Callable[[str], str]) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            if kind == "link" and _is_number(match[0]):
                return match[0]
            return match[0] if allowed(Fact(kind, value(match[0]), match[0]), domains) else f"[{kind} removed]"

        return replace

    text = EMAIL.sub(kept("email", str.lower), text)
    return LINK.sub(kept("link", _link), text)


def allowed(fact: Fact, domains: Sequence[str] | None) -> bool:
    """Whether a link or an address is in one of `domains` or their subdomains (None: any is)."""
    if domains is None or fact.kind not in ("link", "email"):
        return True
    host = fact.value.rpartition("@")[2] if fact.kind == "email" else fact.value.split("/")[0]
    return any(host == domain or host.endswith(f".{domain}") for domain in domains)


def _is_phone(text: str) -> bool:
    return 7 <= sum(c.isdigit() for c in text) <= 15 and not ISO_DATE.fullmatch(text)


def _is_number(text: str) -> bool:
    """1.5 and 7.3.0 look like host names to LINK: they are numbers."""
    return bool(re.fullmatch(r"[\d.]+", text))


def _link(text: str) -> str:
    return TRAILING_DOT.sub("", re.sub(r"^https?://", "", text.lower())).removeprefix("www.")
