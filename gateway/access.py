"""Who may read and change which collections, and spend how many tokens. `RAGFT_API_KEYS` holds
keys with every right; `RAGFT_API_KEYS_FILE` holds scoped keys, one per line,
`KEY COLLECTIONS [admin] [tokens-per-day=N] [tokens-per-minute=N] [experiment=ROUTE:WEIGHT,...]
[grounding=mark|abstain]`:

    # support bots read the help center within a daily budget; one tries hybrid against rag
    support-bot-key-3f9a   help-center           tokens-per-day=200000 grounding=abstain
    support-bot-key-5c21   help-center           experiment=rag:50,hybrid:50
    docs-team-key-81c2     help-center,internal  admin
    ops-key-c77e           *                     admin

A key reads the collections it names (`*`: all of them); `admin` lets it add and delete
documents in those; a budget bounds the tokens it may spend (gateway/budgets.py); an
experiment splits its requests between routes instead of RAGFT_EXPERIMENT's; `grounding` is
what its answers that fail the grounding check get, instead of RAGFT_GROUNDING_POLICY. A line whose
first character is `#` is a comment, so no key starts with one. Messages about a key never
quote it, so it cannot leak into a log."""

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gateway.budgets import FIELD_PREFIX as BUDGET_PREFIX
from gateway.budgets import Budget
from gateway.contract import GROUNDING_POLICIES
from gateway.experiments import Experiment
from ragft.errors import Forbidden, Unauthorized
from ragft.settings import COLLECTION_NAME

EVERY_COLLECTION = "*"
PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
ADMIN = "admin"
EXPERIMENT_FIELD = "experiment"
GROUNDING_FIELD = "grounding"
OPTIONS = "[admin] [tokens-per-day=N] [tokens-per-minute=N] [experiment=ROUTE:WEIGHT,...] [grounding=mark|abstain]"


@dataclass(frozen=True)
class Access:
    """One caller's rights: the collections it may read (None: all), whether it may change them,
    and the token budgets it spends from (none: no bound)."""

    collections: frozenset[str] | None
    admin: bool
    budgets: tuple[Budget, ...] = ()
    experiment: Experiment | None = None  # this key's own, instead of RAGFT_EXPERIMENT
    grounding: str | None = None  # this key's grounding policy, instead of RAGFT_GROUNDING_POLICY

    def can_read(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def check_read(self, collection: str, *, param: str) -> None:
        """The same refusal whether or not the collection exists, so a key learns nothing about
        collections outside its scope."""
        if not self.can_read(collection):
            raise Forbidden(f"this API key may not read collection {collection!r}", param=param)

    def check_admin(self, collection: str, *, param: str) -> None:
        self.check_read(collection, param=param)
        if not self.admin:
            message = f"this API key may read collection {collection!r} but not change it: that needs admin"
            raise Forbidden(message, param=param)


EVERYTHING = Access(None, admin=True)


@dataclass(frozen=True)
class KeyRing:
    """Every key the gateway accepts and what each may do; empty: no authentication."""

    keys: dict[str, Access] = field(repr=False)

    @property
    def budgeted(self) -> bool:
        return any(access.budgets for access in self.keys.values())

    @property
    def experimenting(self) -> bool:
        return any(access.experiment for access in self.keys.values())

    @classmethod
    def read(cls, full_keys: str, keys_file: Path | None) -> "KeyRing":
        keys = {key.strip(): EVERYTHING for key in full_keys.split(",") if key.strip()}
        if keys_file is not None:
            keys |= _scoped_keys(keys_file, set(keys))
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def admit(self, authorization: str) -> tuple[str | None, Access]:
        """The caller's key and rights, from its `Authorization: Bearer KEY` header."""
        if not self.keys:
            return None, EVERYTHING
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("this gateway needs an API key: send Authorization: Bearer KEY")
        offered = key.strip().encode()
        # Compare with every key, so the time taken says nothing about which one nearly matched.
        found = None
        for known, access in self.keys.items():
            if secrets.compare_digest(offered, known.encode()):
                found = known, access
        if found is None:
            raise Unauthorized("the API key is not valid")
        return found

    def key_for(self, collection: str) -> str:
        """A key that reads `collection`, for ragft's own commands that call the gateway; "" when
        the gateway has no keys."""
        if not self.keys:
            return ""
        # The narrowest such key that spends no budget and runs no experiment of its own (a
        # customer's), before those that do: read-only before admin, named collections before `*`.
        narrowest = {
            key: (bool(access.budgets), access.experiment is not None, access.admin, access.collections is None)
            for key, access in self.keys.items()
        }
        readers = sorted(
            (key for key, access in self.keys.items() if access.can_read(collection)), key=lambda k: (narrowest[k], k)
        )
        if not readers:
            raise ValueError(f"no key in RAGFT_API_KEYS or RAGFT_API_KEYS_FILE may read collection {collection!r}")
        return readers[0]


def _scoped_keys(keys_file: Path, taken: set[str]) -> dict[str, Access]:
    try:
        lines = keys_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"RAGFT_API_KEYS_FILE {keys_file}: cannot read it: {exc}") from None
    keys: dict[str, Access] = {}
    first_seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"RAGFT_API_KEYS_FILE {keys_file} line {number}"
        key, access = _scoped_key(line.split(), where)
        if key in taken:
            raise ValueError(f"{where}: the key is also in RAGFT_API_KEYS")
        if key in first_seen:
            raise ValueError(f"{where}: the key on line {first_seen[key]} appears again")
        first_seen[key] = number
        keys[key] = access
    if not keys:
        raise ValueError(f"RAGFT_API_KEYS_FILE {keys_file} names no key: every line is blank or a # comment")
    return keys


