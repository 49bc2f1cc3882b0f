"""Property-based fuzzing of the three OpenAPI specs with schemathesis: generated requests, valid
and not, against the real services on loopback. No answer may be a 5xx, and every answer with a
documented status must match its schema and content type.

Examples are derandomized so CI is repeatable. The gateway runs with max_tokens capped at 4, so
a generated chat completion costs the real vLLM little. vLLM's own spec is fuzzed on the
operations ragft calls that generate nothing; its chat completions are reached through the
gateway's."""

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from ragft.process import free_port
from tests.utils.gateway import GatewayStarter
from tests.utils.processes import Processes, embedded_env

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 20  # per operation and mode
# vLLM's operations that ragft calls and that cost no generation. (Its /tokenize answers a body
# that is not JSON with FastAPI's {"detail"} instead of its documented error shape: vLLM's own
# finding, and ragft never calls it.)
VLLM_OPERATIONS = r"^/(health|version|v1/models)$"


def fuzz(schema: BaseSchema) -> list[str]:
    """Runs every operation with valid and with invalid generated requests; returns what ran.
    A failing check raises with the request that failed, shrunk to its simplest form."""
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid spec raises here
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case) -> None:
                case.call_and_validate(checks=CHECKS, timeout=120)

            try:
                run()
            except Unsatisfiable:  # an operation with no input has no invalid request
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            fuzzed.append(f"{operation.label} {mode.value}")
    return fuzzed


def test_the_gateway_api(start_gateway: GatewayStarter, redis_url: str) -> None:
    """With a store, so feedback and the experiment's records answer as they do in production."""
    with start_gateway(RAGFT_MAX_TOKENS_LIMIT="4", RAGFT_STORE_URL=redis_url) as url:
        fuzzed = fuzz(schemathesis.openapi.from_url(f"{url}/openapi.json"))
    assert {"POST /v1/chat/completions negative", "POST /v1/feedback negative"} <= set(fuzzed)


def test_the_retrieval_api(processes: Processes, tmp_path: Path) -> None:
    """A retrieval service of its own: the fuzzer creates and deletes collections."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = embedded_env(tmp_path, RAGFT_RETRIEVAL_PORT=str(port))
    with processes.serve("serve", "retrieval", env=env, ready=f"{url}/readyz"):
        fuzzed = fuzz(schemathesis.openapi.from_url(f"{url}/openapi.json"))
    assert "POST /v1/collections/{name}/search positive" in fuzzed


def test_the_generation_api_that_ragft_calls(generation_url: str) -> None:
    fuzzed = fuzz(schemathesis.openapi.from_url(f"{generation_url}/openapi.json").include(path_regex=VLLM_OPERATIONS))
    assert {"GET /health positive", "GET /version positive", "GET /v1/models positive"} <= set(fuzzed)
