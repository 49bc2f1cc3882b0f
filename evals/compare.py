"""`python -m evals.compare DIR_A DIR_B`: the routes of two eval runs against each other, route
by route on the questions both answered, in the report's pair-by-pair tables. Two runs differ in
what the run settings refuse to mix in one folder: another adapter, max_tokens or sampling."""

import sys
from pathlib import Path
from typing import Any

from evals.dataset import BadEvalSet
from evals.report_markdown import paired_tables, sampling_label
from evals.report_summary import RouteSummary, summarize
from evals.run import EvalFailed


def compare_runs(a_dir: Path, b_dir: Path) -> str:
    """Markdown: each route the two runs share, A's answers against B's. Runs of other eval
    sets or other unseen documents are refused: their questions do not pair."""
    (a_config, _, a_summaries), (b_config, _, b_summaries) = summarize(a_dir), summarize(b_dir)
    for key in ("data", "unseen_docs"):
        if a_config.get(key) != b_config.get(key):
            raise EvalFailed(f"{a_dir} and {b_dir} differ in {key}: their questions do not pair")

    def labelled(out_dir: Path, config: dict[str, Any], summaries: list[RouteSummary]) -> dict[str, RouteSummary]:
        label = f"{out_dir.name}, {config['adapter'] or 'default adapter'}{sampling_label(config.get('sampling'))}"
        return {s.route: RouteSummary(f"{s.route} ({label})", s.asked, s.answers) for s in summaries}

    a, b = labelled(a_dir, a_config, a_summaries), labelled(b_dir, b_config, b_summaries)
    pairs = [(a[route], b[route]) for route in a if route in b]
    if not pairs:
        raise EvalFailed(f"{a_dir} and {b_dir} share no route")
    header = [f"# {a_dir} against {b_dir}", ""]
    return "\n".join(header + paired_tables(pairs, bool(a_config.get("unseen_docs")))) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m evals.compare DIR_A DIR_B")
    try:
        print(compare_runs(Path(sys.argv[1]), Path(sys.argv[2])), end="")
    except (BadEvalSet, EvalFailed) as exc:
        sys.exit(f"error: {exc}")
