"""`POST /v1/feedback`, a score on an answer by its id, from the API key that got it; and
`GET /v1/ragft/experiment`, the experiment's records, which `ragft experiment report` reads."""

from typing import Annotated, Literal

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field

from gateway.contract import ExperimentArms, ExperimentRecord, ExperimentRecords
from gateway.deps import Call
from gateway.experiments import Experiment
from gateway.store import Store
from ragft.errors import Forbidden, NotConfigured, NotFound

FEEDBACK = Counter(
    "ragft_gateway_feedback_total",
    "Feedback posted, by experiment and arm (the route, outside an experiment); a replacement counts again.",
    ["experiment", "arm"],
)
FEEDBACK_SCORE = Histogram(
    "ragft_gateway_feedback_score",
    "The scores posted, by experiment and arm.",
    ["experiment", "arm"],
    buckets=(-1, -0.5, 0, 0.5, 1),
)
THUMBS = {"up": 1.0, "down": -1.0}
COMPLETION_PREFIX = "chatcmpl-"


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        min_length=1, max_length=200, description="the answer's completion id (chatcmpl-...) or its X-Request-ID"
    )
    score: Annotated[float, Field(ge=-1, le=1)] | Literal["up", "down"] = Field(
        description="from -1 (bad) to 1 (good), or thumbs: up is 1, down is -1"
    )
    comment: str | None = Field(None, max_length=2000)

    @property
    def value(self) -> float:
        return THUMBS[self.score] if isinstance(self.score, str) else self.score


class FeedbackOut(BaseModel):
    object: Literal["ragft.feedback"] = "ragft.feedback"
    id: str
    score: float
    replaced: bool = Field(description="whether this replaced earlier feedback on the same answer")


async def post_feedback(body: FeedbackIn, call: Call) -> FeedbackOut:
    store = _store(call)
    kept = await store.feedback(call.tenant, body.id.removeprefix(COMPLETION_PREFIX), body.value, body.comment or "")
    FEEDBACK.labels(kept.experiment, kept.arm).inc()
    FEEDBACK_SCORE.labels(kept.experiment, kept.arm).observe(body.value)
    return FeedbackOut(id=body.id, score=body.value, replaced=kept.replaced)


async def experiment_records(call: Call, name: str | None) -> ExperimentRecords:
    """The records of the running experiment, or of an earlier one by name, for keys with every right."""
    if call.caller.collections is not None or not call.caller.admin:
        raise Forbidden("an experiment's records are for API keys with every right (RAGFT_API_KEYS)")
    store = _store(call)
    experiment = call.gateway.experiment
    if name is not None:
        try:
            experiment = Experiment.parse(name.replace("/", ","))
        except ValueError as exc:
            raise NotFound(f"no experiment is named {name!r}: {exc}", param="name") from None
    if experiment is None:
        raise NotFound(
            "this gateway runs no experiment (RAGFT_EXPERIMENT): name one, as rag:50/hybrid:50", param="name"
        )
    records = [
        ExperimentRecord.model_validate(
            {**fields, "sticky": bool(fields.get("user")), "comment": fields.get("comment") or None}
        )
        for fields in await store.records(experiment.name)
    ]
    return ExperimentRecords(
        experiment=ExperimentArms(name=experiment.name, arms=dict(experiment.arms)), records=records
    )


def _store(call: Call) -> Store:
    if call.gateway.store is None:
        raise NotConfigured("this gateway keeps no records or feedback: it runs without RAGFT_STORE_URL")
    return call.gateway.store
