"""API keys scoped to collections, against the real retrieval app (a few articles of the sample
knowledge base, and a private collection made here), both it and the gateway in this process;
vLLM is the scripted stand-in, which records every prompt, so the tests can see that a foreign
passage never reached the model either. `ragft serve gateway` refusing a malformed keys file is
a process."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.access import KeyRing
from tests.gateway.scripted_vllm import ScriptedVllm, scripted_vllm
from tests.utils.gateway import InProcessStarter
from tests.utils.metrics import metric
from tests.utils.processes import Processes, embedded_env

PRIVATE = f"private-{uuid.uuid4().hex[:8]}"
SECRET = "The vault code for Project Nightjar is 7419."
QUESTION = "What is the vault code for Project Nightjar?"

READER = "reader-key-3f9a1c"  # help-center only
INSIDER = "insider-key-81c2d0"  # the private collection only
WRITER = "writer-key-c77e42"  # the private collection, admin
ROOT = "root-key-5a0b19"  # RAGFT_API_KEYS: everything
KEYS_FILE = f"""# scoped keys for the tests
{READER}   help-center
{INSIDER}  {PRIVATE}

{WRITER}   {PRIVATE}  admin
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, start_gateway_in_process: InProcessStarter, retrieval_in_process: str
) -> Iterator[tuple[httpx.Client, ScriptedVllm, Path]]:
    assert httpx.put(f"{retrieval_in_process}/v1/collections/{PRIVATE}", timeout=60).status_code in (200, 201)
    made = httpx.post(
        f"{retrieval_in_process}/v1/collections/{PRIVATE}/documents",
        json={"documents": [{"id": "nightjar", "text": SECRET, "metadata": {"title": "Project Nightjar"}}]},
        timeout=60,
    )
    assert made.status_code == 200, made.text
    folder = tmp_path_factory.mktemp("access")
    (folder / "keys.txt").write_text(KEYS_FILE)
    settings = {
        "RAGFT_API_KEYS": ROOT,
        "RAGFT_API_KEYS_FILE": str(folder / "keys.txt"),
        "RAGFT_LOG_LEVEL": "debug",  # the most a log ever says
    }
    log = folder / "gateway.log"
    with (
        scripted_vllm() as vllm,
        start_gateway_in_process(log, RAGFT_GENERATION_URL=vllm.url, **settings) as gateway,
    ):
        yield gateway, vllm, log
    httpx.delete(f"{retrieval_in_process}/v1/collections/{PRIVATE}", timeout=60)


def _call(gateway: httpx.Client, method: str, path: str, key: str, body: Any = None, **headers: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **headers}
    return gateway.request(method, path, json=body, headers=headers)


def _ask(gateway: httpx.Client, key: str, route: str, collection: str = PRIVATE) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    headers = {"X-Ragft-Route": route, "X-Ragft-Collection": collection}
    return _call(gateway, "POST", "/v1/chat/completions", key, body, **headers)


