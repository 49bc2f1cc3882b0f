"""Experiments between routes and feedback on answers: the split itself in-process; the gateway
with a real Redis in front of the real retrieval service and the scripted vLLM (a stand-in: those
tests are about what the gateway records, and they kill processes midway); then one experiment on
the real stack, real vLLM included, read back by `ragft experiment report`."""

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

from gateway.access import KeyRing
from gateway.experiments import Experiment, arm_for
from ragft.errors import InvalidRequest
from tests.gateway.scripted_vllm import Answer, ScriptedVllm, scripted_vllm
from tests.utils.gateway import GatewayStarter
from tests.utils.processes import Processes, embedded_env, redis_server

KEY_A = "tenant-a-key-51d0"
KEY_B = "tenant-b-key-93ce"
SPLIT = "rag:50,hybrid:50"
QUESTION = [{"role": "user", "content": "How much does the Team plan cost?"}]


def test_a_split_reads_routes_and_weights_and_names_itself() -> None:
    split = Experiment.parse(" RAG:30 , hybrid:70 ")
    assert split.arms == (("rag", 30), ("hybrid", 70)) and split.name == "rag:30/hybrid:70"
    assert Experiment.parse("auto:1,finetuned:1").name == "auto:1/finetuned:1"


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("rag:100", "at least two routes"),
        ("rag:50,bogus:50", "'bogus' is not a route"),
        ("rag:50,hybrid", "whole number above 0"),
        ("rag:0,hybrid:1", "whole number above 0"),
        ("rag:1.5,hybrid:1", "whole number above 0"),
        ("rag:1,rag:2", "named twice"),
    ],
)
def test_a_malformed_split_says_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Experiment.parse(spec)


def test_a_user_keeps_one_arm_and_the_arms_follow_the_weights() -> None:
    even, skewed = Experiment.parse(SPLIT), Experiment.parse("rag:9,finetuned:1")
    for user in ("alice", "bob", "carol"):
        arms = {even.assign("tenant", user).route for _ in range(20)}
        assert len(arms) == 1 and even.assign("tenant", user).sticky
    users = [f"user-{n}" for n in range(2000)]
    # A hash, not a draw: the shares are the same on every run and every replica.
    assert 900 < Counter(even.assign("tenant", user).route for user in users)["rag"] < 1100
    assert 100 < Counter(skewed.assign("tenant", user).route for user in users)["finetuned"] < 300
    # The same user name under another API key is another user.
    assert {even.assign(f"tenant-{n}", "alice").route for n in range(40)} == {"rag", "hybrid"}


def test_a_request_without_a_user_gets_an_arm_of_its_own() -> None:
    split = Experiment.parse(SPLIT)
    arms = [split.assign("tenant", None) for _ in range(200)]
    assert {arm.route for arm in arms} == {"rag", "hybrid"} and not any(arm.sticky for arm in arms)
    assert "per-request" in arms[0].header() and "names no user" in str(arms[0].reason())


def test_only_requests_that_ask_for_the_experiment_get_an_arm() -> None:
    split = Experiment.parse(SPLIT)
    assert arm_for(split, Headers({}), "u1", "t") is not None  # no route header: the experiment
    assert arm_for(split, Headers({"X-Ragft-Route": "Experiment"}), None, "t") is not None
    assert arm_for(split, Headers({"X-Ragft-Route": "finetuned"}), "u1", "t") is None
    assert arm_for(None, Headers({}), "u1", "t") is None
    header_user = arm_for(split, Headers({"X-Ragft-User": "u1"}), None, "t")
    assert header_user is not None and header_user == arm_for(split, Headers({}), "u1", "t")
    with pytest.raises(InvalidRequest, match="runs no experiment"):
        arm_for(None, Headers({"X-Ragft-Route": "experiment"}), None, "t")


@pytest.fixture(scope="module")
def vllm() -> Iterator[ScriptedVllm]:
    with scripted_vllm() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"{KEY_B}  help-center\n")
    return path


def _settings(retrieval_url: str, vllm: ScriptedVllm, keys_file: Path, **more: str) -> dict[str, str]:
    return {
        "RAGFT_RETRIEVAL_URL": retrieval_url,
        "RAGFT_GENERATION_URL": vllm.url,
        "RAGFT_DEFAULT_ADAPTER": "voice",
        "RAGFT_API_KEYS": KEY_A,
        "RAGFT_API_KEYS_FILE": str(keys_file),
        **more,
    }


