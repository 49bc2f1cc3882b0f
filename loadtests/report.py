"""The load test's report, from Locust's CSV files in a results folder: report.md (a table per
route and step) and report.png (matplotlib). `python -m loadtests.report DIR` rebuilds it.

A results folder holds one `users-<N>-<label>_stats.csv` per Locust run (`users-<N>_stats.csv`
works too), label being a route or "mixed", and the runner's run.json (the question set, the
collection and the adapter, which the report states). Entries are read as the locustfile names them:
`POST <route>`, `POST <route> stream`, `TTFT <route>`, `TOKENS_PER_S <route>`, `PROMPT_TOKENS <route>`,
`COMPLETION_TOKENS <route>`, `RETRIEVE <route>`, `GENERATE <route>`. Locust keeps response times in
buckets of two significant digits (3432 ms is counted as 3400), so its percentiles are that
precise; its averages are exact."""

import csv
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtests.options import RUN_FILE

STATS_FILE = re.compile(r"users-(\d+)(?:-(.+))?_stats\.csv")
STREAM = " stream"
ROUTE_ORDER = ("rag", "finetuned", "hybrid")


@dataclass
class Entry:
    """One row of a Locust `_stats.csv`."""

    type: str
    name: str
    requests: int
    failures: int
    rps: float
    average: float
    percentiles: dict[str, float | None]  # "50%", "95%", "99%", ... -> ms (None: no requests)

    def p(self, percent: str) -> float | None:
        return self.percentiles.get(percent) if self.requests else None


@dataclass
class RouteRow:
    """One route at one step: what the report shows."""

    users: int
    route: str  # the route, with the run's label when it is another (e.g. "rag (mixed)")
    requests: int
    failures: int
    rps: float
    latency: Entry | None  # non-streamed answers; streamed ones when the run sent none
    latency_streamed: bool
    ttft: Entry | None
    tokens_per_s: Entry | None
    prompt_tokens: Entry | None
    completion_tokens: Entry | None
    retrieve: Entry | None
    generate: Entry | None


def _number(text: str) -> float | None:
    return None if text in ("", "N/A") else float(text)


def read_stats(path: Path) -> list[Entry]:
    with path.open(newline="") as handle:
        return [
            Entry(
                type=row["Type"],
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=float(row["Requests/s"]),
                average=float(row["Average Response Time"]),
                percentiles={key: _number(value) for key, value in row.items() if key.endswith("%")},
            )
            for row in csv.DictReader(handle)
            if row["Name"] != "Aggregated"
        ]


def route_rows(results_dir: Path) -> list[RouteRow]:
    """Every route of every run in the folder, by step (users) and then route."""
    rows = []
    for path in sorted(results_dir.glob("users-*_stats.csv")):
        if not (match := STATS_FILE.fullmatch(path.name)):
            continue
        users, label = int(match[1]), match[2]
        entries = {(entry.type, entry.name): entry for entry in read_stats(path)}
        routes = dict.fromkeys(name.removesuffix(STREAM) for kind, name in entries if kind == "POST")
        for route in routes:
            answers = [entries[key] for key in (("POST", route), ("POST", route + STREAM)) if key in entries]
            plain, streamed = entries.get(("POST", route)), entries.get(("POST", route + STREAM))
            latency_streamed = not (plain and plain.requests)
            rows.append(
                RouteRow(
                    users=users,
                    route=route if label in (None, route) else f"{route} ({label})",
                    requests=sum(entry.requests for entry in answers),
                    failures=sum(entry.failures for entry in answers),
                    rps=sum(entry.rps for entry in answers),
                    latency=streamed if latency_streamed else plain,
                    latency_streamed=latency_streamed,
                    ttft=entries.get(("TTFT", route)),
                    tokens_per_s=entries.get(("TOKENS_PER_S", route)),
                    prompt_tokens=entries.get(("PROMPT_TOKENS", route)),
                    completion_tokens=entries.get(("COMPLETION_TOKENS", route)),
                    retrieve=entries.get(("RETRIEVE", route)),
                    generate=entries.get(("GENERATE", route)),
                )
            )
    return sorted(rows, key=_order)


