"""`ragft eval` in one call: the questions in their run order, each asked on every route through
a gateway that is up for the run, then the report of what was recorded."""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from evals.dataset import Question, in_run_order, load_questions, load_unseen_docs
from evals.report import build_report
from evals.run import EvalConfig, run_eval
from evals.voice import RecordedVoice
from ragft.process import sigterm_as_exit
from ragft.sample_data import UNSEEN_DOCS


@dataclass(frozen=True)
class Evaluated:
    report: Path
    chart: Path
    failed: int  # requests that failed: the same command asks them again


def questions_to_ask(data: Path, splits: list[str], limit: int | None = None) -> list[Question]:
    """The first `limit` questions of `splits` in the run's fixed shuffle: a fair sample of the set."""
    return in_run_order(load_questions(data, splits))[:limit]


def unseen_documents(path: Path | None) -> frozenset[str]:
    """The documents `path` lists; by default those of data/unseen_docs.txt, or none when it is missing."""
    if path is None and not UNSEEN_DOCS.exists():
        return frozenset()
    return load_unseen_docs(path or UNSEEN_DOCS)


def evaluate_routes(
    config: EvalConfig,
    questions: list[Question],
    out: Path,
    *,
    gateway: AbstractContextManager[object],
    voice: Callable[[], RecordedVoice],
    concurrency: int = 1,
    api_key: str = "",
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
) -> Evaluated:
    """Records the answers in `out` (a rerun resumes) while `gateway` holds the gateway up,
    then writes the report. `out` is checked to be resumable before `gateway` starts anything;
    `voice` is asked for the rules to score once it is up, as the stack it starts may install
    the adapter under test."""
    out.mkdir(parents=True, exist_ok=True)
    config.check_resumable(out)
    say(f"{len(questions)} questions x {len(config.routes)} routes; answers recorded in {out}")
    # SIGTERM stops the run as Ctrl-C does, keeping the answers already on their way.
    with sigterm_as_exit(), gateway:
        scored = voice()
        say(
            f"Voice scored on the rules of {scored.origin}"
            if scored.rules is not None
            else f"Voice not scored: {scored.origin}"
        )
        config = replace(config, voice=scored)
        failed = run_eval(
            config, questions, out, concurrency=concurrency, api_key=api_key, timeout_s=timeout_s, say=say
        )
    report, chart = build_report(out)
    return Evaluated(report, chart, failed)
