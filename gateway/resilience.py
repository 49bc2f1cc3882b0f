"""What keeps the gateway short and safe under failure and overload: a circuit breaker and a
retry budget per upstream, admission control, and per-caller rate limits. All of it lives in
the gateway's one event loop, so no check can interleave with its update."""

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import Gauge

from ragft.errors import Overloaded, RateLimited, UpstreamUnavailable

IN_FLIGHT = Gauge("ragft_gateway_chat_in_flight", "Chat completions being answered now.")
CIRCUIT_OPEN = Gauge("ragft_gateway_circuit_open", "1 while calls to the upstream are stopped.", ["upstream"])


@dataclass
class CircuitBreaker:
    """`failures_to_open` failed calls in a row stop calls for `cooldown_s`. After it, one call
    goes through as a probe and re-arms the cool-down for the rest: its success closes the
    breaker, its failure keeps it open. A probe that never reports (a cancelled request) only
    delays the next probe by one cool-down."""

    upstream: str
    failures_to_open: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None

    def admit(self) -> None:
        if self.opened_at is None:
            return
        wait = self.opened_at + self.cooldown_s - time.monotonic()
        if wait > 0:
            raise UpstreamUnavailable(
                f"the {self.upstream} service failed {self.failures} calls in a row; "
                f"the gateway stops calling it for {wait:.1f} s more",
                retry_after=math.ceil(wait),
            )
        self.opened_at = time.monotonic()

    def succeeded(self) -> None:
        self.failures = 0
        self.opened_at = None
        CIRCUIT_OPEN.labels(self.upstream).set(0)

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            self.opened_at = time.monotonic()
            CIRCUIT_OPEN.labels(self.upstream).set(1)

    @property
    def open(self) -> bool:
        return self.opened_at is not None


@dataclass
class RetryBudget:
    """Each call earns `ratio` of a retry, and a retry spends one, so retries add at most
    `ratio` of the calls made. The balance is capped, so a quiet hour does not save up a storm."""

    ratio: float
    cap: float = 10.0
    balance: float = 0.0

    def earn(self) -> None:
        self.balance = min(self.cap, self.balance + self.ratio)

    def spend(self) -> bool:
        if self.balance < 1 - 1e-9:  # five earnings of 0.2 make one retry, despite rounding
            return False
        self.balance -= 1
        return True


@dataclass
class Admission:
    """At most `limit` chat completions in flight; one more is refused at once, since a queue
    on a saturated model only turns fast failures into slow ones."""

    limit: int
    retry_after: int
    in_flight: int = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise Overloaded(
                f"the gateway is answering its limit of {self.limit} chat completions; retry shortly",
                retry_after=self.retry_after,
            )
        self.in_flight += 1
        IN_FLIGHT.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            IN_FLIGHT.dec()


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at `per_minute`."""

    per_minute: float
    burst: int
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    MAX_CALLERS = 10_000

    def take(self, caller: str) -> None:
        if not self.per_minute:
            return
        now = time.monotonic()
        rate = self.per_minute / 60
        bucket = self.buckets.get(caller) or self._new_bucket(caller, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1:
            raise RateLimited(
                f"over the rate limit of {self.per_minute:g} requests per minute",
                retry_after=math.ceil((1 - bucket.tokens) / rate),
            )
        bucket.tokens -= 1

    def _new_bucket(self, caller: str, now: float) -> _Bucket:
        if len(self.buckets) >= self.MAX_CALLERS:
            # Full buckets hold nothing a fresh one would not; dropping them bounds the memory.
            refill_s = self.burst / (self.per_minute / 60)
            self.buckets = {k: b for k, b in self.buckets.items() if now - b.updated < refill_s}
        bucket = self.buckets[caller] = _Bucket(self.burst, now)
        return bucket