def _order(row: RouteRow) -> tuple[int, int, str]:
    """By step, then rag, finetuned, hybrid (any other route after them), each before its mixed-run rows."""
    route = row.route.split(" ")[0]
    return row.users, ROUTE_ORDER.index(route) if route in ROUTE_ORDER else len(ROUTE_ORDER), row.route


def _ms(entry: Entry | None, percent: str) -> str:
    value = entry.p(percent) if entry else None
    return "n/a" if value is None else f"{value:,.0f}"


def _mean(entry: Entry | None) -> str:
    return f"{entry.average:,.0f}" if entry and entry.requests else "n/a"


def _named(value: str | None) -> str:
    return f"`{value}`" if value else "the gateway's default"


def asked(results_dir: Path) -> str:
    """What the users asked and where, from the runner's RUN_FILE."""
    path = results_dir / RUN_FILE
    if not path.exists():
        return f"Question set, collection and adapter: not recorded (no {RUN_FILE} in this folder)."
    run = json.loads(path.read_text())
    return (
        f"Questions from `{run['data']}` ({run['questions']:,}); collection {_named(run['collection'])}; "
        f"adapter {_named(run['adapter'])}."
    )


def markdown(results_dir: Path, rows: list[RouteRow], failures: list[tuple[str, str, str, int]]) -> str:
    steps = sorted({row.users for row in rows})
    lines = [
        f"# Load test: {results_dir.name}",
        "",
        asked(results_dir),
        "",
        f"Users per run: {', '.join(map(str, steps))}. Each row is one route in one Locust run; "
        "latencies in ms. Built by `loadtests/report.py` from Locust's CSV files in this folder.",
        "",
        "| users | route | requests | failures | req/s | p50 | p95 | p99 | TTFT p50 | TTFT p95 | output tok/s p50 "
        "| prompt tokens, mean | completion tokens, mean | retrieve p50 | generate p50 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mark = "*" if row.latency_streamed else ""
        lines.append(
            f"| {row.users} | {row.route}{mark} | {row.requests:,} | {row.failures:,} | {row.rps:.2f} "
            f"| {_ms(row.latency, '50%')} | {_ms(row.latency, '95%')} | {_ms(row.latency, '99%')} "
            f"| {_ms(row.ttft, '50%')} | {_ms(row.ttft, '95%')} | {_ms(row.tokens_per_s, '50%')} "
            f"| {_mean(row.prompt_tokens)} | {_mean(row.completion_tokens)} "
            f"| {_ms(row.retrieve, '50%')} | {_ms(row.generate, '50%')} |"
        )
    lines += [
        "",
        "- requests, failures, req/s: streamed and non-streamed answers together.",
        "- p50, p95, p99: the whole answer, of the non-streamed requests (* of the streamed ones: the run sent "
        "no other).",
        "- TTFT: request sent to the first content token, streamed answers.",
        "- output tok/s: decode speed of one streamed answer (tokens after the first / time after the first), median.",
        "- prompt and completion tokens: per answer, from vLLM's usage; the prompt is where retrieval's passages go.",
        "- retrieve, generate: the gateway's own stage times (`Server-Timing`; for a stream, the timing in its last "
        "event).",
        "",
        "![latency percentiles, stage split and p95 against throughput](report.png)",
        "",
    ]
    if failures:
        lines += ["## Failures", "", "| run | request | error | occurrences |", "|---|---|---|---:|"]
        lines += [f"| {run} | {name} | {error.replace('|', '/')} | {count:,} |" for run, name, error, count in failures]
        lines.append("")
    return "\n".join(lines)


def read_failures(results_dir: Path) -> list[tuple[str, str, str, int]]:
    failures = []
    for path in sorted(results_dir.glob("users-*_failures.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                run = path.name.removesuffix("_failures.csv")
                failures.append((run, row["Name"], row["Error"], int(row["Occurrences"])))
    return failures


def _bars(ax: Axes, rows: list[RouteRow]) -> None:
    """Latency percentiles per route, grouped."""
    width = 0.8 / 3
    for i, percent in enumerate(("50%", "95%", "99%")):
        values = [(row.latency.p(percent) or 0) if row.latency else 0 for row in rows]
        ax.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=f"p{percent[:-1]}")
    ax.set_xticks(range(len(rows)), [row.route for row in rows])
    ax.set_ylabel("ms")
    ax.set_title(f"Latency per route, {rows[0].users} user(s)")
    ax.legend()


def _stages(ax: Axes, rows: list[RouteRow]) -> None:
    """The gateway's stage split per route: means, so the stack adds up to the mean total."""
    retrieve = [row.retrieve.average if row.retrieve else 0 for row in rows]
    generate = [row.generate.average if row.generate else 0 for row in rows]
    labels = [row.route for row in rows]
    ax.bar(labels, retrieve, label="retrieve")
    ax.bar(labels, generate, bottom=retrieve, label="generate")
    ax.set_ylabel("mean ms (gateway Server-Timing)")
    ax.set_title(f"Where the time goes, {rows[0].users} user(s)")
    ax.legend()


def _knee(ax: Axes, rows: list[RouteRow]) -> None:
    """p95 latency against throughput per route, one point per step."""
    for route in dict.fromkeys(row.route for row in rows):
        points: list[tuple[int, float, float]] = []
        for row in rows:
            p95 = row.latency.p("95%") if row.route == route and row.latency else None
            if p95 is not None:
                points.append((row.users, row.rps, p95))
        if not points:
            continue
        ax.plot([rps for _, rps, _ in points], [p95 for _, _, p95 in points], marker="o", label=route)
        for users, rps, p95 in points:
            ax.annotate(str(users), (rps, p95), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("requests/s")
    ax.set_ylabel("p95 latency, ms")
    ax.set_title("p95 latency against throughput (labels: users)")
    ax.legend()


def chart(rows: list[RouteRow], path: Path) -> None:
    first = [row for row in rows if row.users == rows[0].users]
    steps = len({row.users for row in rows})
    figure = Figure(figsize=(6 * (3 if steps > 1 else 2), 4.5), layout="constrained")
    axes = figure.subplots(1, 3 if steps > 1 else 2)
    _bars(axes[0], first)
    _stages(axes[1], first)
    if steps > 1:
        _knee(axes[2], rows)
    figure.savefig(path, dpi=100)


def unanswered_runs(results_dir: Path, rows: list[RouteRow]) -> list[str]:
    """Runs in which no answer completed before Locust stopped (a request cut off at the stop
    timeout is not recorded): the step is past what the path can serve, not missing."""
    answered = {(row.users, row.route.split(" (")[-1].rstrip(")")) for row in rows}  # "rag (mixed)" -> mixed
    runs = []
    for path in sorted(results_dir.glob("users-*_stats.csv")):
        if (match := STATS_FILE.fullmatch(path.name)) and match[2] and (int(match[1]), match[2]) not in answered:
            runs.append(f"users-{match[1]}-{match[2]}")
    return runs


def build_report(results_dir: Path) -> tuple[Path, Path]:
    """Writes results_dir/report.md and results_dir/report.png; returns their paths."""
    rows = route_rows(results_dir)
    if not rows:
        raise ValueError(f"no Locust results (users-<N>-<label>_stats.csv with answers) in {results_dir}")
    report, picture = results_dir / "report.md", results_dir / "report.png"
    text = markdown(results_dir, rows, read_failures(results_dir))
    if unanswered := unanswered_runs(results_dir, rows):
        text += (
            "\n## Runs with no completed answer\n\nNo request finished within the run's duration and stop "
            f"timeout, so these steps have no row: {', '.join(unanswered)}.\n"
        )
    report.write_text(text)
    chart(rows, picture)
    return report, picture


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m loadtests.report RESULTS_DIR")
    for written in build_report(Path(sys.argv[1])):
        print(written)
