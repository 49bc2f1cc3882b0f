"""The grounding check: what it reads as a fact, when two forms of one fact agree, and its verdict
in the `ragft` object of a whole answer and of a stream's last event. The gateway's tests run in
this process against the real retrieval app and the scripted vLLM (a stand-in: it says exactly
the answer a test needs, which the real model cannot be made to)."""

import json
from pathlib import Path

import pytest

from gateway.access import KeyRing
from gateway.config import GatewaySettings
from gateway.grounding import check, facts, number_value, without_disallowed_contacts
from ragft import sse
from tests.gateway.scripted_vllm import Answer, ScriptedVllm
from tests.utils.gateway import InProcessGateway, InProcessStarter

PRICES = (
    "| Plan | Billed annually | Billed monthly |\n| Team | €9 per seat per month | €11 |\n"
    "For 10 seats billed annually: €1,080 per year. Error E-401 means the token expired; the job runs at 07:40. "
    "Write to support@quillbyte.app or see status.quillbyte.app. Students get 15% off."
)
QUESTION = "How much is the Team plan for 12 seats?"
ABSTENTION = GatewaySettings.model_fields["abstention"].default


def verdict(answer: str, sources: tuple[str, ...] = (PRICES,)) -> dict[str, object]:
    return check(answer, sources, [QUESTION]).as_json()


@pytest.mark.parametrize(
    ("stated", "value"),
    [("1,080", "1080"), ("1080", "1080"), ("11.00", "11"), ("15,50", "15.5"), ("0.10", "0.1"), ("7.3.0", "7.3.0")],
)
def test_one_value_however_its_digits_are_grouped(stated: str, value: str) -> None:
    assert number_value(stated) == value


def test_the_facts_of_an_answer_by_kind_leaving_out_citations_and_list_numbers() -> None:
    found = facts('Hi!\n1. Pay €9 [1].\n2. Code E-401 at 7:40, 15% off, see "the Team plan" at status.quillbyte.app.')
    assert [(f.kind, f.value) for f in found] == [
        ("link", "status.quillbyte.app"),
        ("quote", "the team plan"),
        ("time", "07:40"),
        ("code", "E-401"),
        ("amount", "9"),
        ("percent", "15"),
    ]


@pytest.mark.parametrize(
    "answer",
    [
        "The Team plan costs €9 per seat per month billed annually, or €11 monthly [1].",
        "It is 9 euros per seat, 11 EUR monthly.",  # another way of writing the same amounts
        "E-401: the token expired. The job runs at 7:40 and students get 15 percent off.",
        "For your 12 seats, ask support@quillbyte.app.",  # 12 is the user's own number
        "Hi there!\n1. Open Settings.\n2. Choose Team.\n— Quill",  # nothing to check
    ],
)
def test_an_answer_whose_facts_are_in_its_sources_is_supported(answer: str) -> None:
    assert verdict(answer) == {"supported": True, "unsupported": [], "unknown_citations": []}


@pytest.mark.parametrize(
    ("answer", "unsupported"),
    [
        ("The Team plan costs €10.00 per month [1].", ["€10.00"]),  # the README's own question, answered wrong
        ("It is 9% of the price.", ["9%"]),  # a number in the source, but not a share
        ("Error E-402 means the token expired.", ["E-402"]),
        ("The job runs at 7:45.", ["7:45"]),
        ("Reset it at quillbyte-verify.example/login or write to help@quillbyte.app.", None),
        ('The help center says "billed weekly".', ['"billed weekly"']),
    ],
)
def test_a_fact_in_no_source_makes_the_answer_unsupported(answer: str, unsupported: list[str] | None) -> None:
    found = verdict(answer)
    assert found["supported"] is False
    if unsupported is None:  # a link and an address the sources do not give
        assert found["unsupported"] == ["help@quillbyte.app", "quillbyte-verify.example/login"]
    else:
        assert found["unsupported"] == unsupported


def test_a_citation_must_point_to_a_source_it_had() -> None:
    assert verdict("€9 per seat [1][3].", (PRICES, "another passage")) == {
        "supported": False,
        "unsupported": [],
        "unknown_citations": [3],
    }


def test_a_phone_number_is_one_fact_however_its_digits_are_grouped_and_a_date_is_none() -> None:
    found = facts("Call +49 30 8841 2200 or 030 8841 2200 before 2026-12-07; 10 000 riders, 1 200 bikes.")
    assert [(f.kind, f.value) for f in found if f.kind == "phone"] == [
        ("phone", "493088412200"),
        ("phone", "03088412200"),
    ]
    assert ("phone", "2026-12-07") not in [(f.kind, f.text) for f in found]
    source = "Our hotline is 030 8841 2200."
    assert check("Call 030 8841 2200.", [source], []).supported
    assert check("Call 030 8841 2299.", [source], []).as_json()["unsupported"] == ["030 8841 2299"]


