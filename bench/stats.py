"""Small statistics and the result table every figure group fills."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def spread(values: Sequence[float], unit: str = "", digits: int = 0) -> str:
    """`min-max` of repeated measurements, for the notes column."""
    clean = [v for v in values if not math.isnan(v)]
    if len(clean) < 2:
        return ""
    return f"{min(clean):.{digits}f}-{max(clean):.{digits}f}{unit} over {len(clean)} repeats"


def ms(seconds: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def fmt(value: float, unit: str = "", digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def cpu_per_run(spent: dict[str, float], runs: int) -> str:
    """`prefect+worker 180 ms (prefect-server 140, worker 40); api 8 ms` per run: the
    orchestration's CPU per run first (every Prefect process and the worker), then the rest
    of the system's processes (the bench and its fake agent excluded)."""
    if runs <= 0:
        return "n/a"
    if "baseline" in spent and spent.get("baseline", 0) >= max(spent.values()) * 0.5:
        # The baseline's own figure: the rest is other processes digesting earlier load.
        return f"baseline {spent['baseline'] / runs * 1000:.0f} ms"
    spent = {n: v for n, v in spent.items() if n != "baseline"}
    orchestration = {n: v for n, v in spent.items() if n.startswith("prefect") or n == "worker"}
    others = {
        n: v for n, v in spent.items() if n not in orchestration and n != "bench+agent" and v > 0
    }
    parts = []
    if orchestration:
        detail = ", ".join(f"{n} {v / runs * 1000:.0f}" for n, v in sorted(orchestration.items()))
        total = sum(orchestration.values()) / runs
        parts.append(f"prefect+worker {total * 1000:.0f} ms ({detail})")
    parts += [f"{n} {v / runs * 1000:.0f} ms" for n, v in sorted(others.items())]
    return "; ".join(parts) or "n/a"


@dataclass
class Row:
    """One line of the table: a figure, its target, ours, the baseline's, and a verdict."""

    figure: str
    target: str
    ours: str
    baseline: str = "-"
    met: bool | None = None  # None: no target, or not measurable
    note: str = ""


def verdict(met: bool | None) -> str:
    return {True: "yes", False: "**NO**", None: "-"}[met]


def render(rows: Sequence[Row]) -> str:
    """A Markdown table (also readable as plain text)."""
    header = ("figure", "target", "taskflows", "baseline", "met", "notes")
    cells = [header] + [
        (r.figure, r.target, r.ours, r.baseline, verdict(r.met), r.note) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