def _forbidden(response: httpx.Response, param: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["type"] == "forbidden" and response.json()["error"]["param"] == param
    assert "Nightjar" not in response.text and "7419" not in response.text


def _prompts(vllm: ScriptedVllm) -> str:
    return str(vllm.bodies)


def test_a_key_answers_only_from_its_collections(stack: tuple[httpx.Client, ScriptedVllm, Path]) -> None:
    gateway, vllm, _ = stack
    forbidden_before = metric(gateway, 'ragft_gateway_chat_requests_total{outcome="forbidden",route="rag"}', 0)
    for route in ("rag", "hybrid", "auto"):
        _forbidden(_ask(gateway, READER, route), "X-Ragft-Collection")
    assert metric(gateway, 'ragft_gateway_chat_requests_total{outcome="forbidden",route="rag"}') == forbidden_before + 1
    assert "7419" not in _prompts(vllm)

    # finetuned reads no collection, so the header does not matter.
    assert _ask(gateway, READER, "finetuned").status_code == 200
    own = _ask(gateway, READER, "rag", collection="help-center")
    assert own.status_code == 200 and own.json()["ragft"]["sources"]

    insider = _ask(gateway, INSIDER, "rag")
    assert insider.status_code == 200, insider.text
    assert [source["doc_id"] for source in insider.json()["ragft"]["sources"]] == ["nightjar"]
    assert "7419" in str(vllm.bodies[-1]["messages"])


def test_a_collection_outside_the_scope_is_refused_whether_or_not_it_exists(
    stack: tuple[httpx.Client, ScriptedVllm, Path],
) -> None:
    gateway, _, _ = stack
    missing, existing = _ask(gateway, READER, "rag", "no-such-collection"), _ask(gateway, READER, "rag", PRIVATE)
    _forbidden(missing, "X-Ragft-Collection")
    assert (
        missing.json()["error"]["message"].replace("no-such-collection", PRIVATE) == existing.json()["error"]["message"]
    )
    # A key that may look learns it is missing.
    assert _ask(gateway, ROOT, "rag", "no-such-collection").status_code == 404


def test_compare_answers_the_routes_a_key_may_run_and_shows_no_foreign_source(
    stack: tuple[httpx.Client, ScriptedVllm, Path],
) -> None:
    gateway, _, _ = stack
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    plain = _call(gateway, "POST", "/v1/compare", READER, body, **{"X-Ragft-Collection": PRIVATE})
    assert plain.status_code == 200, plain.text
    statuses = {result["route"]: result["status"] for result in plain.json()["results"]}
    assert statuses == {"rag": 403, "finetuned": 200, "hybrid": 403}
    assert "Nightjar" not in plain.text and "7419" not in plain.text

    streamed = _call(gateway, "POST", "/v1/compare", READER, body | {"stream": True}, **{"X-Ragft-Collection": PRIVATE})
    assert streamed.text.count('"type":"forbidden"') == 2 and "7419" not in streamed.text


def test_knowledge_base_calls_check_the_key(stack: tuple[httpx.Client, ScriptedVllm, Path]) -> None:
    gateway, _, _ = stack
    base = "/v1/ragft/collections"

    def names(key: str) -> set[str]:
        return {info["name"] for info in _call(gateway, "GET", base, key).json()["collections"]}

    assert "help-center" in names(READER) and PRIVATE not in names(READER)
    assert names(INSIDER) == {PRIVATE} and {"help-center", PRIVATE} <= names(ROOT)

    search = {"query": QUESTION, "top_k": 3}
    _forbidden(_call(gateway, "POST", f"{base}/{PRIVATE}/search", READER, search), "name")
    _forbidden(_call(gateway, "GET", f"{base}/{PRIVATE}/documents", READER), "name")
    _forbidden(_call(gateway, "GET", f"{base}/{PRIVATE}/documents/nightjar", READER), "name")
    found = _call(gateway, "POST", f"{base}/{PRIVATE}/search", INSIDER, search)
    assert found.status_code == 200 and found.json()["hits"][0]["text"] == SECRET

    # Changing a collection needs admin, in a collection the key may read.
    note = {"id": "rota", "text": "The Nightjar on-call rota changes every Monday."}
    _forbidden(_call(gateway, "POST", f"{base}/{PRIVATE}/documents", INSIDER, note), "name")
    _forbidden(_call(gateway, "POST", f"{base}/help-center/documents", WRITER, note), "name")
    added = _call(gateway, "POST", f"{base}/{PRIVATE}/documents", WRITER, note)
    assert added.status_code == 200, added.text
    _forbidden(_call(gateway, "DELETE", f"{base}/{PRIVATE}/documents/rota", INSIDER), "name")
    assert _call(gateway, "DELETE", f"{base}/{PRIVATE}/documents/rota", WRITER).status_code == 200
    assert _call(gateway, "GET", f"{base}/{PRIVATE}/documents/rota", WRITER).status_code == 404


def test_no_key_reaches_the_logs_or_the_metrics(stack: tuple[httpx.Client, ScriptedVllm, Path]) -> None:
    gateway, _, log = stack
    wrong = "wrong-key-90210e"
    assert _ask(gateway, wrong, "rag").status_code == 401
    assert _ask(gateway, READER, "rag").status_code == 403
    assert _ask(gateway, ROOT, "finetuned").status_code == 200
    written = log.read_text() + gateway.get("/metrics").text
    assert "status=401" in written and "status=403" in written  # the requests were logged
    for key in (READER, INSIDER, WRITER, ROOT, wrong):
        assert key not in written


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ("secret-key-1", "line 2: expected KEY COLLECTIONS [admin] [tokens-per-day=N] [tokens-per-minute=N]"),
        ("secret-key-1 help-center admin extra", "line 2: field 4 is none of [admin] [tokens-per-day=N]"),
        ("secret-key-1 help-center secret-key-2 * admin", "line 2: field 3 is none of [admin]"),  # two lines in one
        ("secret-key-1 help-center admin admin", "line 2: 'admin' appears twice"),
        ("secret-key-1 help-center tokens-per-hour=9", "a budget is tokens-per-day=N or tokens-per-minute=N"),
        ("secret-key-1 help-center tokens-per-day=0", "tokens-per-day must be a whole number of tokens above 0"),
        ("secret-key-1 help-center tokens-per-day=1e6", "tokens-per-day must be a whole number of tokens above 0"),
        ("secret-key-1 a tokens-per-day=9 tokens-per-day=8", "line 2: 'tokens-per-day' appears twice"),
        ("secret-key-1 a experiment=rag:1", "line 2: an experiment needs at least two routes"),
        ("secret-key-1 a experiment=rag:1,nope:1", "line 2: 'nope:1': 'nope' is not a route"),
        ("help-center secret-k.y-1", "line 2: the second field must be collection names"),  # columns swapped
        ("secret-key-1 *,help-center", "line 2: the second field must be collection names"),
        ("secret-kéy-1 help-center", "line 2: a key may hold only printable ASCII characters"),
        ("secret-key-1 a\nsecret-key-1 b", "line 3: the key on line 2 appears again"),
        ("secret-key-0 a", "line 2: the key is also in RAGFT_API_KEYS"),
        ("   ", "names no key"),
    ],
)
def test_a_malformed_keys_file_names_the_line_and_never_the_key(tmp_path: Path, lines: str, says: str) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# header\n{lines}\n")
    with pytest.raises(ValueError, match=r"keys\.txt") as refused:
        KeyRing.read("secret-key-0", keys_file)
    assert says in str(refused.value) and "secret-k" not in str(refused.value)