def _scoped_key(fields: list[str], where: str) -> tuple[str, Access]:
    if len(fields) < 2:
        raise ValueError(f"{where}: expected KEY COLLECTIONS {OPTIONS}")
    if not PRINTABLE_ASCII.match(fields[0]):
        raise ValueError(f"{where}: a key may hold only printable ASCII characters (what an HTTP header carries)")
    try:
        options = _options(fields[2:])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    names = fields[1].split(",")
    if names == [EVERY_COLLECTION]:
        return fields[0], Access(None, *options)
    if not all(re.match(COLLECTION_NAME, name) for name in names):
        # Not quoted: with the columns swapped, the field would be the key.
        raise ValueError(
            f"{where}: the second field must be collection names (letters, digits, _ and -) separated by "
            f"commas, or {EVERY_COLLECTION} alone"
        )
    return fields[0], Access(frozenset(names), *options)


def _options(fields: list[str]) -> tuple[bool, tuple[Budget, ...], Experiment | None, str | None]:
    """The fields after the collections, each at most once, in any order: admin, the budgets,
    the experiment and the grounding policy."""
    admin, budgets, experiment, grounding, seen = False, [], None, None, set()
    for number, field_ in enumerate(fields, start=3):
        name, _, value = field_.partition("=")
        if field_ != ADMIN and name not in (EXPERIMENT_FIELD, GROUNDING_FIELD) and not name.startswith(BUDGET_PREFIX):
            # Not quoted: two lines run together would put a key here.
            raise ValueError(f"field {number} is none of {OPTIONS}")
        if name in seen:
            raise ValueError(f"{name!r} appears twice")
        seen.add(name)
        if field_ == ADMIN:
            admin = True
        elif name == EXPERIMENT_FIELD:
            experiment = Experiment.parse(value)
        elif name == GROUNDING_FIELD:
            if value not in GROUNDING_POLICIES:
                raise ValueError(f"grounding={value!r}: use one of {', '.join(GROUNDING_POLICIES)}")
            grounding = value
        else:
            budgets.append(Budget.parse(field_))
    return admin, tuple(budgets), experiment, grounding
