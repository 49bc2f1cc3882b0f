"""Token budgets per API key, from the keys file (`tokens-per-day=N`, `tokens-per-minute=N`):
what a key may spend in a window of UTC time, counted from vLLM's usage (prompt and completion
tokens) in the store, so every replica counts against the same total. A key is refused once it
has spent its budget, until the window turns; requests already running when it does finish and
are counted."""

from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter

from ragft.errors import RateLimited

WINDOW_SECONDS = {"minute": 60, "day": 86_400}
FIELD_PREFIX = "tokens-per-"

REFUSED = Counter(
    "ragft_gateway_budget_refusals_total", "Requests refused because their API key spent its budget.", ["window"]
)


class BudgetSpent(RateLimited):
    """OpenAI's name for a spent quota, which OpenAI's clients know."""

    type = "insufficient_quota"


@dataclass(frozen=True)
class Budget:
    tokens: int
    window: Literal["minute", "day"]

    @classmethod
    def parse(cls, field: str) -> "Budget":
        """`tokens-per-day=200000` or `tokens-per-minute=5000`."""
        name, _, value = field.partition("=")
        window = name.removeprefix(FIELD_PREFIX)
        if window not in WINDOW_SECONDS:
            raise ValueError(f"a budget is tokens-per-day=N or tokens-per-minute=N, not {name!r}")
        if not value.isdigit() or int(value) == 0:
            raise ValueError(f"{name} must be a whole number of tokens above 0")
        return cls(int(value), "day" if window == "day" else "minute")

    @property
    def seconds(self) -> int:
        return WINDOW_SECONDS[self.window]

    def window_at(self, now: float) -> int:
        """The window `now` falls in: minutes or days since the epoch, so a day is a UTC day."""
        return int(now // self.seconds)

    def refuse_if_spent(self, spent: int, now: float) -> None:
        if spent >= self.tokens:
            REFUSED.labels(self.window).inc()
            renews_in = self.seconds - int(now % self.seconds)
            window = "day (UTC)" if self.window == "day" else self.window
            raise BudgetSpent(
                f"this API key has spent its budget of {self.tokens:,} tokens per {window} ({spent:,} used); "
                f"it renews in {renews_in} s",
                retry_after=renews_in,
            )
