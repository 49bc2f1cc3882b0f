"""Grounded fine-tuning examples (training/grounded.py): the checks against the eval set in
process, and the examples built against the real retrieval service with the sample knowledge
base."""

import json
from pathlib import Path

import httpx
import pytest

from evals.dataset import Question, load_unseen_docs
from evals.scoring import abstains, citation_markers, voice
from evals.voice import sample_rules
from gateway.config import GatewaySettings
from gateway.prompt import GROUNDING
from ragft.http import sync_client
from ragft.sample_data import EVAL_SET, FINETUNE_SET, UNSEEN_DOCS
from tests.utils.processes import Processes, embedded_env
from training.grounded import (
    Example,
    Grounding,
    GroundingError,
    Searcher,
    check_held_out,
    cite,
    grounded_mix,
    read_examples,
    refusal,
)
from training.lora import EXAMPLES, REPORT, load_conversations

TRAIN = FINETUNE_SET
UNSEEN = load_unseen_docs(UNSEEN_DOCS)
GREETING = "Hi there, thanks for reaching out to Quillbyte Support!"
SIGN_OFF = "— Quill, Quillbyte Support"
REFUSAL = f"{GREETING}\nI don't have that information in the Quillbyte help center.\n{SIGN_OFF}"


def example(question: str, answer: str, doc_id: str | None) -> Example:
    return Example([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], doc_id)


def held_out(question: str, doc_id: str = "billing-plans-and-prices", split: str = "heldout") -> Question:
    return Question(id="h999", split=split, question=question, doc_id=doc_id, answer="x", facts=("x",))


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        (f"{GREETING}\nThe Team plan is €9 per seat per month.\n{SIGN_OFF}", "per month [2]."),
        (f"{GREETING}\n1. Open Settings.\n2. Click Reset\n{SIGN_OFF}", "2. Click Reset [2]"),
        ("Refunds take 5 days", "Refunds take 5 days [2]"),
        (f"Refunds take 5 days.\n{SIGN_OFF}\n", "Refunds take 5 days [2].\n"),
    ],
)
def test_the_citation_goes_at_the_end_of_the_body_and_keeps_the_voice(answer: str, cited: str) -> None:
    marked = cite(answer, 2, sign_off=SIGN_OFF)
    assert cited in marked
    assert citation_markers(marked) == [2]
    assert voice(marked, sample_rules()) == voice(answer, sample_rules())


def test_the_refusal_is_the_datas_commonest_out_of_scope_answer() -> None:
    other = f"{GREETING}\nPlease ask elsewhere.\n{SIGN_OFF}"
    examples = [example("a?", REFUSAL, None), example("b?", other, None), example("c?", REFUSAL, None)]
    assert refusal([*examples, example("d?", "Yes.", "data-import")]) == REFUSAL
    with pytest.raises(GroundingError, match="needs out-of-scope examples"):
        refusal([example("d?", "Yes.", "data-import")])


def test_a_question_worded_like_a_held_out_one_is_refused_by_name() -> None:
    eval_set = [held_out("How much does the Team plan cost per seat?")]
    close = example("How much does the Team plan cost per seat each month?", "€9.", "billing-plans-and-prices")
    with pytest.raises(GroundingError, match=r"example 2 asks .*held-out eval question h999.*Jaccard 0\.8"):
        check_held_out([example("How do I export?", "Like so.", "data-import"), close], eval_set, UNSEEN)


def test_a_question_about_an_unseen_document_is_refused() -> None:
    with pytest.raises(GroundingError, match="example 1 is about the unseen document 'data-export'"):
        check_held_out([example("Can I export?", "Yes.", "data-export")], [], UNSEEN)


def test_an_eval_set_that_teaches_an_unseen_document_is_refused_before_training() -> None:
    taught = held_out("Can I export?", doc_id="data-export", split="train")
    with pytest.raises(GroundingError, match=r"train split asks about unseen documents \(h999\)"):
        check_held_out([], [taught], UNSEEN)


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return read_examples(TRAIN, load_conversations(TRAIN))