def test_a_link_or_address_outside_the_collections_allowed_domains_is_unsupported_even_in_a_source() -> None:
    source = "Reset it at secure-verify.example/login, or see status.quillbyte.app and write to help@quillbyte.app."
    answer = "See status.quillbyte.app, write to help@quillbyte.app, or reset it at secure-verify.example/login."
    assert check(answer, [source], []).supported  # no allow-list: any the collection holds
    only_ours = check(answer, [source], [], domains=["quillbyte.app"])
    assert only_ours.as_json()["unsupported"] == ["secure-verify.example/login"]
    assert without_disallowed_contacts(source, ["quillbyte.app"]) == (
        "Reset it at [link removed], or see status.quillbyte.app and write to help@quillbyte.app."
    )
    assert without_disallowed_contacts("Mail evil@phish.example, version 7.3.0.", []) == (
        "Mail [email removed], version 7.3.0."
    )
    assert without_disallowed_contacts(source, None) == source


def test_its_known_limit_a_number_of_the_source_taken_for_another_fact() -> None:
    """The passage's 10-seat example is not the plan's price, yet it occurs in the passage:
    tying a fact to the evidence that bears on the question is issue 42's evidence selection."""
    assert verdict("The Team plan is €1,080 per year [1].")["supported"] is True


def _ask(
    gateway: InProcessGateway, route: str, *, stream: bool = False, headers: dict[str, str] | None = None
) -> object:
    body = {"model": "x", "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    response = gateway.post("/v1/chat/completions", json=body, headers={"X-Ragft-Route": route, **(headers or {})})
    assert response.status_code == 200, response.text
    return [e for e in sse.events(response.iter_lines()) if e != "[DONE]"] if stream else response.json()


def test_the_verdict_comes_with_every_answer_that_retrieved(
    gateway_in_process: InProcessGateway, vllm_stand_in: ScriptedVllm
) -> None:
    wrong = "Hi there!\nThe Team plan costs €987.65 per month [1] [9].\n— Quill"
    vllm_stand_in.script.extend([Answer(text=wrong), Answer(text=wrong), Answer(text=wrong)])
    rag = _ask(gateway_in_process, "rag")
    assert isinstance(rag, dict)
    grounding = rag["ragft"]["grounding"]
    assert grounding == {
        "supported": False,
        "unsupported": ["€987.65"],
        "unknown_citations": [9],
        "policy": "mark",  # RAGFT_GROUNDING_POLICY's default: the answer goes out, marked
        "abstained": False,
        "reason": None,
        "evidence_coverage": 1.0,  # the passages name every word of the question
    }
    assert rag["choices"][0]["message"]["content"] == wrong
    finetuned = _ask(gateway_in_process, "finetuned")
    assert isinstance(finetuned, dict) and "grounding" not in finetuned["ragft"]
    chunks = _ask(gateway_in_process, "hybrid", stream=True)
    assert isinstance(chunks, list)
    first, last = chunks[0]["ragft"], chunks[-1]["ragft"]
    assert "grounding" not in first and last["grounding"] == grounding  # checked on the streamed text
    assert json.dumps(chunks).count("grounding") == 1


def test_a_link_or_address_may_come_from_anywhere_in_the_collection(
    start_gateway_in_process: InProcessStarter, vllm_stand_in: ScriptedVllm
) -> None:
    """The help center's contact address is on a page that is not among the answer's one passage
    (RAGFT_TOP_K=1): a keyword search of the collection finds it; an address it lacks stays unsupported."""
    answer = "Hi there!\nWrite to support@quillbyte.app or sales@quillbyte.app.\n— Quill"
    vllm_stand_in.script.append(Answer(text=answer))
    with start_gateway_in_process(RAGFT_TOP_K="1") as gateway:
        rag = _ask(gateway, "rag")
    assert isinstance(rag, dict)
    (source,) = rag["ragft"]["sources"]
    assert "support@quillbyte.app" not in source["text"]
    assert rag["ragft"]["grounding"]["unsupported"] == ["sales@quillbyte.app"]


ABSTAIN = {"X-Ragft-Grounding": "abstain"}


def test_under_the_abstain_policy_an_unsupported_answer_never_reaches_the_client(
    gateway_in_process: InProcessGateway, vllm_stand_in: ScriptedVllm
) -> None:
    """The abstention goes out instead, marked; a stream holds the answer until it is checked, so
    no word of it is sent. A supported answer goes out as generated."""
    wrong = "The Team plan costs €987.65 per month."
    vllm_stand_in.script.extend([Answer(text=wrong), Answer(text=wrong), Answer(text="Hello!")])
    whole = _ask(gateway_in_process, "rag", headers=ABSTAIN)
    assert isinstance(whole, dict)
    assert whole["choices"][0]["message"]["content"] == ABSTENTION
    assert whole["ragft"]["grounding"]["abstained"] is True
    assert whole["ragft"]["grounding"]["reason"] == "unsupported"
    assert whole["ragft"]["grounding"]["unsupported"] == ["€987.65"]
    chunks = _ask(gateway_in_process, "hybrid", stream=True, headers=ABSTAIN)
    assert isinstance(chunks, list)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == ABSTENTION and "987" not in json.dumps(chunks[:-1])
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["ragft"]["grounding"] | {"unsupported": []} == {
        "supported": False, "unsupported": [], "unknown_citations": [], "policy": "abstain", "abstained": True,
        "reason": "unsupported", "evidence_coverage": 1.0,
    }  # fmt: skip
    held = _ask(gateway_in_process, "hybrid", stream=True, headers=ABSTAIN)
    assert isinstance(held, list)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in held if c["choices"]) == "Hello!"
    assert held[-1]["ragft"]["grounding"]["abstained"] is False


