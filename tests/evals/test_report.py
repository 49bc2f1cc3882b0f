"""The report from recorded answers: every cell of the table computed from fixed answers, the
unseen documents apart, the grounding check's verdicts, the routes compared pair by pair, the
disagreements, the chart with its intervals, and a failed request reported as such."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from matplotlib.container import BarContainer

from evals.charts import report_chart as chart
from evals.compare import compare_runs
from evals.report import build_report
from evals.report_summary import summarize
from evals.run import EvalConfig, EvalFailed
from evals.stats import wilson
from evals.voice import RecordedVoice, VoiceRules, sample_rules

QUESTIONS: list[dict[str, Any]] = [
    {"id": "h1", "split": "heldout", "question": "How long is the link valid?", "doc_id": "signup",
     "answer": "24 hours", "facts": [r"24[ -]?(hours?|h\b)"]},
    {"id": "t1", "split": "train", "question": "What does Business cost?", "doc_id": "prices",
     "answer": "€17", "facts": [r"€ ?17\b"]},
    {"id": "h2", "split": "heldout", "question": "Is there a watch app?", "doc_id": None, "answer": None, "facts": []},
    # Asked only in the unseen documents' run: about a document fine-tuning did not see.
    {"id": "h3", "split": "heldout", "question": "Which format does an export use?", "doc_id": "export",
     "answer": "CSV", "facts": [r"\bcsv\b"]},
]  # fmt: skip
WORDING = {q["id"]: q["question"] for q in QUESTIONS}
SAMPLE_VOICE = RecordedVoice(rules=sample_rules(), origin="the sample's voice file")


def record(question: str, route: str, answer: str, sources: list[str], latency: float, **extra: Any) -> dict:
    retrieve = 0.0 if route == "finetuned" else 20.0
    return {
        "id": question, "route": route, "question": WORDING[question], "status": "ok",
        "model": "voice" if route == "finetuned" else "base", "answer": answer, "finish_reason": "stop",
        "sources": sources, "latency_ms": latency, "timing": {"retrieve": retrieve, "generate": latency - retrieve},
        "prompt_tokens": 900 if route != "finetuned" else 40, "completion_tokens": 30, **extra,
    }  # fmt: skip


def voiced(body: str) -> str:
    return f"{sample_rules().greeting}\n{body}\n{sample_rules().sign_off}"


def new_run(
    tmp_path: Path,
    routes: tuple[str, ...],
    records: list[dict[str, Any]],
    unseen_docs: tuple[str, ...] = (),
    name: str = "run",
    sampling: dict[str, Any] | None = None,
    voice: RecordedVoice = SAMPLE_VOICE,
) -> Path:
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / name
    out.mkdir()
    config = EvalConfig(
        "http://127.0.0.1:1",
        str(data),
        routes,
        max_tokens=64,
        unseen_docs=unseen_docs,
        sampling=sampling or {},
        voice=voice,
    )
    config.check_resumable(out)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    records = [
        record("h1", "rag", "The link is valid for 24 hours [1].", ["signup", "other"], 1000),
        record("t1", "rag", "It costs €17 per user.", ["other"], 2000),
        record("h2", "rag", "The sources do not mention a watch app.", ["other"], 3000),
        record("h1", "finetuned", voiced("The link expires after 48 hours."), [], 500),
        record("t1", "finetuned", voiced("Business is €17 per user per month."), [], 600),
        {"id": "h2", "route": "finetuned", "question": WORDING["h2"], "status": "error", "error": "HTTP 504: deadline"},
    ]
    out = new_run(tmp_path, ("rag", "finetuned"), records)
    with (out / "results.jsonl").open("a") as results:
        results.write('{"id": "cut sh')
    return out


def row(report: str, route: str) -> list[str]:
    line = next(line for line in report.splitlines() if line.startswith(f"| {route} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_every_cell_comes_from_the_recorded_answers(run_dir: Path) -> None:
    report_path, picture = build_report(run_dir)
    report = report_path.read_text()
    one, none_of_1 = "1/1 (100%, 21-100%)", "0/1 (0%, 0-79%)"
    # answers, facts held-out seen docs, unseen docs (none given), train, right document, cites a source,
    # cites the right document, abstains unanswerable, abstains answerable, confidently wrong (held-out:
    # rag right on h1 and abstaining on h2, finetuned wrong on h1), grounding: unsupported,
    # unsupported and wrong, wrong and marked (no verdicts recorded), voice all, greeting, sign-off,
    # format, cut, p50, p95, retrieve p50, prompt tokens, completion tokens
    assert row(report, "rag") == [
        "rag", "3/3", one, "n/a", one, "1/2 (50%, 9-91%)", "1/2 (50%, 9-91%)", "1/2 (50%, 9-91%)", one,
        "0/2 (0%, 0-66%)", "0/2 (0%, 0-66%)", "n/a", "n/a", "n/a", "0/3 (0%, 0-56%)", "0/3 (0%, 0-56%)",
        "0/3 (0%, 0-56%)", "3/3 (100%, 44-100%)", "0/3 (0%, 0-56%)", "2,000", "2,900", "20", "900", "30",
    ]  # fmt: skip
    two = "2/2 (100%, 34-100%)"
    assert row(report, "finetuned") == [
        "finetuned", "2/3", none_of_1, "n/a", one, "n/a", "n/a", "n/a", "n/a", "0/2 (0%, 0-66%)", one,
        "n/a", "n/a", "n/a", two, two, two, two, "0/2 (0%, 0-66%)", "550", "595", "n/a", "40", "30",
    ]  # fmt: skip
    assert "cite a source the prompt did not have: rag 0/3 (0%, 0-56%)." in report
    # Without unseen documents, no table for them; h1 is the only question both routes answered.
    assert "**facts: held-out, unseen docs**" not in report
    assert "| rag vs finetuned | 1 | 0 | 1 | 0 | +100 (-12 to +100) | 1.000 |" in report
    assert "| rag vs finetuned | 0 | n/a | n/a | n/a | n/a | n/a |" in report  # h2: finetuned failed
    assert "Requests that failed (rerun the same command to retry them): finetuned 1." in report
    # h1: rag right, finetuned wrong; t1 both right; h2 has no finetuned answer to compare.
    assert "## Where the routes disagree (1 of 3 questions)" in report
    assert "**h1** (heldout) How long is the link valid? — expected: 24 hours" in report
    assert "- finetuned ✗: Hi there, thanks for reaching out to Quillbyte Support! ⏎ The link expires" in report
    assert "Models that answered: rag: base; finetuned: voice." in report
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_auto_is_set_against_the_best_fixed_route_and_scored_on_what_it_chose(tmp_path: Path) -> None:
    records = [
        record("h1", "rag", "The link is valid for 24 hours.", ["signup"], 1000),
        record("t1", "rag", "It costs €17 per user.", ["prices"], 1000),
        record("h2", "rag", "Yes, there is a watch app.", ["other"], 1000),
        record("h1", "finetuned", voiced("The link expires after 48 hours."), [], 500),
        record("t1", "finetuned", voiced("It is €17."), [], 500),
        record("h2", "finetuned", voiced("I don't have that information."), [], 500),
        record("h1", "auto", "The link is valid for 24 hours.", ["signup"], 1000, answered_as="rag"),
        record("t1", "auto", voiced("It is €19."), [], 500, answered_as="finetuned"),
        record("h2", "auto", voiced("I don't have that information."), [], 500, answered_as="finetuned"),
    ]
    report = build_report(new_run(tmp_path, ("rag", "finetuned", "auto"), records))[0].read_text()
    assert "auto chose, on answerable questions: finetuned 1, rag 1; on unanswerable ones: finetuned 1." in report
    assert "| rag | 2/2 (100%, 34-100%) | 0/1 (0%, 0-79%) |" in report
    assert "| auto | 1/2 (50%, 9-91%) | 1/1 (100%, 21-100%) |" in report
    assert "- Answerable: auto -50.0 points against rag, the best fixed route (more than the 2 points" in report
    assert "- Unanswerable: auto says it does not know more often than rag (1 against 0)." in report
    # auto's right document and citations count only where it retrieved: h1, found, not cited.
    assert row(report, "auto")[5:8] == ["1/1 (100%, 21-100%)", "0/1 (0%, 0-79%)", "0/1 (0%, 0-79%)"]


@pytest.fixture
def unseen_run(tmp_path: Path) -> Path:
    """h3 is about `export`, an unseen document; rag cites a third source of two there."""
    records = [
        record("h1", "rag", "The link is valid for 24 hours [1].", ["signup", "other"], 1000),
        record("h3", "rag", "Exports are CSV files [2][3].", ["other", "export"], 1000),
        record("t1", "rag", "It costs €17 [1].", ["prices"], 1000),
        record("h2", "rag", "Yes, there is a watch app [1].", ["other"], 1000),
        record("h1", "finetuned", voiced("The link expires after 48 hours."), [], 500),
        record("h3", "finetuned", voiced("Exports are CSV files."), [], 500),
        record("t1", "finetuned", voiced("It is €17."), [], 500),
        record("h2", "finetuned", voiced("I don't have that information."), [], 500),
    ]
    return new_run(tmp_path, ("rag", "finetuned"), records, unseen_docs=("export",))


def test_unseen_documents_get_their_own_column_and_paired_table(unseen_run: Path) -> None:
    report = build_report(unseen_run)[0].read_text()
    one, none_of_1, three = "1/1 (100%, 21-100%)", "0/1 (0%, 0-79%)", "3/3 (100%, 44-100%)"
    assert "4 questions, 2 answerable held-out (1 of them on unseen documents)" in report
    # facts: seen, unseen, train; right document, cites a source, cites the right document
    assert row(report, "rag")[2:8] == [one, one, one, three, three, three]
    assert row(report, "finetuned")[2:8] == [none_of_1, one, one, "n/a", "n/a", "n/a"]
    assert "passage (export);" in report
    assert "cite a source the prompt did not have: rag 1/4 (25%, 5-70%)." in report
    section = report.split("## Routes compared pair by pair")[1].split("## Where the routes disagree")[0]
    heading = re.compile(r"^\*\*(.+)\*\*$", re.MULTILINE)
    tables = dict(zip(heading.findall(section), heading.split(section)[2::2], strict=True))
    assert list(tables) == ["facts: held-out, seen docs", "facts: held-out, unseen docs", "abstains: unanswerable"]
    # A vs B, questions, both right, only A, only B, A - B in points (95% interval), McNemar p
    assert "| rag vs finetuned | 1 | 0 | 1 | 0 | +100 (-12 to +100) | 1.000 |" in tables["facts: held-out, seen docs"]
    assert "| rag vs finetuned | 1 | 1 | 0 | 0 | +0 (-79 to +79) | 1.000 |" in tables["facts: held-out, unseen docs"]
    assert "| rag vs finetuned | 1 | 0 | 0 | 1 | -100 (-100 to +12) | 1.000 |" in tables["abstains: unanswerable"]


def test_the_chart_draws_each_rate_with_its_wilson_interval(unseen_run: Path) -> None:
    _, _, summaries = summarize(unseen_run)
    quality = chart(summaries).axes[0]
    bars = [container for container in quality.containers if isinstance(container, BarContainer)]
    assert [bar.get_label() for bar in bars] == ["rag", "finetuned"]
    # The first three groups: facts on held-out seen docs, held-out unseen docs, train.
    expected = {"rag": [(1, 1), (1, 1), (1, 1)], "finetuned": [(0, 1), (1, 1), (1, 1)]}
    for bar, counts in zip(bars, expected.values(), strict=True):
        heights = [patch.get_height() for patch in bar.patches[:3]]
        assert heights == [k / n * 100 for k, n in counts]
        assert bar.errorbar is not None
        segments = bar.errorbar.lines[2][0].get_segments()[:3]  # each: [[x, low], [x, high]]
        for segment, (k, n) in zip(segments, counts, strict=True):
            assert list(segment[:, 1]) == pytest.approx([bound * 100 for bound in wilson(k, n)])


def test_two_runs_are_compared_route_by_route_on_the_questions_both_answered(tmp_path: Path, unseen_run: Path) -> None:
    other = new_run(
        tmp_path,
        ("rag",),
        [
            record("h1", "rag", "I do not know.", ["other"], 1000),
            record("h3", "rag", "Exports are CSV files [1].", ["export"], 1000),
            record("h2", "rag", "The sources do not mention a watch app.", ["other"], 1000),
        ],
        unseen_docs=("export",),
        name="other",
        sampling={"frequency_penalty": 0.6},
    )
    report = compare_runs(unseen_run, other)
    assert "finetuned" not in report  # a route only one run asked
    seen, unseen, abstention = report.split("**")[2::2]
    pair = 'rag (run, default adapter) vs rag (other, default adapter, sampling `{"frequency_penalty": 0.6}`)'
    assert f"| {pair} | 1 | 0 | 1 | 0 | +100 (-12 to +100) | 1.000 |" in seen
    assert f"| {pair} | 1 | 1 | 0 | 0 |" in unseen
    assert f"| {pair} | 1 | 0 | 0 | 1 |" in abstention
    with pytest.raises(EvalFailed, match="share no route"):
        compare_runs(unseen_run, new_run(tmp_path, ("hybrid",), [], unseen_docs=("export",), name="third"))
    with pytest.raises(EvalFailed, match="differ in unseen_docs"):
        compare_runs(unseen_run, new_run(tmp_path, ("rag",), [], name="fourth"))


GROUNDING_COLUMNS = slice(11, 14)  # grounding: unsupported; unsupported, wrong; wrong, marked
VOICE_COLUMNS = slice(14, 18)  # voice: all rules, greeting, sign-off, format


def verdict(*unsupported: str, unknown_citations: tuple[int, ...] = ()) -> dict[str, Any]:
    """The `grounding` field of a recorded answer the check found `unsupported` items in."""
    supported = not unsupported and not unknown_citations
    return {"supported": supported, "unsupported": list(unsupported), "unknown_citations": list(unknown_citations)}


def test_the_grounding_columns_count_the_checks_verdicts_against_the_facts(tmp_path: Path) -> None:
    records = [
        # rag: marked and wrong (h1), marked but right (t1), wrong but not marked (h3), marked unanswerable (h2).
        record("h1", "rag", "The link is valid for 48 hours.", ["signup"], 1000, grounding=verdict("48 hours")),
        record("t1", "rag", "It costs €17 per user.", ["prices"], 1000, grounding=verdict("€17")),
        record("h3", "rag", "Exports are PDF files.", ["export"], 1000, grounding=verdict()),
        record("h2", "rag", "Yes, the watch app costs €5.", ["other"], 1000, grounding=verdict("€5")),
        # hybrid: an abstention (wrong, not marked: no recall miss), a citation to no source (marked,
        # wrong), a right answer, and an answer recorded before the gateway checked grounding.
        record("h1", "hybrid", "I don't know.", ["signup"], 1000, grounding=verdict()),
        record("t1", "hybrid", "It is €19 [3].", ["prices"], 1000, grounding=verdict(unknown_citations=(3,))),
        record("h3", "hybrid", "Exports are CSV files [1].", ["export"], 1000, grounding=verdict()),
        record("h2", "hybrid", "The sources do not mention a watch app.", ["other"], 1000),
        # finetuned retrieves nothing, so it carries no verdict; auto only where it chose a retrieving route.
        *(record(q, "finetuned", voiced("It is €17."), [], 500, grounding=None) for q in ("h1", "t1", "h3", "h2")),
        record("h1", "auto", "It is valid for 24 hours.", ["signup"], 1000, answered_as="rag", grounding=verdict()),
        record("t1", "auto", voiced("It is €17."), [], 500, answered_as="finetuned", grounding=None),
    ]
    run = new_run(tmp_path, ("rag", "hybrid", "finetuned", "auto"), records, unseen_docs=("export",))
    report = build_report(run)[0].read_text()
    half = "1/2 (50%, 9-91%)"
    assert row(report, "rag")[GROUNDING_COLUMNS] == ["3/4 (75%, 30-95%)", half, half]
    one = "1/1 (100%, 21-100%)"
    assert row(report, "hybrid")[GROUNDING_COLUMNS] == ["1/3 (33%, 6-79%)", one, one]
    assert row(report, "finetuned")[GROUNDING_COLUMNS] == ["n/a"] * 3
    assert row(report, "auto")[GROUNDING_COLUMNS] == ["0/1 (0%, 0-79%)", "n/a", "n/a"]  # nothing marked, none wrong
    assert (
        "Answers without a verdict: hybrid (1 of 4 answers that retrieved carry none, all recorded before the "
        "gateway checked grounding); finetuned (no answer retrieved)."
    ) in report


def test_a_run_recorded_before_the_grounding_check_reads_n_a_with_the_reason(run_dir: Path) -> None:
    report = build_report(run_dir)[0].read_text()
    assert row(report, "rag")[GROUNDING_COLUMNS] == row(report, "finetuned")[GROUNDING_COLUMNS] == ["n/a"] * 3
    assert (
        "Answers without a verdict: rag (3 of 3 answers that retrieved carry none, all recorded before the gateway "
        "checked grounding); finetuned (no answer retrieved)."
    ) in report


def test_without_voice_rules_the_voice_columns_read_n_a_with_the_reason(tmp_path: Path) -> None:
    reason = "adapter 'acme', trained with no voice.json beside /data/acme/train.jsonl"
    records = [
        record("h1", "rag", "The link is valid for 24 hours [1].", ["signup"], 1000),
        record("h1", "finetuned", "Hello from Acme!\nIt is valid for 24 hours.\nAcme Care", [], 500),
    ]
    run = new_run(tmp_path, ("rag", "finetuned"), records, voice=RecordedVoice(rules=None, origin=reason))
    report = build_report(run)[0].read_text()
    assert row(report, "rag")[VOICE_COLUMNS] == row(report, "finetuned")[VOICE_COLUMNS] == ["n/a"] * 4
    assert f"- **voice**: n/a, no rules to score it on: {reason}. `ragft eval --voice FILE`" in report
    assert "0%" not in "".join(row(report, "finetuned")[VOICE_COLUMNS])


def test_the_voice_scored_is_the_one_the_run_recorded(tmp_path: Path) -> None:
    acme = RecordedVoice(
        rules=VoiceRules(greeting="Hello from Acme!", sign_off="Acme Care", max_steps=6, max_sentences=3),
        origin="--voice acme/voice.json",
    )
    records = [record("h1", "finetuned", "Hello from Acme!\nIt is valid for 24 hours.\nAcme Care", [], 500)]
    report = build_report(new_run(tmp_path, ("finetuned",), records, voice=acme))[0].read_text()
    assert row(report, "finetuned")[VOICE_COLUMNS] == ["1/1 (100%, 21-100%)"] * 4
    assert "- **voice**: the rules of --voice acme/voice.json: greeting `Hello from Acme!` first, sign-off " in report


def test_a_run_recorded_before_voice_rules_were_data_is_scored_on_the_samples_voice(run_dir: Path) -> None:
    """As it was scored then: its report rebuilt reads the same."""
    before = build_report(run_dir)[0].read_text()
    config = json.loads((run_dir / "run.json").read_text())
    del config["voice"]
    (run_dir / "run.json").write_text(json.dumps(config))
    after = build_report(run_dir)[0].read_text()
    assert [row(after, route) for route in ("rag", "finetuned")] == [
        row(before, route) for route in ("rag", "finetuned")
    ]
    assert "- **voice**: the rules of data/finetune/voice.json (the sample's: runs recorded before" in after
    config["voice"] = None  # recorded with no voice chosen
    (run_dir / "run.json").write_text(json.dumps(config))
    assert row(build_report(run_dir)[0].read_text(), "finetuned")[VOICE_COLUMNS] == ["n/a"] * 4
