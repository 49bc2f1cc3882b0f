"""Settings shared by every service: environment variables with the `RAGFT_` prefix."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# The checkout: its data/ folder, and the working directory of the programs it starts.
REPO = Path(__file__).resolve().parent.parent

# Collection names become folder names in the embedded store and path segments in URLs;
# the retrieval service and the gateway both check them.
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def check_document_id(doc_id: str) -> str:
    """Ids are URL paths too: an empty, "." or ".." segment would be resolved away on the way."""
    if any(segment in ("", ".", "..") for segment in doc_id.split("/")):
        raise ValueError(f"document id {doc_id!r} has an empty, '.' or '..' path segment")
    return doc_id


# Any text without control characters; the gateway and the retrieval service both check it.
DocumentId = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$"), AfterValidator(check_document_id)
]


class RagftSettings(BaseSettings):
    """Base class for each service's settings; subclasses add their own fields."""

    # An error names the setting, never its value: some values are keys.
    model_config = SettingsConfigDict(
        env_prefix="RAGFT_", extra="ignore", env_nested_delimiter="__", hide_input_in_errors=True
    )

    data_dir: Path = Path("var")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    retrieval_url: str = "http://127.0.0.1:8001"
    generation_url: str = "http://127.0.0.1:8002"
    # The name vLLM serves the base model under; adapters are served under their own names.
    served_model_name: str = "base"
    collection: str = "help-center"
    default_adapter: str = "support-voice"
    # Larger request bodies get a 413 before they are read; each service sets its own default.
    max_body_bytes: int = Field(1 << 20, ge=1024)
    # After SIGTERM: /readyz says 503, new requests get 503, and those in flight get this long to finish.
    drain_s: float = Field(30, ge=0)


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per setting that failed validation, named as its environment variable."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        setting = "_".join(str(part) for part in error["loc"]).upper()
        where = f"RAGFT_{setting}: " if setting else ""  # a check across settings names them itself
        lines.append(f"error: {where}{error['msg'].removeprefix('Value error, ')}")
    return lines
