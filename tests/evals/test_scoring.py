"""The scorer on fixed answers, and on the fine-tuning set whose rules it encodes."""

import json
from pathlib import Path

import pytest

from evals.dataset import Question
from evals.scoring import (
    Citations,
    abstains,
    citation_markers,
    citations,
    normalize,
    score,
    states_facts,
    voice,
)
from evals.voice import VoiceRules, sample_rules, voice_beside
from ragft.settings import REPO

SAMPLE = sample_rules()
GREETING, SIGN_OFF = SAMPLE.greeting, SAMPLE.sign_off


def question(facts: tuple[str, ...] = (r"\b14[ -]?days?",), doc_id: str | None = "account-delete") -> Question:
    return Question(id="q1", split="heldout", question="Can I undo?", doc_id=doc_id, answer=None, facts=facts)


def test_normalize_folds_case_dashes_quotes_and_spaces() -> None:
    assert (
        normalize("  The\u00a0Team\u2014plan  costs\n**€17** \u2013 don\u2019t `x` ")
        == "the team-plan costs €17 - don't x"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Yes, you have 14 days to restore it.", True),
        ("You can restore it within a 14-day window.", True),
        ("YES — 14 DAYS.", True),
        ("You have 114 days.", False),
        ("You have 7 days.", False),
        ("", False),
    ],
)
def test_a_fact_is_found_in_its_variants_and_not_in_a_wrong_number(answer: str, expected: bool) -> None:
    assert states_facts(question(), answer) is expected


def test_every_fact_must_be_stated() -> None:
    both = question(facts=("authenticator", "security keys?"))
    assert states_facts(both, "Use an authenticator app or a security key.")
    assert not states_facts(both, "Use an authenticator app.")


@pytest.mark.parametrize(
    "answer",
    [
        "I don't have that information in the Quillbyte help center.",
        "I do not know.",
        "The sources do not mention a student discount.",
        "The help center doesn\u2019t say whether that is possible.",
        "This is not mentioned in the provided sources.",
        "I couldn't find anything about smartwatches.",
        "There is no information about a lifetime license.",
        "I don't have information about that.",
        "That isn't mentioned in the sources.",
        "The knowledge base doesn't cover that.",
        "I'm not sure.",
        "I can't provide that.",
    ],
)
def test_abstentions_are_recognised(answer: str) -> None:
    assert abstains(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "Yes, you have 14 days.",
        "Open Settings > Security and click Reset.",
        "No, SMS codes are not offered.",
        "The Team plan is not available in the mobile app.",
        "Storage is not included in the Free plan.",
        "If you can't find the Export button, open Settings.",
    ],
)
def test_answers_are_not_abstentions(answer: str) -> None:
    assert not abstains(answer)


def test_the_voice_rules() -> None:
    steps = f"{GREETING}\n1. Open Settings.\n2. Click Export.\n{SIGN_OFF}"
    sentences = f"{GREETING}\nYes, within 14 days. Open the trash to restore it.\n{SIGN_OFF}"
    assert voice(steps, SAMPLE).all and voice(sentences, SAMPLE).all
    assert voice(f"{GREETING}\nYes, within 14 days.", SAMPLE).sign_off is False
    assert voice(f"Hello!\nYes.\n{SIGN_OFF}", SAMPLE).greeting is False
    seven = "\n".join(f"{n}. Step {n}." for n in range(1, 8))
    assert voice(f"{GREETING}\n{seven}\n{SIGN_OFF}", SAMPLE).format is False
    assert voice(f"{GREETING}\n1. One.\n3. Three.\n{SIGN_OFF}", SAMPLE).format is False
    assert voice(f"{GREETING}\nOne. Two. Three. Four.\n{SIGN_OFF}", SAMPLE).format is False
    assert voice(f"{GREETING}\nOne.\nTwo.\n{SIGN_OFF}", SAMPLE).format is False
    assert voice(f"{GREETING}\nYes, it works (see Settings.)\n{SIGN_OFF}", SAMPLE).format is True
    assert voice(f"{GREETING}\n{SIGN_OFF}", SAMPLE).format is False
    assert not voice("", SAMPLE).all


OTHER = VoiceRules(greeting="Hello from Acme!", sign_off="Acme Care", max_steps=2, max_sentences=1)


