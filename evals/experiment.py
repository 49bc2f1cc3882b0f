"""The report of a live experiment between routes, from the records the gateway kept of each answer
it gave the experiment and the feedback users posted on them (GET /v1/ragft/experiment): its
numbers (evals.experiment_summary), report.md (evals.experiment_markdown) and report.png
(evals.charts). `python -m evals.experiment DIR` rebuilds report.md and report.png from
DIR/records.json."""

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evals.charts import experiment_chart
from evals.experiment_markdown import markdown
from evals.experiment_summary import summarize
from gateway.contract import ExperimentRecords


def build_report(
    payload: ExperimentRecords | Mapping[str, Any], out_dir: Path, detect: float = 0.2
) -> tuple[Path, Path]:
    """report.md and report.png in out_dir, and records.json, the payload they were made from, for
    `python -m evals.experiment DIR` to make them again; `detect` as for summarize."""
    summary = summarize(payload, detect)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = payload.model_dump(mode="json") if isinstance(payload, ExperimentRecords) else dict(payload)
    (out_dir / "records.json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    report, picture = out_dir / "report.md", out_dir / "report.png"
    report.write_text(markdown(summary), encoding="utf-8")
    experiment_chart(summary).savefig(picture, dpi=100)
    return report, picture


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m evals.experiment DIR (with the records.json of an earlier report)")
    out = Path(sys.argv[1])
    try:
        for path in build_report(json.loads((out / "records.json").read_text(encoding="utf-8")), out):
            print(path)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError and a JSONDecodeError are ValueErrors
        sys.exit(f"error: {exc}")