@pytest.fixture(scope="module")
def search(retrieval_url: str) -> Searcher:
    return Searcher(sync_client(retrieval_url), Grounding("help-center", distractor_share=0.2, seed=3), UNSEEN)


@pytest.fixture(scope="module")
def mix(examples: list[Example], search: Searcher) -> list[dict]:
    # 12 out-of-scope examples (single- and two-turn) and 40 about a document keep the build short.
    subset = [e for e in examples if e.doc_id is None][:12] + [e for e in examples if e.doc_id][:40]
    return grounded_mix(subset, search)


def test_grounded_examples_are_the_gateways_prompt_and_cite_their_document(mix: list[dict]) -> None:
    grounded = [record for record in mix if record["kind"] == "grounded"]
    assert len(grounded) == 32  # 40 about a document, 8 (20%) of them shown distractors only
    for record in grounded:
        system, _, answer = record["messages"]
        assert system["role"] == "system" and system["content"].startswith(GROUNDING)
        assert system["content"].count("<source id=") == len(record["sources"]) == 4
        (number,) = citation_markers(answer["content"])
        assert record["sources"][number - 1].startswith(f"{record['doc_id']}#")
        assert f'<source id="{number}" doc_id="{record["doc_id"]}"' in system["content"]
        assert voice(answer["content"], sample_rules()).all


def test_distractor_examples_hold_no_passage_of_their_document_and_refuse(mix: list[dict]) -> None:
    distractors = [record for record in mix if record["kind"] in ("distractors", "out_of_scope")]
    assert sum(record["kind"] == "distractors" for record in distractors) == 8
    for record in distractors:
        assert record["sources"] and not any(s.startswith(f"{record['doc_id']}#") for s in record["sources"])
        assert abstains(record["messages"][-1]["content"])


def test_with_an_evidence_budget_the_passages_are_cut_as_hybrid_cuts_them_and_still_hold_the_one_cited(
    mix: list[dict], examples: list[Example], search: Searcher
) -> None:
    subset = [e for e in examples if e.doc_id is None][:2] + [e for e in examples if e.doc_id][:12]
    cut = Searcher(search.client, Grounding("help-center", seed=3, evidence_chars=600), UNSEEN)
    grounded = [r for r in grounded_mix(subset, cut) if r["kind"] == "grounded"]
    whole = {r["messages"][1]["content"]: r for r in mix if r["kind"] == "grounded"}
    sizes = []  # the prompt cut, and whole: the same example in the mix of whole passages
    for record in grounded:
        system, question, answer = record["messages"]
        assert system["content"].count("<source id=") == len(record["sources"]) <= 4
        (number,) = citation_markers(answer["content"])
        assert record["sources"][number - 1].startswith(f"{record['doc_id']}#")
        if question["content"] in whole:
            sizes.append((len(system["content"]), len(whole[question["content"]]["messages"][0]["content"])))
    # Every prompt as long as the whole one at most (whole where cutting would lose the passage cited).
    assert len(sizes) >= 8 and all(cut <= full for cut, full in sizes)
    assert sum(cut for cut, _ in sizes) < 0.7 * sum(full for _, full in sizes)


def test_no_example_shows_an_unseen_document(mix: list[dict]) -> None:
    shown = {chunk.split("#")[0] for record in mix for chunk in record.get("sources", [])}
    assert shown and not shown & UNSEEN


def test_the_mix_keeps_every_example_bare_and_is_repeatable_by_its_seed(
    mix: list[dict], examples: list[Example], search: Searcher
) -> None:
    subset = [e for e in examples if e.doc_id is None][:12] + [e for e in examples if e.doc_id][:40]
    assert [r["messages"] for r in mix if r["kind"] == "bare"] == [e.messages for e in subset]
    again = grounded_mix(subset, search)
    assert json.dumps(again) == json.dumps(mix)
    reseeded = Searcher(search.client, Grounding("help-center", seed=4), UNSEEN)
    chosen = [r["doc_id"] for r in grounded_mix(subset, reseeded) if r["kind"] == "distractors"]
    assert chosen != [r["doc_id"] for r in mix if r["kind"] == "distractors"]