def test_each_rule_comes_from_the_voice_scored() -> None:
    """Another voice's greeting, sign-off, step count and sentence count, each checked as its own."""
    assert voice("Hello from Acme!\nYes.\nAcme Care", OTHER).all
    assert not voice(f"{GREETING}\nYes.\n{SIGN_OFF}", OTHER).greeting  # the sample's voice is not Acme's
    assert not voice(f"{GREETING}\nYes.\n{SIGN_OFF}", OTHER).sign_off
    assert not voice("Hello from Acme!\nYes.\nAcme Care", SAMPLE).all
    assert voice("Hello from Acme!\n1. Open.\n2. Save.\nAcme Care", OTHER).format
    assert not voice("Hello from Acme!\n1. Open.\n2. Save.\n3. Close.\nAcme Care", OTHER).format  # 3 > 2 steps
    assert voice(f"{GREETING}\n1. Open.\n2. Save.\n3. Close.\n{SIGN_OFF}", SAMPLE).format  # 3 <= 6
    assert not voice("Hello from Acme!\nYes. It is.\nAcme Care", OTHER).format  # 2 > 1 sentence
    assert voice(f"{GREETING}\nYes. It is.\n{SIGN_OFF}", SAMPLE).format
    no_steps = OTHER.model_copy(update={"max_steps": 0})
    assert not voice("Hello from Acme!\n1. Open.\nAcme Care", no_steps).format


def test_without_voice_rules_the_voice_is_not_scored() -> None:
    """Not 0%: an answer in a voice there are no rules for is not scored on someone else's."""
    assert score(question(), f"{GREETING}\nYes, 14 days.\n{SIGN_OFF}", None).voice is None
    assert score(question(), "Yes, 14 days.", None, SAMPLE).voice == voice("Yes, 14 days.", SAMPLE)


@pytest.mark.parametrize(
    ("data", "at_least", "contact"),
    [
        (REPO / "data" / "finetune" / "train.jsonl", 300, "support@quillbyte.app"),
        (REPO / "data" / "veloway" / "finetune" / "train.jsonl", 100, "care@veloway.example"),
    ],
    ids=["quillbyte", "veloway"],
)
def test_every_answer_of_the_fine_tuning_set_has_the_voice_and_its_refusals_abstain(
    data: Path, at_least: int, contact: str
) -> None:
    """The set's voice file states the rules the adapter was trained on: the training answers pass them."""
    rules = voice_beside(data).rules
    assert rules is not None
    answers = [
        message["content"]
        for line in data.read_text().splitlines()
        for message in json.loads(line)["messages"]
        if message["role"] == "assistant"
    ]
    assert len(answers) > at_least
    assert [a for a in answers if not voice(a, rules).all] == []
    refusals = [a for a in answers if contact in a and "don't have that information" in a]
    assert refusals and all(abstains(a) for a in refusals)


def test_score_per_kind_of_question() -> None:
    answerable, unanswerable = question(), question(facts=(), doc_id=None)
    right = score(answerable, "Yes, 14 days.", ["account-delete", "other"])
    assert (right.correct, right.abstained, right.retrieved) == (True, False, True)
    assert score(answerable, "Yes, 14 days.", ["other"]).retrieved is False
    assert score(answerable, "Yes, 14 days.", None).retrieved is None  # a route that does not retrieve
    assert score(answerable, "I don't know.", []).correct is False
    assert score(unanswerable, "I don't know.", []).correct is True
    assert score(unanswerable, "Yes, there is a smartwatch app.", []).correct is False
    assert score(unanswerable, "I don't know.", ["x"]).retrieved is None  # nothing to find


@pytest.mark.parametrize(
    ("answer", "markers"),
    [
        ("Open Settings [1].", [1]),
        ("See [1][2] and [3].", [1, 2, 3]),
        ("Both say so [1, 2], and [ 4 ] too.", [1, 2, 4]),
        ("Use the [Export] button, then [0].", [0]),
        ("No citation here, see (1) or 1].", []),
    ],
)
def test_citation_markers_are_found_in_every_form(answer: str, markers: list[int]) -> None:
    assert citation_markers(answer) == markers


def test_citations_point_to_the_sources_in_prompt_order() -> None:
    sources = ["other", "account-delete", "other"]
    assert citations("Yes [2].", sources, "account-delete") == Citations(True, True, False)
    assert citations("Yes [1][3].", sources, "account-delete") == Citations(True, False, False)
    assert citations("Yes [1, 4].", sources, "account-delete") == Citations(True, False, True)
    assert citations("Yes [4].", sources, "account-delete") == Citations(False, False, True)
    assert citations("Yes [0].", sources, "account-delete") == Citations(False, False, True)
    assert citations("Yes.", sources, "account-delete") == Citations(False, False, False)
    assert citations("I don't know [1].", sources, None) == Citations(True, False, False)  # nothing to find


def test_citations_are_scored_only_where_the_route_retrieved() -> None:
    cited = score(question(), "Yes, 14 days [1].", ["account-delete"]).citations
    assert cited == Citations(cites=True, cites_document=True, cites_missing=False)
    assert score(question(), "Yes, 14 days [1].", None).citations is None
