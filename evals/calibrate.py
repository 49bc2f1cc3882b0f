"""`python -m evals.calibrate DEV_RUN [HELDOUT_RUN]`: RAGFT_MIN_EVIDENCE_COVERAGE chosen on a run
of the dev split, then applied to a run of the held-out split. Under the abstain policy the
gateway withholds every answer whose passages cover less of the question than the threshold,
whatever the answer says, so the answers of a run (which record their coverage) show what any
threshold would have done: an answer is withheld where the model abstained or its coverage is
below the threshold. The threshold chosen is the highest that refuses at most MAX_REFUSED more of
the dev split's answerable questions than the model itself does, on every route."""

import sys
from collections.abc import Sequence
from pathlib import Path

from evals.dataset import BadEvalSet
from evals.markdown import format_rate, table
from evals.report_summary import Answer, RouteSummary, summarize
from evals.run import EvalFailed

MAX_REFUSED = 0.10  # issue 42's bound on answerable questions refused, here what the threshold adds


def withheld(answer: Answer, threshold: float) -> bool:
    return answer.score.abstained or _coverage(answer) < threshold


def choose(summaries: Sequence[RouteSummary], max_refused: float = MAX_REFUSED) -> float:
    """The highest threshold (one of the coverages seen, or 0) that refuses at most
    `max_refused` more of the answerable questions than the model does by itself, on every route."""
    candidates = sorted({0.0, *(_coverage(a) for s in summaries for a in s.answers)}, reverse=True)
    for threshold in candidates:
        added = [(_rate(s, threshold, answerable=True), _rate(s, 0.0, answerable=True)) for s in summaries]
        if all(k - before <= max_refused * n for (k, n), (before, _) in added):
            return threshold
    return 0.0


def report(dev_dir: Path, heldout_dir: Path | None = None) -> str:
    dev = _split(dev_dir, "dev")
    threshold = choose(dev)
    lines = [
        f"# RAGFT_MIN_EVIDENCE_COVERAGE chosen on {dev_dir.name}: {threshold:.3f}",
        "",
        f"The highest threshold that refuses at most {MAX_REFUSED:.0%} more of the dev split's answerable questions "
        "than the model does by itself, on every route. Withheld: the model abstained, or the coverage is below the "
        "threshold.",
        "",
    ]
    runs = [("dev", dev_dir, dev)]
    if heldout_dir:
        runs.append(("held-out", heldout_dir, _split(heldout_dir, "heldout")))
    for label, run_dir, summaries in runs:
        rows = []
        for s in summaries:
            for at in (0.0, threshold):
                rows.append((s.route, f"{at:.3f}", *_errors(s, at)))
        columns = ("route", "threshold", "abstains: unanswerable", "refuses: answerable", "confidently wrong")
        lines += [f"## {label}: {run_dir.name}", "", *table(columns, rows), ""]
    return "\n".join(lines)


def _split(run_dir: Path, split: str) -> list[RouteSummary]:
    """The run's answers to the questions of `split`, per route."""
    _, _, summaries = summarize(run_dir)
    return [RouteSummary(s.route, s.asked, [a for a in s.answers if a.question.split == split]) for s in summaries]


def _errors(summary: RouteSummary, threshold: float) -> tuple[str, str, str]:
    """Abstained on unanswerable (right), refused answerable (wrong), and confidently wrong:
    neither the facts nor an abstention."""
    right = [a.question.answerable and a.score.correct for a in summary.answers]
    wrong = [a for a, ok in zip(summary.answers, right, strict=True) if not ok and not withheld(a, threshold)]
    return (
        format_rate(*_rate(summary, threshold, answerable=False)),
        format_rate(*_rate(summary, threshold, answerable=True)),
        format_rate(len(wrong), len(summary.answers)),
    )


def _rate(summary: RouteSummary, threshold: float, *, answerable: bool) -> tuple[int, int]:
    mine = [a for a in summary.answers if a.question.answerable == answerable]
    return sum(withheld(a, threshold) for a in mine), len(mine)


def _coverage(answer: Answer) -> float:
    """The coverage the gateway recorded; 1 (never withheld for it) where none was."""
    return float((answer.record.get("grounding") or {}).get("evidence_coverage", 1.0))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m evals.calibrate DEV_RUN [HELDOUT_RUN]")
    try:
        print(report(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None), end="")
    except (BadEvalSet, EvalFailed) as exc:
        sys.exit(str(exc))
