"""A base model's identity: a digest of what the model is (its config and its weights), not of
where its folder lies, so an adapter trained on it is matched wherever the model is moved."""

import contextlib
import hashlib
import json
from pathlib import Path

CONFIG = "config.json"
WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt"}
# Which library wrote the config, and from where it was loaded: not what the model is.
WRITER_KEYS = {"transformers_version", "_name_or_path"}
# Beside the model: its identity and the sizes and mtimes of the files it was computed from, so
# a check does not read the weights again (about 1 GB/s here: 0.3 s for 270 MB, but some 15 s
# for a 7B model's 15 GB at every launch).
CACHE = "ragft-identity.json"
# Raised whenever what goes into an identity changes, so no cache computed the old way is read.
DEFINITION = 1


def model_identity(folder: Path) -> str | None:
    """The SHA-256 of the config (less WRITER_KEYS) and of each weight file's own SHA-256, by
    name; None where `folder` is not a model folder with a readable config and weights (a hub
    name, a missing folder: vLLM names what is wrong with it)."""
    config_file = folder / CONFIG
    if not config_file.is_file():
        return None
    weights = sorted(path for path in folder.iterdir() if path.suffix in WEIGHT_SUFFIXES and path.is_file())
    if not weights:
        return None
    files = {path.name: [path.stat().st_size, path.stat().st_mtime_ns] for path in [config_file, *weights]}
    if cached := _cached_identity(folder, files):
        return cached
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    digests = {}
    for path in weights:
        with path.open("rb") as weight_file:
            digests[path.name] = hashlib.file_digest(weight_file, "sha256").hexdigest()
    manifest = {"config": {k: v for k, v in config.items() if k not in WRITER_KEYS}, "weights": digests}
    identity = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    with contextlib.suppress(OSError):  # a read-only model folder is hashed again at each check
        (folder / CACHE).write_text(json.dumps({"definition": DEFINITION, "sha256": identity, "files": files}) + "\n")
    return identity


def _cached_identity(folder: Path, files: dict[str, list[int]]) -> str | None:
    """The identity computed before from files of these sizes and mtimes; None when there is none,
    or it is stale or torn."""
    try:
        cached = json.loads((folder / CACHE).read_text())
    except (OSError, ValueError):
        return None
    current = isinstance(cached, dict) and cached.get("definition") == DEFINITION and cached.get("files") == files
    identity = cached.get("sha256") if current else None
    return identity if isinstance(identity, str) else None
