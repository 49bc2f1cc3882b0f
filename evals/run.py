"""Sends every question through the gateway on every route and records the raw answers in
results.jsonl, one line per (question, route), flushed and synced as each arrives. A rerun with
the same settings skips what is recorded and retries what failed; scoring happens in the report,
from the recorded answers."""

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import requests
from rich.progress import TimeRemainingColumn

from evals.dataset import Question
from evals.voice import RecordedVoice
from gateway.client import AnswerFailed, Sessions, chat_body, check_completion, check_response, headers, server_timing
from gateway.contract import ROUTE_HEADER
from ragft.errors import UserFacingError
from ragft.http import check_loopback
from ragft.progress import progress_bar

RESULTS = "results.jsonl"
CONFIG = "run.json"
# Failures in a row after which the run stops: the stack is down, not one answer.
MAX_FAILURES_IN_A_ROW = 5
FATAL_STATUSES = {400, 401, 403, 404, 413, 422}


class EvalFailed(UserFacingError):
    pass


@dataclass(frozen=True)
class EvalConfig:
    """What a run's answers depend on; a resumed run must have the same. (Each answer records
    its question's text and the model that gave it: an edited question is asked again.) Routes,
    unseen documents and voice rules are not among them: a resume may add routes, and the report
    splits its facts by the latest unseen documents and scores the latest voice."""

    gateway: str
    data: str
    routes: tuple[str, ...]
    max_tokens: int
    adapter: str | None = None
    collection: str | None = None
    unseen_docs: tuple[str, ...] = ()  # documents no fine-tuning example is about (evals.dataset.load_unseen_docs)
    # Sampling fields sent with every request beside temperature 0 (repetition_penalty, stop, ...).
    sampling: dict[str, Any] = field(default_factory=dict)
    # The rules the report scores the voice on (evals.voice.voice_to_score); None: not chosen (yet),
    # so a resume keeps those recorded.
    voice: RecordedVoice | None = None

    def check_resumable(self, out_dir: Path) -> None:
        """Records this config in out_dir, or checks it against the one recorded there."""
        path = out_dir / CONFIG
        mine = asdict(self) | {
            "routes": list(self.routes),
            "unseen_docs": list(self.unseen_docs),
            "voice": self.voice.model_dump() if self.voice else None,
        }
        if not path.exists():
            _write_json(path, mine)
            return
        recorded = {"sampling": {}} | read_config(out_dir)  # runs recorded before sampling sent none
        latest = ("routes", "unseen_docs", "voice")
        changed = [key for key in mine if key not in latest and recorded.get(key) != mine[key]]
        if changed:
            raise EvalFailed(
                f"{out_dir} holds a run with other settings ({', '.join(changed)} differ): "
                "resume it with the same ones, or choose another --out"
            )
        routes = list(dict.fromkeys([*recorded["routes"], *self.routes]))  # adding routes to a run is a resume too
        voice = {"voice": mine["voice"]} if self.voice else {}
        _write_json(path, recorded | {"routes": routes, "unseen_docs": mine["unseen_docs"]} | voice)


