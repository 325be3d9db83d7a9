"""Launch: from `POST /api/task_flows/{id}/run` to the agent receiving the run's first prompt.

Sequential 1-prompt runs (a few warm-up runs first); p50 and p95 per repeat, the median
over repeats in the table. For each run the Prefect flow run's state timestamps
(Scheduled -> Running: the worker claims an API-started run in its execution row, with no
Pending state) and the execution's `started_at` split the path into: the API, the wake-up
with the claim and the engine start-up, and the flow body up to the first request.

Baseline: a NOTIFY to the baseline runner -> the agent receiving its first prompt.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench import trace
from bench.baseline_client import Baseline, new_keys, trigger
from bench.stats import Row, cpu_per_run, median, ms, percentile, spread
from bench.system import (
    FINAL,
    CpuMeter,
    Launched,
    System,
    api_client,
    connect,
    create_flow,
    first_agent_request,
    post_run,
    settle,
    wait_final,
)
from bench.system import (
    progress as say,
)

TARGET_P50, TARGET_P95 = 0.100, 0.250
PREFECT_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


@dataclass
class LaunchSample:
    launched: Launched
    first_request_at: float
    states: dict[str, float] = field(default_factory=dict)  # Prefect state type -> time
    flow_run_created: float = float("nan")
    body_started_at: float = float("nan")  # the execution's started_at (mark_running)

    @property
    def latency(self) -> float:
        return self.first_request_at - self.launched.posted_at


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else float("nan")


async def _wait_prefect_final(prefect: httpx.AsyncClient, flow_run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = (await prefect.get(f"/flow_runs/{flow_run_id}")).json()
        if (flow_run.get("state") or {}).get("type") in PREFECT_FINAL:
            return
        await asyncio.sleep(0.1)  # light: these reads count in the server's CPU per run


async def _one_run(
    system: System, client: httpx.AsyncClient, prefect: httpx.AsyncClient, flow_id: int, tag: str
) -> LaunchSample:
    conn = await connect(system)
    try:
        launched = await post_run(client, flow_id)
        first = await first_agent_request(system, tag, launched.posted_at)
        rows = await wait_final(conn, [launched.execution_id], timeout=30)
        row = rows.get(launched.execution_id)
        if row is None or row["status"] not in FINAL:
            raise RuntimeError(f"launch run {launched.execution_id} did not end: {row}")
        if launched.flow_run_id:
            await _wait_prefect_final(prefect, launched.flow_run_id, timeout=10)
        sample = LaunchSample(launched, first)
        sample.body_started_at = row["started_at"].timestamp()
        return sample
    finally:
        await conn.close()


async def _add_prefect_timestamps(prefect: httpx.AsyncClient, sample: LaunchSample) -> None:
    flow_run_id = sample.launched.flow_run_id
    if not flow_run_id:
        return
    flow_run = (await prefect.get(f"/flow_runs/{flow_run_id}")).json()
    sample.flow_run_created = _ts(flow_run.get("created"))
    states: list[dict[str, Any]] = (
        await prefect.get("/flow_run_states/", params={"flow_run_id": flow_run_id})
    ).json()
    for state in states:
        sample.states.setdefault(state["type"], _ts(state.get("timestamp")))


async def _baseline_run(system: System, baseline: Baseline, flow_id: int, tag: str) -> float:
    conn = await connect(system)
    try:
        (key,) = new_keys(1, "launch")
        sent_at = await trigger(conn, flow_id, [key])
        first = await first_agent_request(system, tag, sent_at)
        rows = await wait_final(conn, [key], timeout=30, column="idempotency_key")
        if key not in rows or rows[key]["status"] not in FINAL:
            raise RuntimeError(f"baseline launch run {key} did not end")
        return first - sent_at
    finally:
        await conn.close()


async def measure(
    system: System,
    baseline: Baseline,
    *,
    runs: int,
    repeat: int,
    warmup: int,
    trace_dir: Path | None = None,
) -> list[Row]:
    tag = f"launch-{uuid.uuid4().hex[:8]}"
    async with (
        api_client(system) as client,
        httpx.AsyncClient(base_url=system.prefect_api_url, timeout=30, trust_env=False) as prefect,
    ):
        flow_id = await create_flow(client, "launch", [f"bench {tag}: say hi"])
        for _ in range(warmup):
            await _one_run(system, client, prefect, flow_id, tag)
            await _baseline_run(system, baseline, flow_id, tag)
        samples: list[LaunchSample] = []
        p50s, p95s, base_p50s, base_p95s = [], [], [], []
        cpu_ours: list[dict[str, float]] = []
        cpu_base: list[dict[str, float]] = []
        for _ in range(repeat):
            batch: list[LaunchSample] = []
            meter = CpuMeter(system).start()
            for _ in range(runs):
                batch.append(await _one_run(system, client, prefect, flow_id, tag))
                await asyncio.sleep(0.05)
            cpu_ours.append(meter.measure()[0])
            await settle(timeout=10)
            meter = CpuMeter(system).start()
            base: list[float] = []
            for _ in range(runs):
                base.append(await _baseline_run(system, baseline, flow_id, tag))
                await asyncio.sleep(0.05)
            cpu_base.append(meter.measure()[0])
            latencies = [s.latency for s in batch]
            p50s.append(percentile(latencies, 50))
            p95s.append(percentile(latencies, 95))
            base_p50s.append(percentile(base, 50))
            base_p95s.append(percentile(base, 95))
            samples.extend(batch)
        for sample in samples:
            await _add_prefect_timestamps(prefect, sample)
    if trace_dir is not None:
        _write_trace(samples, trace_dir)

    p50, p95 = median(p50s), median(p95s)
    n = f"{runs} runs" + (f" x {repeat} repeats, median" if repeat > 1 else "")
    rows = [
        Row(
            "launch p50 (POST run -> first agent request)",
            "<= 100 ms",
            ms(p50),
            ms(median(base_p50s)),
            p50 <= TARGET_P50,
            f"{n}; {spread([v * 1000 for v in p50s], ' ms')}".rstrip("; "),
        ),
        Row(
            "launch p95",
            "<= 250 ms",
            ms(p95),
            ms(median(base_p95s)),
            p95 <= TARGET_P95,
            spread([v * 1000 for v in p95s], " ms"),
        ),
    ]
    rows.extend(_breakdown(samples))
    rows.append(
        Row(
            "  launch: CPU per 1-prompt run",
            "-",
            _cpu_per_run(cpu_ours, runs),
            _cpu_per_run(cpu_base, runs),
            None,
            "median over repeats; bench+agent excluded",
        )
    )
    return rows


def _cpu_per_run(batches: list[dict[str, float]], runs: int) -> str:
    names = {name for batch in batches for name in batch}
    medians = {name: median([batch.get(name, float("nan")) for batch in batches]) for name in names}
    return cpu_per_run(medians, runs)


def _write_trace(samples: list[LaunchSample], trace_dir: Path) -> None:
    windows = [
        trace.Window(
            s.launched.posted_at,
            s.first_request_at,
            samples[i + 1].launched.posted_at if i + 1 < len(samples) else s.first_request_at + 2,
        )
        for i, s in enumerate(samples)
    ]
    text = trace.report(trace.load(trace_dir), windows)
    out = trace_dir / "launch-trace.md"
    out.write_text(text)
    say(f"launch trace written to {out}")


def _breakdown(samples: list[LaunchSample]) -> list[Row]:
    """Median of each segment of the launch path, over every measured run."""

    def seg(start: str, end: str) -> float:
        values = []
        for s in samples:
            points = {
                "post": s.launched.posted_at,
                "response": s.launched.answered_at,
                "created": s.flow_run_created,
                "scheduled": s.states.get("SCHEDULED", float("nan")),
                "running": s.states.get("RUNNING", float("nan")),
                "body": s.body_started_at,
                "agent": s.first_request_at,
            }
            value = points[end] - points[start]
            if value == value:  # not NaN
                values.append(value)
        return median(values)

    segments = [
        ("post", "response", "POST answered (API: row, flow run, NOTIFY)"),
        ("post", "created", "POST -> Prefect flow run created"),
        ("created", "running", "flow run created -> Running (wake-up, claim, engine start-up)"),
        ("running", "body", "Running -> flow body marks execution running"),
        ("body", "agent", "flow body -> first agent request (task run, HTTP)"),
    ]
    return [
        Row(f"  launch split: {label}", "-", ms(seg(a, b), 1), "-", None, "median over all runs")
        for a, b, label in segments
    ]
