"""LoRA adapters: the folders under RAGFT_ADAPTERS_DIR, checked before vLLM sees them, and
loaded or unloaded while vLLM runs through its runtime LoRA endpoints."""

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx

from ragft.errors import UserFacingError
from services.generation.config import VLLM_RANKS
from services.generation.identity import model_identity

ADAPTER_CONFIG = "adapter_config.json"
REPORT = "ragft.json"  # what `ragft finetune` records beside the weights
ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AdapterError(UserFacingError):
    pass


@dataclass(frozen=True)
class Adapter:
    name: str
    path: Path
    rank: int
    base_model: str
    # The base model's identity (services/generation/identity.py) as training recorded it; None
    # for adapters trained before ragft recorded it, or by other tools.
    base_model_sha256: str | None = None


def read_adapter(name: str, path: Path) -> Adapter:
    if not ADAPTER_NAME.match(name):
        raise AdapterError(f"adapter name {name!r}: use letters, digits, '.', '_' and '-'")
    config_file = path / ADAPTER_CONFIG
    try:
        config = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise AdapterError(f"{path} is not a PEFT adapter folder (no {ADAPTER_CONFIG})") from None
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{config_file} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type") != "LORA" or not isinstance(config.get("r"), int):
        raise AdapterError(f"{config_file}: not a LoRA adapter config (needs peft_type LORA and an integer r)")
    base_model = str(config.get("base_model_name_or_path") or "")
    return Adapter(name, path.resolve(), config["r"], base_model, _recorded_identity(path))


def _recorded_identity(path: Path) -> str | None:
    try:
        report = json.loads((path / REPORT).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{path / REPORT} is not valid JSON: {exc}") from exc
    identity = report.get("base_model_sha256") if isinstance(report, dict) else None
    return identity if isinstance(identity, str) else None


def discover(adapters_dir: Path) -> list[Adapter]:
    """Every adapter folder under the directory; a folder that is not one is an error, not a
    silent skip, so a broken adapter cannot quietly disappear from service."""
    if not adapters_dir.is_dir():
        return []
    return [
        read_adapter(p.name, p) for p in sorted(adapters_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")
    ]


def install_adapter(source: Path, out: Path, base_model: str) -> Path:
    """A copy of an adapter trained on another machine, recorded as trained on this machine's
    folder of the same base model (the caller knows it is the same): its path and its identity,
    as this machine prepared it. Staged, then renamed."""
    staged = out.with_name(f".{out.name}.installing")
    shutil.rmtree(staged, ignore_errors=True)  # what an interrupted install left
    shutil.copytree(source, staged)
    config_file = staged / ADAPTER_CONFIG
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": base_model}, indent=2) + "\n")
    if (report_file := staged / REPORT).is_file():
        report = json.loads(report_file.read_text())
        here = {"base_model": base_model, "base_model_sha256": model_identity(Path(base_model))}
        report_file.write_text(json.dumps({**report, **here}, indent=2) + "\n")
    staged.rename(out)
    return out


def check_rank(adapter: Adapter, max_rank: int) -> None:
    """vLLM makes room for ranks up to --max-lora-rank (RAGFT_MAX_LORA_RANK) and refuses the rest."""
    if adapter.rank <= max_rank:
        return
    fitting = [rank for rank in VLLM_RANKS if rank >= adapter.rank]
    remedy = (
        f"set RAGFT_MAX_LORA_RANK={fitting[0]}, or train it with a smaller rank"
        if fitting
        else f"vLLM serves ranks up to {VLLM_RANKS[-1]}: train it with a smaller rank"
    )
    raise AdapterError(
        f"adapter {adapter.name!r} has LoRA rank {adapter.rank}, above RAGFT_MAX_LORA_RANK={max_rank}: {remedy}"
    )


def same_model(a: str, b: str) -> bool:
    """Adapters record their base as a folder or a hub name: the same folder, or the same name."""
    return Path(a).resolve() == Path(b).resolve() or a.rstrip("/").lower() == b.rstrip("/").lower()


def _mismatch(adapter: Adapter, base_model: str) -> str | None:
    """Why the adapter was not trained on the model served from `base_model`; None when it was.
    By identity where the adapter recorded one and `base_model` is a model folder here; by folder
    or name otherwise (an adapter from before identities, a hub name)."""
    recorded = adapter.base_model_sha256
    served = model_identity(Path(base_model)) if recorded else None
    if recorded and served:
        if served == recorded:
            return None
        return (
            f"adapter {adapter.name!r} was trained on {adapter.base_model!r} (identity {recorded[:12]}), but this "
            f"service serves {base_model!r} (identity {served[:12]}), another model. Serve the model it was trained "
            "on (RAGFT_BASE_MODEL), or train the adapter again on this one (ragft finetune)"
        )
    if not adapter.base_model or same_model(adapter.base_model, base_model):
        return None
    compared = (
        "the served model is no folder here whose identity ragft can compute, so the names are compared"
        if recorded
        else f"its {REPORT} records no identity of its base model, so the folders are compared"
    )
    return (
        f"adapter {adapter.name!r} was trained on {adapter.base_model!r}, but this service serves {base_model!r} "
        f"({compared}). Serve the model it was trained on (RAGFT_BASE_MODEL), or train the adapter again on this "
        "one (ragft finetune), which records the model's identity"
    )


def check_compatible(adapter: Adapter, base_model: str) -> None:
    if reason := _mismatch(adapter, base_model):
        raise AdapterError(reason)


def check_base_model(adapter: Adapter, served: list[dict[str, str | None]]) -> None:
    """Before a runtime load: the adapter must have been trained on the model being served."""
    bases = [str(m["root"]) for m in served if not m["parent"]]
    reasons = [_mismatch(adapter, base) for base in bases]
    if reasons and all(reasons):
        raise AdapterError(str(reasons[0]))


class AdapterClient:
    """`ragft adapters ...` against a running generation service."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=120)

    def models(self) -> list[dict[str, str | None]]:
        response = self._call("GET", "/v1/models")
        return [{"id": m["id"], "parent": m.get("parent"), "root": m.get("root")} for m in response.json()["data"]]

    def load(self, name: str, path: Path) -> None:
        self._call("POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path.resolve())})

    def unload(self, name: str) -> None:
        self._call("POST", "/v1/unload_lora_adapter", json={"lora_name": name})

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise AdapterError(f"generation service unreachable at {self.client.base_url}: {exc}") from exc
        if not response.is_success:
            try:
                message = response.json().get("error", {}).get("message") or response.text
            except ValueError:
                message = response.text
            raise AdapterError(f"vLLM answered {response.status_code}: {message[:500]}")
        return response
