"""Simulated users for a live experiment (`ragft experiment simulate`): the experiment's whole path
(arms by user, the answers' records, feedback, the report) tried on the eval set before real
traffic reaches it. Each user asks its share of the answerable questions with `X-Ragft-Route:
experiment`, so the gateway assigns the arm, and posts the feedback the scorer decides: up when
the answer states the question's facts, down when it does not. The scorer stands in for people,
so a report of a simulation measures the arms' fact accuracy, not what users think of them."""

import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import requests

from evals.dataset import Question, in_run_order
from evals.scoring import states_facts
from gateway.client import AnswerFailed, Sessions, chat_body, check_completion, headers
from gateway.contract import EXPERIMENT, EXPERIMENT_HEADER
from ragft.errors import UserFacingError
from ragft.http import check_loopback
from ragft.progress import progress_bar

ARM = re.compile(r"\barm=([a-z]+)")


class SimulationFailed(UserFacingError):
    pass


@dataclass(frozen=True)
class Visit:
    user: str
    question: Question


@dataclass(frozen=True)
class Outcome:
    arm: str  # the arm the gateway assigned (X-Ragft-Experiment); "" when no answer came
    score: float | None  # the feedback posted; None when there was no answer to score
    error: str = ""


def visits(questions: Iterable[Question], users: int, per_user: int, seed: int = 0) -> list[Visit]:
    """`per_user` answerable questions for each of `users` users, dealt in the run's fixed shuffle."""
    answerable = [question for question in in_run_order(list(questions), seed) if question.answerable]
    if not answerable:
        raise SimulationFailed("the eval set has no answerable question to ask")
    return [
        Visit(f"simulated-user-{user}", answerable[(user * per_user + turn) % len(answerable)])
        for user in range(users)
        for turn in range(per_user)
    ]


class Visitor:
    """One user's question through the experiment, then the scorer's feedback on the answer."""

    def __init__(self, gateway: str, api_key: str, max_tokens: int, timeout_s: float) -> None:
        self.gateway = gateway
        self.headers = headers(EXPERIMENT, api_key)
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.sessions = Sessions()

    def __call__(self, visit: Visit) -> Outcome:
        body = chat_body(visit.question.question, max_tokens=self.max_tokens, stream=False) | {"user": visit.user}
        try:
            response = self._post("/v1/chat/completions", body, self.timeout_s)
        except requests.RequestException as exc:
            return Outcome("", None, f"no answer: {exc}")
        if response.status_code != 200:
            return Outcome("", None, f"HTTP {response.status_code}: {response.text[:200]}")
        arm = ARM.search(response.headers.get(EXPERIMENT_HEADER, ""))
        if arm is None:
            raise SimulationFailed(f"the answer names no experiment arm ({EXPERIMENT_HEADER}): is one running?")
        try:
            completion = response.json()
            check_completion(completion)
        except (AnswerFailed, ValueError) as exc:
            return Outcome("", None, str(exc))
        answer = completion["choices"][0]["message"].get("content") or ""
        score = 1.0 if states_facts(visit.question, answer) else -1.0
        feedback = {"id": response.headers["X-Request-ID"], "score": score, "comment": f"scorer: {visit.question.id}"}
        try:
            posted = self._post("/v1/feedback", feedback, 60)
        except requests.RequestException as exc:
            raise SimulationFailed(f"feedback was not posted: {exc}") from None
        if posted.status_code != 200:
            raise SimulationFailed(f"feedback was refused: HTTP {posted.status_code}: {posted.text[:200]}")
        return Outcome(arm.group(1), score)

    def _post(self, path: str, body: dict[str, Any], timeout_s: float) -> requests.Response:
        try:
            return self.sessions.get().post(f"{self.gateway}{path}", json=body, headers=self.headers, timeout=timeout_s)
        except requests.ConnectionError as exc:
            raise SimulationFailed(f"the gateway at {self.gateway} does not answer: {exc}") from None


def simulate_users(
    gateway: str,
    planned: list[Visit],
    *,
    api_key: str = "",
    max_tokens: int = 64,
    concurrency: int = 4,
    timeout_s: float = 300,
) -> list[Outcome]:
    """Every visit, `concurrency` at a time, with a progress bar; the outcomes in the order they ended."""
    check_loopback(gateway)
    visitor = Visitor(gateway.rstrip("/"), api_key, max_tokens, timeout_s)
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(concurrency) as pool, progress_bar() as progress:
        task = progress.add_task("simulated visits", total=len(planned))
        for future in as_completed([pool.submit(visitor, visit) for visit in planned]):
            outcomes.append(future.result())
            progress.advance(task)
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    """Per arm: answers and the scorer's thumbs up; then the refusals, by their first words."""
    lines = []
    for arm, count in sorted(Counter(outcome.arm for outcome in outcomes if outcome.arm).items()):
        up = sum(1 for outcome in outcomes if outcome.arm == arm and outcome.score == 1.0)
        lines.append(f"{arm}: {count} answers, {up} stated the facts (feedback up), {count - up} did not")
    if failed := [outcome.error for outcome in outcomes if outcome.error]:
        lines.append(f"{len(failed)} visits failed; the first: {failed[0]}")
    return "\n".join(lines)
