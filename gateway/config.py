"""Gateway settings (`RAGFT_` environment variables)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.access import KeyRing
from gateway.contract import ROUTE_NAMES, Route
from gateway.experiments import Experiment
from ragft.settings import RagftSettings


class GatewaySettings(RagftSettings):
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    default_route: str = Route.RAG.value  # any of ROUTE_NAMES: auto lets a client that sends no header use it
    # Comma-separated bearer keys with every right; with neither setting: no authentication.
    api_keys: SecretStr = SecretStr("")
    # Keys scoped to collections, one per line: KEY COLLECTIONS [admin] [tokens-per-day=N]
    # [tokens-per-minute=N] [experiment=ROUTE:WEIGHT,...] (gateway/access.py).
    api_keys_file: Path | None = None
    # Whole-request budget: retrieval, generation and (streaming) every read of the stream.
    deadline_s: float = Field(120, gt=0)
    # A stream whose first token has not come by then gets a 504 instead of its first event.
    ttft_s: float = Field(60, gt=0)
    # `auto` answers from the knowledge base when the best chunk's BM25 score per query term
    # reaches this, else on the adapter alone.
    auto_min_keyword_score: float = Field(1.6, ge=0)
    # auto's route when the knowledge base covers the question and the request names no adapter:
    # hybrid (on the default adapter) measured best with the shipped adapter
    # (docs/measurements/evaluation.md); naming an adapter always makes it hybrid.
    auto_covered_route: Literal["hybrid", "rag"] = "hybrid"
    # Passages put in the prompt; 4 chunks of ~200 tokens fit the 2048-token base model.
    top_k: int = Field(4, ge=1, le=20)
    # Earlier user turns carried into the search query so follow-ups keep their subject.
    max_query_chars: int = Field(1000, ge=50, le=4000)
    # The passages cut to the sentences, table rows and list items that share words with the
    # question, best first, within this many characters (gateway/evidence.py); 0: whole passages.
    # rag: 862 -> 384 prompt tokens, facts unchanged. hybrid keeps whole passages: its adapter
    # was trained on them, and cut ones cost it 5 facts of 84 (docs/measurements/evaluation.md).
    rag_evidence_chars: int = Field(1200, ge=0, le=20000)
    hybrid_evidence_chars: int = Field(0, ge=0, le=20000)
    # Under the abstain policy, an answer whose passages hold less than this share of the
    # question's words (gateway/evidence.py) is withheld however it reads; 0: off.
    min_evidence_coverage: float = Field(0.0, ge=0, le=1)
    upstream_connections: int = Field(256, ge=1)
    retry_after_s: int = Field(5, ge=1)
    # One retry of a refused connection or a 502/503, paid from a budget: retries add at most
    # this share of the calls made, so they never multiply the load on a failing upstream.
    retry_budget: float = Field(0.2, ge=0, le=1)
    # This many failed calls in a row to an upstream stop calls to it for the cool-down; then
    # one call probes it.
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(10, gt=0)
    # hybrid while retrieval is down: "fail" (503), or answer as finetuned, marked degraded.
    hybrid_without_retrieval: Literal["fail", "finetuned"] = "fail"
    # Chat completions in flight at once; more get a 503 at once rather than waiting in a queue.
    max_in_flight: int = Field(64, ge=1)
    # Requests per minute per API key (per client address without keys), in bursts of up to
    # rate_limit_burst; 0: no limit.
    rate_limit_per_minute: float = Field(0, ge=0)
    rate_limit_burst: int = Field(10, ge=1)
    max_messages: int = Field(64, ge=1)
    max_message_chars: int = Field(32_000, ge=1)
    # The largest max_tokens a request may ask for, and what a request that names none gets.
    max_tokens_limit: int = Field(1024, ge=1)
    # The rag route's frequency_penalty when the request sets none (0: off). The base model repeats
    # itself to max_tokens; 0.6 cut that from 84% to 61% of answers, facts unchanged (docs/measurements/evaluation.md).
    rag_frequency_penalty: float = Field(0.6, ge=-2, le=2)
    # Redis, for what outlives a request and is shared by replicas: a record of every answer, the
    # feedback on it (POST /v1/feedback) and the experiment's arms (gateway/store.py). Unset: none.
    store_url: str = ""
    store_retention_days: int = Field(30, ge=1)
    # A live experiment between routes, ROUTE:WEIGHT,... such as rag:50,hybrid:50
    # (gateway/experiments.py): requests without a route header, or with `experiment`, get an arm.
    experiment: str = ""
    # An answer that retrieved and whose grounding check fails: `mark` (the verdict only) or
    # `abstain` (the abstention goes out instead); X-Ragft-Grounding or a key's grounding= wins.
    grounding_policy: Literal["mark", "abstain"] = "mark"
    abstention: str = Field(
        "I don't have that information in the help center. Please contact support, and a person will help.",
        min_length=1,
    )

    @field_validator("default_route")
    @classmethod
    def _a_route(cls, route: str) -> str:
        if route.strip().lower() not in ROUTE_NAMES:
            raise ValueError(f"{route!r} is not a route; use one of: {', '.join(ROUTE_NAMES)}")
        return route.strip().lower()

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _empty_is_none(cls, path: object) -> object:
        """An empty RAGFT_API_KEYS_FILE is no file, as Compose passes one that is unset."""
        return None if isinstance(path, str) and not path.strip() else path

    @field_validator("experiment")
    @classmethod
    def _a_split(cls, spec: str) -> str:
        if spec.strip():
            Experiment.parse(spec)
        return spec.strip()

    _key_ring: KeyRing = PrivateAttr()

    @model_validator(mode="after")
    def _read_keys(self) -> Self:
        """Read once, at start: a malformed keys file stops the service, naming the line."""
        self._key_ring = KeyRing.read(self.api_keys.get_secret_value(), self.api_keys_file)
        if (self.experiment or self._key_ring.experimenting) and not self.store_url:
            raise ValueError(
                "an experiment (RAGFT_EXPERIMENT, or experiment= in RAGFT_API_KEYS_FILE) needs RAGFT_STORE_URL: "
                "the arms' records and feedback are kept there"
            )
        if self._key_ring.budgeted and not self.store_url:
            raise ValueError(
                "a token budget in RAGFT_API_KEYS_FILE needs RAGFT_STORE_URL: the tokens spent are counted there, "
                "for every replica"
            )
        return self

    @property
    def split(self) -> Experiment | None:
        return Experiment.parse(self.experiment) if self.experiment else None

    @property
    def key_ring(self) -> KeyRing:
        return self._key_ring


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
