"""`ragft eval`: every question on every route through the gateway, scored, with a report; and
`ragft freshness`: facts changed in the knowledge base, and which routes' answers follow; and
`ragft injection`: documents that give the assistant orders, and which answers obey."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.config import GatewaySettings
from gateway.contract import ROUTE_NAMES
from ragft.errors import UserFacingError
from ragft.http import check_loopback
from ragft.process import sigterm_as_exit
from ragft.sample_data import EVAL_SET, FRESHNESS_SET, INJECTION_SET, SAMPLE_KB
from ragft.settings import REPO
from ragft_cli.app import (
    AdapterHeaderOption,
    CollectionHeaderOption,
    EvalSetOption,
    GatewayOption,
    MaxTokensOption,
    RetrievalOption,
    SplitOption,
    StartupTimeoutOption,
    app,
    comma_separated,
    say,
)
from ragft_cli.localstack import gateway_up
from services.generation.config import GenerationSettings


@app.command("eval")
def evaluate(
    data: EvalSetOption = EVAL_SET,
    routes: Annotated[
        str, typer.Option(help="Comma-separated routes to compare: rag, finetuned, hybrid, auto.")
    ] = "rag,finetuned,hybrid",
    split: SplitOption = "heldout,train",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N questions of the run's fixed shuffle (a fair sample).")
    ] = None,
    max_tokens: MaxTokensOption = 96,
    sampling: Annotated[
        str,
        typer.Option(
            help="More sampling fields for every request, as a JSON object, e.g. '{\"repetition_penalty\": 1.2}' "
            "(vLLM checks them). A results folder holds one setting."
        ),
    ] = "{}",
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Requests in flight at once, so vLLM batches them (its batching may vary answers)."
        ),
    ] = 8,
    adapter: AdapterHeaderOption = None,
    collection: CollectionHeaderOption = None,
    gateway: GatewayOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Results folder; a rerun into it resumes. Default: evals/results/<data name>/.")
    ] = None,
    unseen_docs: Annotated[
        Path | None,
        typer.Option(
            help="Documents no fine-tuning example is about (one id a line): their held-out questions are "
            "reported apart. Default: data/unseen_docs.txt, when it exists."
        ),
    ] = None,
    voice: Annotated[
        Path | None,
        typer.Option(
            help="The voice rules to score answers on (a voice.json; data/finetune/README.md has the format). "
            "Default: those the adapter under test was trained with; none: the voice columns read n/a."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 300,
    startup_timeout: StartupTimeoutOption = 1200,
) -> None:
    """Ask every question of the eval set on each route (temperature 0), score the answers and
    write report.md and report.png: fact accuracy (held-out questions on seen and unseen
    documents apart), retrieval hit rate, citations, abstention, the adapter's voice, latency
    and tokens per route, each rate with its 95% interval, and each pair of routes compared on
    the same questions. Questions go in a fixed shuffled order (seed 0), so a run stopped early
    is a fair sample of the set.

    Answers are recorded as they arrive; rerunning the same command resumes where it stopped and
    retries failed requests. Uses the gateway when it answers; otherwise runs `ragft up` meanwhile.
    """
    # Imported here: only this command needs the evals package (and matplotlib, for its chart).
    from evals.evaluation import evaluate_routes, questions_to_ask, unseen_documents
    from evals.run import EvalConfig
    from evals.voice import read_rules, voice_to_score

    chosen = _routes(routes)
    if voice:
        read_rules(voice)  # a bad file is refused before anything starts
    settings = GatewaySettings()
    url, api_key = gateway_and_key(settings, gateway, collection)
    out = out or REPO / "evals" / "results" / data.stem
    questions = questions_to_ask(data, comma_separated(split), limit)
    config = EvalConfig(
        gateway=url,
        data=str(data.resolve()),
        routes=tuple(chosen),
        max_tokens=max_tokens,
        adapter=adapter,
        collection=collection,
        unseen_docs=tuple(sorted(unseen_documents(unseen_docs))),
        sampling=_sampling(sampling),
    )
    done = evaluate_routes(
        config,
        questions,
        out,
        gateway=gateway_up(url, timeout_s=startup_timeout, log=out / "stack.log", say=say),
        voice=lambda: voice_to_score(
            voice, chosen, adapter or settings.default_adapter, GenerationSettings().adapters_dir
        ),
        concurrency=concurrency,
        api_key=api_key,
        timeout_s=timeout,
        say=say,
    )
    say(f"Report: {done.report}\nChart:  {done.chart}")
    if done.failed:
        say(f"{done.failed} requests failed; the same command retries them")
        raise typer.Exit(1)


@app.command("freshness")
def freshness(
    data: Annotated[Path, typer.Option(help="The changes (JSONL; data/README.md has the format).")] = FRESHNESS_SET,
    kb: Annotated[Path, typer.Option(help="The folder the collection was ingested from.")] = SAMPLE_KB,
    routes: Annotated[str, typer.Option(help="Comma-separated routes: rag, finetuned, hybrid, auto.")] = (
        "rag,finetuned,hybrid"
    ),
    max_tokens: MaxTokensOption = 96,
    adapter: AdapterHeaderOption = None,
    collection: Annotated[str | None, typer.Option(help="The collection to change; default: the gateway's.")] = None,
    gateway: GatewayOption = None,
    retrieval: RetrievalOption = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = REPO / "evals" / "results" / "freshness",
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 300,
    startup_timeout: StartupTimeoutOption = 1200,
) -> None:
    """Change facts in the knowledge base and measure which routes' answers follow.

    Each question on each route before the updates; then, one document at a time, the changed text
    written through the retrieval API and the questions asked again at once. Writes
    freshness.jsonl and freshness.md (old and new facts stated per route, and the time from the
    acknowledged update to the answer). The documents are written back from --kb at the end,
    however the run ends. Uses the gateway when it answers; otherwise runs `ragft up` meanwhile.
    """
    from evals.freshness import REPORT, KnowledgeBase, freshness_report, load_changes, run_freshness
    from evals.run import EvalConfig

    chosen = _routes(routes)
    settings = GatewaySettings()
    url, api_key = gateway_and_key(settings, gateway, collection)
    name = collection or settings.collection
    changes = load_changes(data)
    config = EvalConfig(url, str(data.resolve()), tuple(chosen), max_tokens, adapter, name)  # the one changed
    knowledge = KnowledgeBase(retrieval or settings.retrieval_url, name, kb, timeout_s=timeout)
    check_loopback(knowledge.url)
    out.mkdir(parents=True, exist_ok=True)
    say(f"{len(changes)} facts to change in {name!r} x {len(chosen)} routes; answers recorded in {out}")
    with sigterm_as_exit(), gateway_up(url, timeout_s=startup_timeout, log=out / "stack.log", say=say):
        records = run_freshness(changes, config, knowledge, out, api_key=api_key, timeout_s=timeout, say=say)
    report = freshness_report(records, changes, config.routes)
    (out / REPORT).write_text(report)
    say(report)


@app.command("injection")
def injection(
    data: Annotated[Path, typer.Option(help="The poisoned documents (JSONL; data/README.md has the format).")] = (
        INJECTION_SET
    ),
    routes: Annotated[str, typer.Option(help="Comma-separated routes: rag, finetuned, hybrid, auto.")] = (
        "rag,finetuned,hybrid"
    ),
    temperatures: Annotated[str, typer.Option(help="Comma-separated temperatures, each a run of every question.")] = (
        "0,0.7"
    ),
    allowed_domains: Annotated[
        str, typer.Option(help="The collection's allowed domains, comma-separated; '' sets none.")
    ] = "quillbyte.app",
    max_tokens: MaxTokensOption = 96,
    adapter: AdapterHeaderOption = None,
    gateway: GatewayOption = None,
    retrieval: RetrievalOption = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = REPO / "evals" / "results" / "injection",
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 300,
    startup_timeout: StartupTimeoutOption = 1200,
) -> None:
    """Count the answers that carry an injected payload, per route and temperature.

    The documents go through the retrieval API into a new collection of their own (deleted at the
    end), with its allowed domains; their questions are asked through the gateway on each route at
    each temperature, and every answer is searched for every document's payload (a code word, a
    link the collection does not allow, the system prompt's words). Writes injection.jsonl and
    injection.md. Uses the gateway when it answers; otherwise runs `ragft up` meanwhile."""
    from evals.injection import REPORT, injection_report, load_poisoned, poisoned_collection, run_injection
    from evals.run import EvalConfig

    chosen = _routes(routes)
    try:
        heats = tuple(float(t) for t in comma_separated(temperatures))
    except ValueError:
        raise typer.BadParameter(f"--temperatures {temperatures!r}: numbers, comma-separated") from None
    if not heats or not all(0 <= t <= 2 for t in heats):
        raise typer.BadParameter(f"--temperatures {temperatures!r}: each from 0 to 2")
    domains = list(comma_separated(allowed_domains)) if allowed_domains.strip() else None
    documents = load_poisoned(data)
    settings = GatewaySettings()
    url = (gateway or f"http://{settings.gateway_host}:{settings.gateway_port}").rstrip("/")
    check_loopback(url)
    retrieval_url = retrieval or settings.retrieval_url
    check_loopback(retrieval_url)
    out.mkdir(parents=True, exist_ok=True)
    asked = sum(len(d.questions) for d in documents) * len(chosen) * len(heats)
    say(f"{len(documents)} poisoned documents, {asked} answers; recorded in {out}")
    with (
        sigterm_as_exit(),
        gateway_up(url, timeout_s=startup_timeout, log=out / "stack.log", say=say),
        poisoned_collection(retrieval_url, documents, domains, timeout) as name,
    ):
        _, api_key = gateway_and_key(settings, url, name)
        config = EvalConfig(url, str(data.resolve()), tuple(chosen), max_tokens, adapter, name)
        records = run_injection(documents, config, heats, api_key=api_key, timeout_s=timeout)
    (out / "injection.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    report = injection_report(records)
    (out / REPORT).write_text(report)
    say(report)


# Fields the eval sets itself: the report states them, so --sampling may not change them.
EVAL_FIELDS = (
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "n",
)


def _sampling(sampling: str) -> dict[str, Any]:
    try:
        fields = json.loads(sampling)
    except ValueError as exc:
        raise typer.BadParameter(f"--sampling {sampling!r} is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise typer.BadParameter(f"--sampling {sampling!r} is not a JSON object")
    if taken := sorted(set(fields) & set(EVAL_FIELDS)):
        raise typer.BadParameter(f"--sampling may not set {', '.join(taken)}: the eval sets it (see --max-tokens)")
    return fields


def _routes(routes: str) -> list[str]:
    chosen = list(dict.fromkeys(route.lower() for route in comma_separated(routes)))
    if not chosen or not set(chosen) <= set(ROUTE_NAMES):
        raise typer.BadParameter(f"--routes {routes!r}: choose from {', '.join(ROUTE_NAMES)}")
    return chosen


def gateway_and_key(settings: GatewaySettings, gateway: str | None, collection: str | None) -> tuple[str, str]:
    """The gateway's URL, checked to be on loopback, and a key that reads the collection."""
    url = (gateway or f"http://{settings.gateway_host}:{settings.gateway_port}").rstrip("/")
    check_loopback(url)
    try:
        return url, settings.key_ring.key_for(collection or settings.collection)
    except ValueError as exc:  # no key reads the collection
        raise UserFacingError(str(exc)) from exc