def test_the_gateway_refuses_to_start_on_a_malformed_keys_file(processes: Processes, tmp_path: Path) -> None:
    """`ragft serve gateway`, as the gateway image runs it."""
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("good-key-1 help-center\nsecret-key-2 help-center admin extra\n")
    env = embedded_env(tmp_path, RAGFT_API_KEYS="secret-root-key", RAGFT_API_KEYS_FILE=str(keys_file))
    refused = processes.python("-m", "ragft_cli", "serve", "gateway", env=env, timeout=60)
    assert refused.returncode == 1
    assert f"error: RAGFT_API_KEYS_FILE {keys_file} line 2: field 4 is none of [admin]" in refused.stderr
    assert "Traceback" not in refused.stderr and "secret-" not in refused.stderr


def test_ragft_commands_call_with_a_key_that_reads_the_collection(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("b-key help-center\na-key other\nc-key help-center\n0-key *\n")
    ring = KeyRing.read("00-root", keys_file)
    # The narrowest key that reads it: read-only before admin, named collections before every one.
    assert ring.key_for("help-center") == "b-key" and ring.key_for("other") == "a-key"
    assert ring.key_for("third") == "0-key"
    # A customer's key, with a budget or an experiment of its own, only when no other reads it.
    keys_file.write_text("a-key help-center tokens-per-day=9\nb-key help-center experiment=rag:1,hybrid:1\nc-key *\n")
    assert KeyRing.read("", keys_file).key_for("help-center") == "c-key"
    keys_file.write_text("a-key help-center tokens-per-day=9\nb-key help-center experiment=rag:1,hybrid:1\n")
    assert KeyRing.read("", keys_file).key_for("help-center") == "b-key"
    keys_file.write_text("b-key help-center\n")
    ring = KeyRing.read("", keys_file)
    with pytest.raises(ValueError, match="no key in RAGFT_API_KEYS or RAGFT_API_KEYS_FILE may read collection 'third'"):
        ring.key_for("third")
    assert KeyRing.read("", None).key_for("help-center") == ""  # no keys: no authentication
