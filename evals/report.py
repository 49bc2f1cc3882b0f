"""The eval report of a run's recorded answers: the answers scored per route
(evals.report_summary), report.md (evals.report_markdown) and report.png (evals.charts).
`python -m evals.report DIR` rebuilds both."""

import sys
from pathlib import Path

from evals.charts import report_chart
from evals.dataset import BadEvalSet
from evals.report_markdown import markdown
from evals.report_summary import summarize
from evals.run import EvalFailed
from evals.voice import VoiceError


def build_report(out_dir: Path) -> tuple[Path, Path]:
    config, questions, summaries = summarize(out_dir)
    report, picture = out_dir / "report.md", out_dir / "report.png"
    report.write_text(markdown(config, questions, summaries), encoding="utf-8")
    report_chart(summaries).savefig(picture, dpi=100)
    return report, picture


if __name__ == "__main__":
    try:
        for path in build_report(Path(sys.argv[1])):
            print(path)
    except (BadEvalSet, EvalFailed, VoiceError) as exc:
        sys.exit(f"error: {exc}")