def _ask(url: str, key: str, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **body.pop("headers", {})}
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": QUESTION, **body}, headers=headers, timeout=60)


def _feedback(url: str, key: str, answer_id: str, score: Any, **more: Any) -> httpx.Response:
    body = {"id": answer_id, "score": score, **more}
    return httpx.post(f"{url}/v1/feedback", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_feedback_is_kept_per_key_replaced_on_a_second_post_and_never_probed(
    processes: Processes, retrieval_url: str, redis_url: str, vllm: ScriptedVllm, keys_file: Path, tmp_path: Path
) -> None:
    settings = _settings(retrieval_url, vllm, keys_file, RAGFT_STORE_URL=redis_url)
    with processes.gateway(tmp_path, None, **settings) as (url, _):
        answered = _ask(url, KEY_A, headers={"X-Ragft-Route": "finetuned"})
        assert answered.status_code == 200, answered.text
        request_id = answered.headers["X-Request-ID"]
        first = _feedback(url, KEY_A, request_id, 0.5, comment="right, but long")
        assert first.status_code == 200, first.text
        assert first.json() == {"object": "ragft.feedback", "id": request_id, "score": 0.5, "replaced": False}
        again = _feedback(url, KEY_A, f"chatcmpl-{request_id}", "down")  # the completion's id names it too
        assert again.json()["replaced"] is True and again.json()["score"] == -1.0

        foreign, unknown = _feedback(url, KEY_B, request_id, 1), _feedback(url, KEY_A, uuid.uuid4().hex, 1)
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.json() == unknown.json()  # nothing tells another key's answer from none
        # Another key sending the same X-Request-ID makes an answer of its own, not a takeover.
        taken = _ask(url, KEY_B, headers={"X-Ragft-Route": "finetuned", "X-Request-ID": request_id})
        assert taken.status_code == 200 and _feedback(url, KEY_B, request_id, 1).json()["replaced"] is False
        assert _feedback(url, KEY_A, request_id, 1).json()["replaced"] is True

        for bad in (1.5, -2, "sideways", None):
            refused = _feedback(url, KEY_A, request_id, bad)
            assert refused.status_code == 422 and refused.json()["error"]["param"].startswith("score"), refused.text
        metrics = httpx.get(f"{url}/metrics").text
        assert 'ragft_gateway_feedback_total{arm="finetuned",experiment=""} 4.0' in metrics
    with processes.gateway(tmp_path, None, **_settings(retrieval_url, vllm, keys_file)) as (url, _):
        refused = _feedback(url, KEY_A, request_id, 1)
        assert refused.status_code == 501 and refused.json()["error"]["type"] == "not_configured"


def test_an_experiment_needs_a_store_to_start(processes: Processes, tmp_path: Path) -> None:
    started = processes.run("serve", "gateway", env=embedded_env(tmp_path, RAGFT_EXPERIMENT=SPLIT), timeout=60)
    assert started.returncode != 0 and "RAGFT_API_KEYS_FILE) needs RAGFT_STORE_URL" in started.stderr


def test_an_experiment_keeps_users_on_their_arms_and_loses_nothing_to_kill_9(
    processes: Processes, retrieval_url: str, vllm: ScriptedVllm, keys_file: Path, tmp_path: Path
) -> None:
    sent: dict[str, dict[str, Any]] = {}  # request id -> what the client saw and posted

    def round_of_answers(url: str, users: list[str | None], stream: bool) -> None:
        for user in users:
            body: dict[str, Any] = {"user": user} if user else {}
            answered = _ask(url, KEY_A, stream=stream, **body)
            assert answered.status_code == 200, answered.text
            arm = answered.headers["X-Ragft-Route"]
            assert answered.headers["X-Ragft-Experiment"] == (
                f"rag:50/hybrid:50; arm={arm}; assigned={'sticky' if user else 'per-request'}"
            )
            sent[answered.headers["X-Request-ID"]] = {"user": user, "arm": arm, "score": None}

    def post_scores(url: str, every: int) -> None:
        for n, (request_id, seen) in enumerate(sent.items()):
            if n % every == 0 and seen["score"] is None:
                seen["score"] = 1.0 if seen["arm"] == "hybrid" else -0.5
                assert _feedback(url, KEY_A, request_id, seen["score"]).status_code == 200

    users: list[str | None] = [f"user-{n}" for n in range(6)]
    with redis_server(tmp_path) as (store_url, store):
        settings = _settings(retrieval_url, vllm, keys_file, RAGFT_STORE_URL=store_url, RAGFT_EXPERIMENT=SPLIT)
        with processes.gateway(tmp_path, None, **settings) as (url, gateway):
            round_of_answers(url, [*users, None, None], stream=False)
            post_scores(url, every=2)
            gateway.kill()  # SIGKILL: no shutdown, no flush
            gateway.wait()
        with processes.gateway(tmp_path, None, **settings) as (url, _):
            round_of_answers(url, users, stream=True)
            post_scores(url, every=3)
        store.kill()
        store.wait()
    with (
        redis_server(tmp_path, port=int(store_url.rsplit(":", 1)[1].split("/")[0])) as (store_url, _),
        processes.gateway(tmp_path, None, **settings) as (url, _),
    ):
        listed = httpx.get(f"{url}/v1/ragft/experiment", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
        assert listed.status_code == 200, listed.text
        foreign = httpx.get(f"{url}/v1/ragft/experiment", headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30)
        assert foreign.status_code == 403
    payload = listed.json()
    streamed = set(list(sent)[-len(users) :])  # the second round
    assert payload["experiment"] == {"name": "rag:50/hybrid:50", "arms": {"rag": 50, "hybrid": 50}}
    records = {record["id"]: record for record in payload["records"]}
    assert records.keys() == sent.keys()  # every answer, across the kill and the store's restart
    for request_id, seen in sent.items():
        record = records[request_id]
        assert (record["arm"], record["score"], record["outcome"]) == (seen["arm"], seen["score"], "ok")
        assert record["sticky"] is (seen["user"] is not None) and record["latency_ms"] > 0
        assert (record["ttft_ms"] is not None) is (request_id in streamed)
    arms_of = {seen["user"]: {s["arm"] for s in sent.values() if s["user"] == seen["user"]} for seen in sent.values()}
    assert all(len(arms) == 1 for user, arms in arms_of.items() if user)  # sticky across the restart
    assert "tenant" not in str(payload) and KEY_A not in str(payload)


def test_the_report_of_a_real_stack_experiment_counts_what_was_sent(
    start_gateway: GatewayStarter, processes: Processes, tmp_path: Path
) -> None:
    sent: list[dict[str, Any]] = []
    users = [f"customer-{n}" for n in range(4)]
    with (
        redis_server(tmp_path) as (store_url, _),
        start_gateway(RAGFT_STORE_URL=store_url, RAGFT_EXPERIMENT="rag:1,finetuned:1", RAGFT_API_KEYS=KEY_A) as url,
    ):
        for user in [*users, *users, None]:
            answered = _ask(url, KEY_A, max_tokens=8, **({"user": user} if user else {}))
            assert answered.status_code == 200, answered.text
            sent.append(
                {"id": answered.headers["X-Request-ID"], "arm": answered.headers["X-Ragft-Route"], "user": user}
            )
        for n, answer in enumerate(sent[::2]):  # feedback on every other answer
            answer["score"] = [1, -1, 0.5][n % 3]
            assert _feedback(url, KEY_A, answer["id"], answer["score"]).status_code == 200
        env = embedded_env(tmp_path, RAGFT_API_KEYS=KEY_A)
        report = processes.run("experiment", "report", "--gateway", url, "--out", str(tmp_path / "report"), env=env)
    assert report.returncode == 0, report.stderr
    assert {answer["arm"] for answer in sent} <= {"rag", "finetuned"}
    for user in users:  # sticky: both of a user's answers on one arm
        assert len({answer["arm"] for answer in sent if answer["user"] == user}) == 1
    records = json.loads((tmp_path / "report" / "records.json").read_text())
    assert sorted(record["id"] for record in records["records"]) == sorted(answer["id"] for answer in sent)
    rows = {
        cells[0]: cells
        for line in (tmp_path / "report" / "report.md").read_text().splitlines()
        if line.startswith(("| rag |", "| finetuned |"))
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    for arm in ("rag", "finetuned"):
        mine = [answer for answer in sent if answer["arm"] == arm]
        scored = sum(1 for answer in mine if "score" in answer)
        named = {answer["user"] for answer in mine if answer["user"]}
        assert rows[arm][1:4] == [str(len(mine)), str(len(named)), str(sum(1 for a in mine if not a["user"]))]
        assert rows[arm][4].startswith(f"{scored}/{len(mine)} ") if mine else rows[arm][4] == "n/a"
        assert rows[arm][-2:] == ["0", "0"]  # no errors, none unfinished
    assert (tmp_path / "report" / "report.png").stat().st_size > 10_000


def test_simulated_users_go_through_the_experiment_and_post_the_scorers_feedback(
    processes: Processes, retrieval_url: str, keys_file: Path, tmp_path: Path
) -> None:
    """`ragft experiment simulate` against a gateway whose vLLM echoes its prompt (a rag answer
    then holds its passages, so the scorer finds facts in some answers and not in others)."""
    with redis_server(tmp_path) as (store_url, _), scripted_vllm(Answer(echo=True)) as vllm:
        split = "rag:1,finetuned:1"
        settings = _settings(retrieval_url, vllm, keys_file, RAGFT_STORE_URL=store_url, RAGFT_EXPERIMENT=split)
        with processes.gateway(tmp_path, None, **settings) as (url, _):
            env = embedded_env(tmp_path, RAGFT_API_KEYS=KEY_A)
            simulated = processes.run(
                "experiment", "simulate", "--users", "3", "--questions", "2", "--gateway", url, env=env, timeout=120
            )
            listed = httpx.get(f"{url}/v1/ragft/experiment", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert simulated.returncode == 0, simulated.stderr
    records = listed.json()["records"]
    assert len(records) == 6 and len({record["user"] for record in records}) == 3
    assert all(record["score"] in (1.0, -1.0) and record["comment"].startswith("scorer: ") for record in records)
    for user in {record["user"] for record in records}:
        assert len({record["arm"] for record in records if record["user"] == user}) == 1
    printed = simulated.stdout + simulated.stderr
    for arm in {record["arm"] for record in records}:
        mine = [record for record in records if record["arm"] == arm]
        up = sum(1 for record in mine if record["score"] == 1.0)
        assert f"{arm}: {len(mine)} answers, {up} stated the facts (feedback up), {len(mine) - up} did not" in printed
    assert any(record["score"] == 1.0 for record in records), "the echoed passages state some facts"


def test_a_key_may_run_its_own_experiment(
    processes: Processes, retrieval_url: str, redis_url: str, vllm: ScriptedVllm, tmp_path: Path
) -> None:
    """`experiment=` in the keys file: that key's requests split its way, every other key's by
    RAGFT_EXPERIMENT; its records are read by the experiment's name."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"{KEY_B}  help-center  experiment=finetuned:1,hybrid:1\n")
    assert KeyRing.read("", keys_file).keys[KEY_B].experiment == Experiment.parse("finetuned:1,hybrid:1")
    settings = _settings(retrieval_url, vllm, keys_file, RAGFT_STORE_URL=redis_url, RAGFT_EXPERIMENT=SPLIT)
    with processes.gateway(tmp_path, None, **settings) as (url, _):
        own = [_ask(url, KEY_B, user=f"own-{n}") for n in range(6)]
        shared = [_ask(url, KEY_A, user=f"shared-{n}") for n in range(6)]
        listed = httpx.get(
            f"{url}/v1/ragft/experiment",
            params={"name": "finetuned:1/hybrid:1"},
            headers={"Authorization": f"Bearer {KEY_A}"},
            timeout=30,
        )
    assert all(answer.status_code == 200 for answer in own + shared)
    assert {answer.headers["X-Ragft-Experiment"].split(";")[0] for answer in own} == {"finetuned:1/hybrid:1"}
    # The arms are a hash of the key and the user, so these six users always split the same way.
    assert {answer.headers["X-Ragft-Route"] for answer in own} == {"finetuned", "hybrid"}
    assert {answer.headers["X-Ragft-Experiment"].split(";")[0] for answer in shared} == {"rag:50/hybrid:50"}
    ids = {record["id"] for record in listed.json()["records"]}
    assert {answer.headers["X-Request-ID"] for answer in own} <= ids
    assert not ids & {answer.headers["X-Request-ID"] for answer in shared}
