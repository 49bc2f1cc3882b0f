"""Settings shared by every service: environment variables with the `RAGFT_` prefix."""

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class RagftSettings(BaseSettings):
    """Base class for each service's settings; subclasses add their own fields."""

    model_config = SettingsConfigDict(env_prefix="RAGFT_", extra="ignore", env_nested_delimiter="__")

    data_dir: Path = Path("var")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    retrieval_url: str = "http://127.0.0.1:8001"
    collection: str = "help-center"
    default_adapter: str = "support-voice"
