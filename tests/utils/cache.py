"""The cache of what the tests build once (the prepared base model, the test adapter), kept
outside the checkout and keyed by everything that makes each entry."""

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.lora import file_sha256

CACHE = Path(os.environ.get("RAGFT_TEST_CACHE") or Path.home() / ".cache" / "ragft")


def cache_key(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def source_sha256(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return file_sha256(Path(spec.origin))


@contextmanager
def cache_lock() -> Iterator[None]:
    """One pytest session at a time builds what the cache is missing."""
    from filelock import FileLock

    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(CACHE / ".lock"):
        yield


def versions(*distributions: str) -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in distributions]
