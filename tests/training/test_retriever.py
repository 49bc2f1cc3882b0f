"""`ragft finetune-retriever` on the session's real retrieval service (the sample knowledge base),
training the real all-MiniLM-L6-v2 on the CPU for three steps (an epoch takes minutes); then the
tuned model serving search in a retrieval app of its own."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from evals.dataset import Question
from services.retrieval.app import create_app
from services.retrieval.embedding import default_model_path
from tests.utils.processes import Processes, embedded_env
from tests.utils.retrieval import retrieval_settings, unique_collection, upsert
from training.retriever import MIN_PAIRS, Passage, RetrieverError, training_pairs

SAMPLE = ("pricing", "# Pricing\n\n## Team plan\n\nThe Team plan costs 10 euros per seat per month.")


@pytest.fixture(scope="module")
def tuned(
    tmp_path_factory: pytest.TempPathFactory, processes: Processes, retrieval_url: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("retriever")
    env = embedded_env(folder, RAGFT_RETRIEVAL_URL=retrieval_url)
    command = ("finetune-retriever", "--out", str(folder / "tuned"), "--epochs", "1", "--max-steps", "3")
    trained = processes.run(*command, env=env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    yield folder / "tuned", env


def test_it_trains_on_pairs_from_the_collection_and_records_the_held_out_hit_rate(
    tuned: tuple[Path, dict[str, str]],
) -> None:
    out, _ = tuned
    record = json.loads((out / "ragft.json").read_text())
    assert record["collection"] == "help-center" and record["base_model"] == default_model_path()
    assert record["pairs"]["eval-train"] >= 30 and record["pairs"]["heading"] > 100
    assert record["steps"] == 3 and record["train_loss"] > 0
    rates = record["heldout_dense_hit_rate"]
    for moment in ("before", "after"):
        assert set(rates[moment]) == {"hit@1", "hit@5"}
        assert 0 < rates[moment]["hit@1"] <= rates[moment]["hit@5"] <= 1
    assert (out / "model.safetensors").exists() and (out / "modules.json").exists()


def test_a_tuned_retriever_loads_and_serves_search(tuned: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    out, _ = tuned
    with TestClient(create_app(retrieval_settings("edge", tmp_path, embedding_model=str(out)))) as client:
        name = unique_collection()
        assert client.put(f"/v1/collections/{name}").status_code == 201
        upsert(client, name, SAMPLE, ("sync", "# Sync errors\n\nError QB-2041 means the device clock is wrong."))
        found = client.post(
            f"/v1/collections/{name}/search", json={"query": "How much is the Team plan?", "mode": "dense"}
        )
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["doc_id"] == "pricing"


def test_an_existing_model_folder_is_not_written_over(processes: Processes, tuned: tuple[Path, dict[str, str]]) -> None:
    out, env = tuned
    before = (out / "ragft.json").read_text()
    again = processes.run("finetune-retriever", "--out", str(out), "--epochs", "1", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    assert (out / "ragft.json").read_text() == before


def test_too_few_pairs_are_refused_naming_the_minimum() -> None:
    passages = [Passage("pricing", "Pricing\n\n## Team plan\n\nThe Team plan costs 10 euros.", "Pricing", "Team plan")]
    with pytest.raises(RetrieverError, match=f"1 training pairs; retriever training needs at least {MIN_PAIRS}"):
        training_pairs([], [], passages)


def test_a_held_out_question_never_trains() -> None:
    passages = [
        Passage(f"doc-{n}", f"Doc {n}\n\n## Part {n}\n\nText {n} costs {n} euros.", f"Doc {n}", f"Part {n}")
        for n in range(40)
    ]
    asked = Question(
        id="x", split="train", question="Doc 3: Part 3", doc_id="doc-3", answer="3 euros", facts=("3 euros",)
    )
    # The same words, other case and punctuation: still the held-out question.
    held = Question(id="h", split="heldout", question="doc 3 - part 3?", doc_id="doc-3", answer="3", facts=("3",))
    pairs = training_pairs([asked], [held], passages)
    assert len(pairs) == 39 and "Doc 3: Part 3" not in {pair.question for pair in pairs}