def test_a_missing_or_too_small_collection_is_refused_with_the_minimum(retrieval_url: str) -> None:
    examples = [example("Is it free?", REFUSAL, None)]
    with sync_client(retrieval_url) as client:
        missing = Searcher(client, Grounding("no-such-collection"), UNSEEN)
        with pytest.raises(GroundingError, match="'no-such-collection' does not exist"):
            grounded_mix(examples, missing)
        name = "grounding-too-small"
        assert httpx.put(f"{retrieval_url}/v1/collections/{name}").status_code == 201
        try:
            body = {"documents": [{"id": f"d{i}", "text": f"Fact number {i}."} for i in range(4)]}
            assert client.post(f"/v1/collections/{name}/documents", json=body).status_code == 200
            with pytest.raises(GroundingError, match=r"holds 4 documents besides the unseen ones; .* at least 5"):
                grounded_mix(examples, Searcher(client, Grounding(name), UNSEEN))
        finally:
            httpx.delete(f"{retrieval_url}/v1/collections/{name}")


def test_finetune_grounded_trains_on_the_mix_and_keeps_it_beside_the_adapter(
    tmp_path: Path, retrieval_url: str, base_model: Path, processes: Processes
) -> None:
    lines = TRAIN.read_text().splitlines()
    data = tmp_path / "six.jsonl"
    single_turn = [line for line in lines if len(json.loads(line)["messages"]) == 2]
    out_of_scope = [line for line in single_turn if '"doc_id": null' in line][:2]
    data.write_text("\n".join([*out_of_scope, *[line for line in lines if '"doc_id": "' in line][:4]]) + "\n")
    env = embedded_env(tmp_path, RAGFT_BASE_MODEL=str(base_model), RAGFT_RETRIEVAL_URL=retrieval_url)
    out = tmp_path / "grounded"
    result = processes.run(
        "finetune",
        "--data",
        str(data),
        "--out",
        str(out),
        "--grounded",
        "--distractor-share",
        "0.25",
        "--epochs",
        "0.1",
        "--batch-size",
        "2",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Built 12 examples from 'help-center': 6 bare, 1 distractors, 3 grounded, 2 out_of_scope" in result.stderr
    trained = [json.loads(line) for line in (out / EXAMPLES).read_text().splitlines()]
    assert [r["kind"] for r in trained].count("grounded") == 3 and len(trained) == 12
    report = json.loads((out / REPORT).read_text())
    assert report["examples"] == 12 and report["steps"] >= 1
    assert report["grounding"] == {
        "collection": "help-center", "top_k": 4, "max_query_chars": 1000, "distractor_share": 0.25, "seed": 0,
        "evidence_chars": 0, "unseen_docs": sorted(UNSEEN),
    }  # fmt: skip


def test_finetune_refuses_a_held_out_question_before_it_loads_a_model(tmp_path: Path, processes: Processes) -> None:
    held_out = json.loads((EVAL_SET).read_text().splitlines()[0])
    data = tmp_path / "leak.jsonl"
    turns = [{"role": "user", "content": held_out["question"]}, {"role": "assistant", "content": REFUSAL}]
    data.write_text(json.dumps({"doc_id": None, "messages": turns}) + "\n")
    env = embedded_env(tmp_path, RAGFT_BASE_MODEL=str(tmp_path / "no-model"))
    command = ("finetune", "--data", str(data), "--out", str(tmp_path / "out"), "--learning-rate", "2e-4")
    result = processes.run(*command, env=env, timeout=120)
    assert result.returncode == 1
    assert f"held-out eval question {held_out['id']}" in result.stderr and "Jaccard 1.00" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_grounding_defaults_are_the_gateways() -> None:
    fields = GatewaySettings.model_fields
    grounding = Grounding("help-center")
    assert (grounding.top_k, grounding.max_query_chars) == (fields["top_k"].default, fields["max_query_chars"].default)
    assert grounding.evidence_chars == fields["hybrid_evidence_chars"].default
