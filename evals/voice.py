"""The voice a fine-tuning set teaches, as rules the eval scores answers on: the greeting line,
the sign-off line and the body's shape. A set describes its voice in voice.json beside its
examples (data/finetune/README.md); `ragft finetune` records the rules in the adapter's
ragft.json, and `ragft eval` scores the adapter under test on them."""

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evals.dataset import first_error
from gateway.contract import Route
from ragft.errors import UserFacingError
from ragft.sample_data import FINETUNE_SET
from ragft.settings import REPO
from services.generation.adapters import REPORT

VOICE_FILE = "voice.json"  # beside a fine-tuning set's examples
SAMPLE_VOICE = FINETUNE_SET.parent / VOICE_FILE  # Quillbyte Support's


class VoiceError(UserFacingError):
    pass


class VoiceRules(BaseModel):
    """Every assistant turn: the greeting as its first line, the sign-off as its last, and between
    them numbered steps (`1. `, `2. `, ...) or one line of a few sentences."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    greeting: str = Field(min_length=1)
    sign_off: str = Field(min_length=1)
    max_steps: int = Field(ge=0)  # 0: the voice gives no numbered steps
    max_sentences: int = Field(ge=1)

    @field_validator("greeting", "sign_off")
    @classmethod
    def _one_line(cls, line: str) -> str:
        # Answers are compared line by line, each stripped: anything else could never match.
        if "\n" in line or line != line.strip():
            raise ValueError("must be one line, without spaces around it")
        return line


class RecordedVoice(BaseModel):
    """What an adapter's ragft.json and a run's run.json record of a voice: the rules and where
    they came from; without rules, why there are none (the report's voice columns read n/a)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: VoiceRules | None
    origin: str


def read_rules(path: Path) -> VoiceRules:
    """A voice file's rules; VoiceError names the file and what is wrong with it."""
    try:
        return VoiceRules.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise VoiceError(f"cannot read the voice rules {path}: {exc.strerror}") from None
    except (ValueError, ValidationError) as exc:
        raise VoiceError(f"{path}: {first_error(exc)} (data/finetune/README.md describes the voice rules)") from None


@cache
def sample_rules() -> VoiceRules:
    return read_rules(SAMPLE_VOICE)


def voice_beside(data: Path) -> RecordedVoice:
    """The voice of the fine-tuning set `data`: the voice file in its folder, or none."""
    path = data.parent / VOICE_FILE
    if not path.exists():
        return RecordedVoice(rules=None, origin=f"no {VOICE_FILE} beside {data}")
    return RecordedVoice(rules=read_rules(path), origin=str(path))


def adapter_voice(name: str, folder: Path) -> RecordedVoice:
    """The voice adapter `name` was trained with, as its ragft.json records it; for an adapter
    trained before ragft recorded voices, the voice file beside the examples it records (a
    relative path is the checkout's, as `make adapter` records it)."""
    try:
        record = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RecordedVoice(rules=None, origin=f"adapter {name!r} has no {folder / REPORT} saying what it learned")
    except (OSError, ValueError) as exc:
        raise VoiceError(f"cannot read {folder / REPORT}: {exc}") from None
    try:
        recorded = (
            RecordedVoice.model_validate(record["voice"])
            if "voice" in record
            else voice_beside(REPO / str(record["data"]))  # an absolute path stays itself
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise VoiceError(
            f"{folder / REPORT}: no voice or data recorded as ragft finetune records them ({exc})"
        ) from None
    return recorded.model_copy(update={"origin": f"adapter {name!r}, trained with {recorded.origin}"})


def voice_to_score(voice_file: Path | None, routes: Iterable[str], adapter: str, adapters_dir: Path) -> RecordedVoice:
    """The rules a run scores: `voice_file` when given (it wins), else those of the adapter
    under test where a route answers with it, else none."""
    if voice_file is not None:
        return RecordedVoice(rules=read_rules(voice_file), origin=f"--voice {voice_file}")
    if all(route == Route.RAG for route in routes):
        return RecordedVoice(rules=None, origin="no route of this run answers with an adapter")
    folder = adapters_dir / adapter
    if not folder.is_dir():
        return RecordedVoice(rules=None, origin=f"no adapter {adapter!r} in {adapters_dir} to read the voice of")
    return adapter_voice(adapter, folder)
