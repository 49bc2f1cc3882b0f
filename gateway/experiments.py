"""A live experiment between routes (`RAGFT_EXPERIMENT=rag:50,hybrid:50`): each request that asks
for it gets an arm, by weight. The arm follows a hash of the caller's user within its API key, so
one user always gets the same arm while the experiment stands; a request that names no user gets
an arm of its own. Nothing is stored to make the choice, so every replica makes the same one."""

import hashlib
import secrets
from dataclasses import dataclass

from starlette.datastructures import Headers

from gateway.contract import EXPERIMENT, ROUTE_HEADER, ROUTE_NAMES, USER_HEADER
from ragft.errors import InvalidRequest

MAX_USER_CHARS = 256


@dataclass(frozen=True)
class Arm:
    experiment: str
    route: str  # one of ROUTE_NAMES
    user: str  # an opaque hash of the API key's user, "" when the request names none

    @property
    def sticky(self) -> bool:
        return bool(self.user)

    def header(self) -> str:
        return f"{self.experiment}; arm={self.route}; assigned={'sticky' if self.sticky else 'per-request'}"

    def reason(self) -> dict[str, str | bool]:
        because = (
            "the arm of this user within the API key, the same on every request"
            if self.sticky
            else "an arm for this request alone: it names no user (send `user` or X-Ragft-User to keep one)"
        )
        return {"experiment": self.experiment, "arm": self.route, "sticky": self.sticky, "assigned": because}


@dataclass(frozen=True)
class Experiment:
    """Routes and their weights, in the order given. Its name is the split itself
    (`rag:50/hybrid:50`): other weights are another experiment, with arms of their own."""

    arms: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, spec: str) -> "Experiment":
        arms: list[tuple[str, int]] = []
        for part in spec.split(","):
            route, colon, weight = part.strip().lower().partition(":")
            if route not in ROUTE_NAMES:
                raise ValueError(
                    f"{part.strip()!r}: {route!r} is not a route; use ROUTE:WEIGHT with one of {ROUTE_NAMES}"
                )
            if not colon or not weight.isdigit() or int(weight) == 0:
                raise ValueError(f"{part.strip()!r}: the weight must be a whole number above 0, as in {route}:50")
            if route in dict(arms):
                raise ValueError(f"{route!r} is named twice")
            arms.append((route, int(weight)))
        if len(arms) < 2:
            raise ValueError("an experiment needs at least two routes, as in rag:50,hybrid:50")
        return cls(tuple(arms))

    @property
    def name(self) -> str:
        return "/".join(f"{route}:{weight}" for route, weight in self.arms)

    def assign(self, tenant: str, user: str | None) -> Arm:
        """`tenant`: the API key's fingerprint; `user`: the caller's user, or None."""
        total = sum(weight for _, weight in self.arms)
        if user:
            hashed = _digest(f"{self.name}\0{tenant}\0{user}")
            point, user_id = int(hashed[:16], 16) % total, _digest(f"{tenant}\0{user}")[:16]
        else:
            point, user_id = secrets.randbelow(total), ""
        for route, weight in self.arms:
            if point < weight:
                return Arm(self.name, route, user_id)
            point -= weight
        raise AssertionError("the weights add up to the total")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def arm_for(experiment: Experiment | None, headers: Headers, user: str | None, tenant: str) -> Arm | None:
    """The arm of a request that asks for the experiment (`X-Ragft-Route: experiment`, or no route
    header while one runs); None for a request that names its route."""
    asked = headers.get(ROUTE_HEADER)
    if asked is not None and asked.strip().lower() != EXPERIMENT:
        return None
    if experiment is None:
        if asked is None:
            return None
        raise InvalidRequest(
            f"{ROUTE_HEADER} is {EXPERIMENT!r}, but this gateway runs no experiment", param=ROUTE_HEADER
        )
    user = user or headers.get(USER_HEADER)
    if user is not None and len(user) > MAX_USER_CHARS:
        raise InvalidRequest(
            f"{USER_HEADER} has {len(user)} characters; the limit is {MAX_USER_CHARS}", param=USER_HEADER
        )
    return experiment.assign(tenant, user)
