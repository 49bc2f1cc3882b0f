"""The suite's tiers, and the fixtures that put a test in each (the hook in tests/conftest.py)."""

TIERS = ("unit", "services", "stack")
# The heaviest tier whose fixtures a test uses is its tier; none of them: unit.
TIER_FIXTURES = {"stack": {"generation_url", "generation_env"}, "services": {"processes"}}


def tier_of(fixture_names: set[str]) -> str:
    return next((tier for tier, names in TIER_FIXTURES.items() if fixture_names & names), "unit")