def read_config(out_dir: Path) -> dict[str, Any]:
    try:
        config = json.loads((out_dir / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise EvalFailed(f"{out_dir / CONFIG} is missing or damaged ({exc}): not a run folder") from None
    if not isinstance(config, dict) or not isinstance(config.get("routes"), list):
        raise EvalFailed(f"{out_dir / CONFIG} is not a run's settings: not a run folder")
    return config


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Whole or not at all: a crash mid-write leaves the old file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    partial.replace(path)


def read_results(out_dir: Path, questions: Iterable[Question]) -> dict[tuple[str, str], dict[str, Any]]:
    """The last record per (question id, route) of these questions, as worded now (an answer to
    an edited question does not count); a line cut short by a crash is ignored."""
    wording = {q.id: q.question for q in questions}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    path = out_dir / RESULTS
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if wording.get(record["id"]) == record["question"]:
            records[record["id"], record["route"]] = record
    return records


class Asker:
    """One question on one route, non-streamed, timed from request to the whole answer; with
    `passages`, the record also holds the text of the passages put in the prompt."""

    def __init__(self, config: EvalConfig, *, api_key: str, timeout_s: float, passages: bool = False) -> None:
        self.url = f"{config.gateway}/v1/chat/completions"
        self.headers = headers("", api_key, adapter=config.adapter, collection=config.collection)
        self.max_tokens = config.max_tokens
        self.sampling = config.sampling
        self.timeout_s = timeout_s
        self.passages = passages
        self.sessions = Sessions()

    def __call__(self, question: Question, route: str) -> dict[str, Any]:
        record: dict[str, Any] = {"id": question.id, "route": route, "question": question.question}
        body = chat_body(question.question, max_tokens=self.max_tokens, stream=False) | self.sampling
        started = time.perf_counter()
        response = None
        try:
            response = self.sessions.get().post(
                self.url, json=body, headers=self.headers | {ROUTE_HEADER: route}, timeout=self.timeout_s
            )
            check_response(response, route)
            completion = response.json()
            check_completion(completion)
        except requests.ConnectionError as exc:
            raise EvalFailed(f"the gateway at {self.url} does not answer: {exc}") from None
        except (AnswerFailed, requests.RequestException, ValueError) as exc:
            if response is not None and response.status_code in FATAL_STATUSES:
                raise EvalFailed(f"{route}: {exc} (a setting is wrong, not one answer)") from None
            return record | {"status": "error", "error": str(exc)}
        choice = completion["choices"][0]
        usage = completion.get("usage") or {}
        ragft = completion.get("ragft") or {}
        if self.passages:
            record["passages"] = [source["text"] for source in ragft.get("sources", [])]
        return record | {
            "status": "ok",
            "model": completion.get("model"),
            "answer": choice["message"].get("content") or "",
            "finish_reason": choice.get("finish_reason"),
            "answered_as": ragft.get("route", route),  # auto's choice
            "sources": [source["doc_id"] for source in ragft.get("sources", [])],
            # The gateway's grounding check of an answer that retrieved; None where it did not.
            "grounding": ragft.get("grounding"),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "timing": server_timing(response.headers.get("Server-Timing")),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }


def run_eval(
    config: EvalConfig,
    questions: Iterable[Question],
    out_dir: Path,
    *,
    concurrency: int = 1,
    api_key: str = "",
    timeout_s: float = 300,
    say: Callable[[str], None] = print,
) -> int:
    """Asks what out_dir does not hold yet, question by question (every route of a question
    before the next one, so a partial run still compares routes on the same questions). Returns
    the number of requests that failed (they are retried by the next run)."""
    check_loopback(config.gateway)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.check_resumable(out_dir)
    questions = list(questions)
    done = {key for key, record in read_results(out_dir, questions).items() if record["status"] == "ok"}
    todo = [(q, route) for q in questions for route in config.routes if (q.id, route) not in done]
    if len(done):
        say(f"Resuming {out_dir}: {len(done)} answers recorded, {len(todo)} to ask")
    ask = Asker(config, api_key=api_key, timeout_s=timeout_s)
    failures = failures_in_a_row = 0
    with (
        (out_dir / RESULTS).open("a", encoding="utf-8") as results,
        ThreadPoolExecutor(concurrency) as pool,
        progress_bar(TimeRemainingColumn()) as progress,
    ):
        task = progress.add_task("answers", total=len(todo))
        if results.tell() and _last_byte(out_dir / RESULTS) != b"\n":
            results.write("\n")  # end a line a crash cut short, so the next record stands alone

        def keep(record: dict[str, Any]) -> None:
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()
            os.fsync(results.fileno())
            progress.advance(task)

        pending: set[Future[dict[str, Any]]] = set()
        queue = iter(todo)
        try:
            while True:
                pending |= {pool.submit(ask, *item) for item in islice(queue, concurrency - len(pending))}
                if not pending:
                    break
                finished, pending = wait(pending, return_when="FIRST_COMPLETED")
                records = [future.result() for future in finished if future.exception() is None]
                for record in records:
                    keep(record)
                    ok = record["status"] == "ok"
                    failures += not ok
                    failures_in_a_row = 0 if ok else failures_in_a_row + 1
                for future in finished:
                    future.result()  # after keeping the others: a fatal error (EvalFailed) ends the run
                if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                    raise EvalFailed(f"{failures_in_a_row} requests in a row failed; the last: {records[-1]['error']}")
        finally:  # stopped early (a failure, Ctrl-C): keep the answers already on their way
            running = {future for future in pending if not future.cancel()}
            for future in wait(running).done:
                if future.exception() is None:
                    keep(future.result())
    return failures


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as file:
        file.seek(-1, os.SEEK_END)
        return file.read(1)
