"""`--trace`: where the launch path spends its time, from the HTTP requests and SQL
statements the API and the worker log (bench/trace_hook/sitecustomize.py).

For every measured launch it takes the calls made between the POST and the first agent
request (the launch path) and between the POST and the next launch (the whole 1-prompt
run), groups them by call (ids replaced by `{id}`), and writes the median run's timeline.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

_HOST = re.compile(r"\b127\.0\.0\.1:\d+")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b\d+\b")


@dataclass(frozen=True)
class Event:
    proc: str
    thread: str
    kind: str
    start: float
    end: float
    what: str

    @property
    def key(self) -> str:
        what = _ID.sub("{id}", _HOST.sub("", self.what))
        return f"{self.proc} {self.kind} {what}"


@dataclass(frozen=True)
class Window:
    posted_at: float
    first_request_at: float
    until: float  # the end of the whole run's window (the next launch's POST)


def load(directory: Path) -> list[Event]:
    events: list[Event] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                events.append(Event(**json.loads(line)))
            except (ValueError, TypeError):
                continue
    return sorted(events, key=lambda e: e.start)


def _within(events: list[Event], start: float, end: float) -> list[Event]:
    return [e for e in events if start <= e.start < end]


def report(events: list[Event], windows: list[Window]) -> str:
    if not windows or not events:
        return "no trace events (was the trace hook loaded?)\n"
    launch_calls: list[list[Event]] = []
    run_calls: list[list[Event]] = []
    for w in windows:
        launch_calls.append(
            [e for e in _within(events, w.posted_at, w.first_request_at) if "/v1/" not in e.what]
        )
        run_calls.append(_within(events, w.posted_at, w.until))
    lines = [f"# Launch trace over {len(windows)} runs", ""]
    lines += _summary("Launch path (POST -> first agent request)", launch_calls)
    lines += _summary("Whole 1-prompt run (POST -> next POST)", run_calls)
    latencies = [w.first_request_at - w.posted_at for w in windows]
    middle = sorted(range(len(windows)), key=lambda i: latencies[i])[len(windows) // 2]
    w = windows[middle]
    lines += [
        f"## Timeline of the median launch ({latencies[middle] * 1000:.0f} ms), ms from the POST",
        "",
        "| start | end | dur | process/thread | call |",
        "|---:|---:|---:|---|---|",
    ]
    for e in _within(events, w.posted_at, w.first_request_at + 0.005):
        lines.append(
            f"| {(e.start - w.posted_at) * 1000:.1f} | {(e.end - w.posted_at) * 1000:.1f} "
            f"| {(e.end - e.start) * 1000:.1f} | {e.proc}/{e.thread} | {e.kind} {e.what} |"
        )
    lines.append(f"| {latencies[middle] * 1000:.1f} | | | agent | first request arrives |")
    return "\n".join(lines) + "\n"


def _summary(title: str, per_run: list[list[Event]]) -> list[str]:
    counters = [Counter(e.key for e in calls) for calls in per_run]
    durations: dict[str, list[float]] = defaultdict(list)
    for calls in per_run:
        for e in calls:
            durations[e.key].append(e.end - e.start)
    totals = [len(c) for c in per_run]
    prefect = [sum(1 for e in c if e.kind == "http" and "/api/" in e.what) for c in per_run]
    sql = [sum(1 for e in c if e.kind == "sql") for c in per_run]
    blocked = [sum(e.end - e.start for e in c if e.kind == "loop") * 1000 for c in per_run]
    lines = [
        f"## {title}",
        "",
        f"median per run: {statistics.median(totals):.0f} calls, "
        f"{statistics.median(prefect):.0f} Prefect API requests, "
        f"{statistics.median(sql):.0f} SQL statements, "
        f"worker event loop blocked {statistics.median(blocked):.0f} ms",
        "",
        "| call | per run (median) | median ms | total ms per run |",
        "|---|---:|---:|---:|",
    ]
    rows = []
    for key, spent in durations.items():
        count = statistics.median([counter.get(key, 0) for counter in counters])
        median_ms = statistics.median(spent) * 1000
        rows.append((count * median_ms, key, count, median_ms))
    for total, key, count, ms in sorted(rows, reverse=True):
        if count:
            lines.append(f"| {key} | {count:g} | {ms:.1f} | {total:.1f} |")
    lines.append("")
    return lines
