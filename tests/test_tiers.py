"""Every collected test has exactly one tier, assigned from the fixtures it uses."""

import pytest

from tests.utils.tiers import TIERS

# One of each kind, by what it starts: nothing, ragft processes, a real vLLM.
KNOWN = {
    "tests/retrieval/test_chunking.py": "unit",
    "tests/training/test_lora.py::test_only_assistant_turns_are_learned": "unit",  # base model in-process
    "tests/gateway/test_faults.py::test_generation_down_is_a_503": "unit",  # the gateway in this process
    "tests/retrieval/test_service_process.py": "services",
    "tests/gateway/test_resilience.py::test_sigterm_drains": "services",  # a process for its SIGTERM, no vLLM
    "tests/test_up.py": "stack",
    "tests/gateway/test_routes.py": "stack",
}


def test_each_test_has_one_tier_from_its_fixtures(request: pytest.FixtureRequest) -> None:
    checked = set()
    for item in request.session.items:
        marks = [mark.name for mark in item.iter_markers() if mark.name in TIERS]
        assert len(marks) == 1, f"{item.nodeid}: {marks}"
        for prefix, tier in KNOWN.items():
            if item.nodeid.startswith(prefix):
                assert marks[0] == tier, f"{item.nodeid} is {marks[0]}, not {tier}"
                checked.add(prefix)
    if request.config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        # The whole suite was collected (`-m` may have left tiers out): every example of the tiers
        # it kept was there.
        kept = {mark.name for item in request.session.items for mark in item.iter_markers() if mark.name in TIERS}
        assert checked == {prefix for prefix, tier in KNOWN.items() if tier in kept}