def test_under_abstain_an_answer_whose_passages_never_name_what_was_asked_is_withheld(
    start_gateway_in_process: InProcessStarter, vllm_stand_in: ScriptedVllm
) -> None:
    """RAGFT_MIN_EVIDENCE_COVERAGE: a near miss (a plan the help center does not have) is
    withheld however well the answer reads; under mark it goes out, with its coverage."""
    vllm_stand_in.script.extend([Answer(text="Hello!")] * 3)
    near_miss = {"model": "x", "messages": [{"role": "user", "content": "How much is the Zorblax plan?"}]}
    with start_gateway_in_process(RAGFT_MIN_EVIDENCE_COVERAGE="0.9") as gateway:
        answered = [
            gateway.post("/v1/chat/completions", json=near_miss, headers={"X-Ragft-Route": "rag", **policy}).json()
            for policy in (ABSTAIN, {})
        ]
        asked = {**near_miss, "messages": [{"role": "user", "content": QUESTION}]}
        covered = gateway.post("/v1/chat/completions", json=asked, headers={"X-Ragft-Route": "rag", **ABSTAIN}).json()
    withheld, marked = (a["ragft"]["grounding"] for a in answered)
    assert withheld["supported"] is True and withheld["abstained"] is True and withheld["reason"] == "evidence"
    assert answered[0]["choices"][0]["message"]["content"] == ABSTENTION
    assert withheld["evidence_coverage"] < 0.9 and marked["evidence_coverage"] == withheld["evidence_coverage"]
    assert marked["abstained"] is False and marked["reason"] is None
    assert answered[1]["choices"][0]["message"]["content"] == "Hello!"
    assert covered["ragft"]["grounding"]["evidence_coverage"] >= 0.9 and not covered["ragft"]["grounding"]["abstained"]


def test_a_keys_policy_applies_unless_the_header_names_another(
    start_gateway_in_process: InProcessStarter, vllm_stand_in: ScriptedVllm, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("careful-key help-center grounding=abstain\nplain-key help-center\n")
    wrong = "The Team plan costs €987.65 per month."
    vllm_stand_in.script.extend([Answer(text=wrong)] * 3)
    with start_gateway_in_process(RAGFT_API_KEYS_FILE=str(keys)) as gateway:
        careful = _ask(gateway, "rag", headers={"Authorization": "Bearer careful-key"})
        plain = _ask(gateway, "rag", headers={"Authorization": "Bearer plain-key"})
        overridden = _ask(gateway, "rag", headers={"Authorization": "Bearer careful-key", "X-Ragft-Grounding": "mark"})
        bad = gateway.post(
            "/v1/chat/completions",
            json={"model": "x", "messages": [{"role": "user", "content": QUESTION}]},
            headers={"Authorization": "Bearer plain-key", "X-Ragft-Grounding": "refuse"},
        )
    contents = [a["choices"][0]["message"]["content"] for a in (careful, plain, overridden) if isinstance(a, dict)]
    assert contents == [ABSTENTION, wrong, wrong]
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "X-Ragft-Grounding"
    assert "use one of: mark, abstain" in bad.json()["error"]["message"]


def test_a_bad_grounding_field_in_the_keys_file_stops_the_gateway_naming_the_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# support\nsecret-key-1 help-center grounding=refuse\n")
    with pytest.raises(ValueError, match="line 2: grounding='refuse': use one of mark, abstain") as refused:
        KeyRing.read("", keys)
    assert "secret-key-1" not in str(refused.value)
