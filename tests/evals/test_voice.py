"""The voice rules as data: a fine-tuning set's voice file, what an adapter's ragft.json records
of it, which rules a run scores (--voice, else the adapter under test's, else none), and a
resumed run keeping them."""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from evals.run import EvalConfig, read_config
from evals.voice import (
    SAMPLE_VOICE,
    RecordedVoice,
    VoiceError,
    VoiceRules,
    adapter_voice,
    read_rules,
    sample_rules,
    voice_beside,
    voice_to_score,
)
from ragft.sample_data import FINETUNE_SET, SHIPPED_ADAPTER, TINY_FINETUNE_SET

ACME: dict[str, Any] = {"greeting": "Hello from Acme!", "sign_off": "Acme Care", "max_steps": 4, "max_sentences": 2}


def write(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


def test_the_samples_voice_file_holds_quillbytes_rules() -> None:
    assert sample_rules() == VoiceRules(
        greeting="Hi there, thanks for reaching out to Quillbyte Support!",
        sign_off="— Quill, Quillbyte Support",
        max_steps=6,
        max_sentences=3,
    )
    # Both sample sets lie beside it: an adapter trained on either records it.
    assert (
        voice_beside(FINETUNE_SET)
        == voice_beside(TINY_FINETUNE_SET)
        == RecordedVoice(rules=sample_rules(), origin=str(SAMPLE_VOICE))
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"sign_off": None}, "sign_off"),
        ({"greeting": "Hi!\nWelcome."}, "greeting: Value error, must be one line"),
        ({"greeting": " Hi! "}, "greeting: Value error, must be one line"),
        ({"greeting": ""}, "greeting"),
        ({"max_steps": -1}, "max_steps"),
        ({"max_sentences": 0}, "max_sentences"),
        ({"max_steps": "6"}, "max_steps"),
        ({"signoff": "Acme Care"}, "signoff: Extra inputs are not permitted"),
    ],
)
def test_a_bad_voice_file_is_refused_naming_the_file_and_the_rule(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    rules = {key: value for key, value in (ACME | change).items() if value is not None}
    path = write(tmp_path / "voice.json", rules)
    with pytest.raises(VoiceError, match=f"^{path}: {named}"):
        read_rules(path)


def test_an_unreadable_voice_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match="cannot read the voice rules"):
        read_rules(tmp_path / "missing.json")
    (tmp_path / "voice.json").write_text("{not json")
    with pytest.raises(VoiceError, match="not JSON"):
        read_rules(tmp_path / "voice.json")


def test_a_set_without_a_voice_file_records_why_it_has_no_rules(tmp_path: Path) -> None:
    data = tmp_path / "acme" / "train.jsonl"
    assert voice_beside(data) == RecordedVoice(rules=None, origin=f"no voice.json beside {data}")
    write(data.parent / "voice.json", ACME)
    assert voice_beside(data) == RecordedVoice(rules=VoiceRules(**ACME), origin=str(data.parent / "voice.json"))


def test_an_adapter_s_voice_is_the_one_its_ragft_json_records(tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    recorded = {"rules": ACME, "origin": "/data/acme/voice.json"}
    write(folder / "ragft.json", {"data": "/data/acme/train.jsonl", "voice": recorded})
    assert adapter_voice("acme", folder) == RecordedVoice(
        rules=VoiceRules(**ACME), origin="adapter 'acme', trained with /data/acme/voice.json"
    )
    write(folder / "ragft.json", {"data": "/data/acme/train.jsonl", "voice": {"rules": None, "origin": "no voice"}})
    assert adapter_voice("acme", folder).rules is None


def test_an_adapter_trained_before_voices_were_recorded_has_the_voice_beside_its_data(tmp_path: Path) -> None:
    assert adapter_voice("support-voice", SHIPPED_ADAPTER).rules == sample_rules()  # so its scores stay as they were
    # As the shipped adapter was: its data relative to the checkout, where `make adapter` ran.
    shipped = write(tmp_path / "support-voice" / "ragft.json", {"data": "data/finetune/train.jsonl"}).parent
    assert adapter_voice("support-voice", shipped) == RecordedVoice(
        rules=sample_rules(), origin=f"adapter 'support-voice', trained with {SAMPLE_VOICE}"
    )
    folder = tmp_path / "old"
    write(folder / "ragft.json", {"data": str(tmp_path / "set" / "train.jsonl")})
    assert adapter_voice("old", folder).rules is None
    write(tmp_path / "set" / "voice.json", ACME)
    assert adapter_voice("old", folder).rules == VoiceRules(**ACME)


def test_the_voice_scored_is_the_option_s_then_the_adapter_s_then_none(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    write(adapters / "acme" / "ragft.json", {"data": "x", "voice": {"rules": ACME, "origin": "acme.json"}})
    other = write(tmp_path / "other.json", ACME | {"greeting": "Howdy!"})
    assert voice_to_score(other, ["finetuned"], "acme", adapters).rules == VoiceRules(**ACME | {"greeting": "Howdy!"})
    assert voice_to_score(None, ["rag", "hybrid"], "acme", adapters).rules == VoiceRules(**ACME)
    assert voice_to_score(None, ["rag"], "acme", adapters) == RecordedVoice(
        rules=None, origin="no route of this run answers with an adapter"
    )
    assert voice_to_score(None, ["auto"], "missing", adapters) == RecordedVoice(
        rules=None, origin=f"no adapter 'missing' in {adapters} to read the voice of"
    )
    (adapters / "foreign").mkdir()  # trained by another tool: no ragft.json
    assert "has no" in voice_to_score(None, ["finetuned"], "foreign", adapters).origin
    with pytest.raises(VoiceError, match="cannot read the voice rules"):
        voice_to_score(tmp_path / "missing.json", ["finetuned"], "acme", adapters)


def test_a_resumed_run_scores_the_latest_voice_and_keeps_the_recorded_one_until_chosen(tmp_path: Path) -> None:
    acme = RecordedVoice(rules=VoiceRules(**ACME), origin="acme")
    config = EvalConfig("http://127.0.0.1:1", "/eval.jsonl", ("finetuned",), max_tokens=8)
    config.check_resumable(tmp_path)
    assert read_config(tmp_path)["voice"] is None
    replace(config, voice=acme).check_resumable(tmp_path)
    assert read_config(tmp_path)["voice"] == acme.model_dump()
    config.check_resumable(tmp_path)  # checked before the stack is up: the voice is not chosen yet
    assert read_config(tmp_path)["voice"] == acme.model_dump()
    none = RecordedVoice(rules=None, origin="no route of this run answers with an adapter")
    replace(config, voice=none).check_resumable(tmp_path)
    assert read_config(tmp_path)["voice"] == none.model_dump()
