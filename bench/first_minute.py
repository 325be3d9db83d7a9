"""The first minute: how fast runs start right after the system starts, and the first run of
a task flow created a moment before, next to warm runs on a quiet system.

Measured from the moment the API is healthy (what `make up` waits for before its banner):
- the first run after start-up, and every run of the first minute (one every 2 s);
- the first run of a brand-new task flow (created, then run at once), against that task
  flow's warm runs;
- the quiet reference: warm runs once the machine settled after the minute.
Each latency is POST run -> the agent receiving the run's first prompt.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from bench.stats import Row, median, ms, percentile
from bench.system import (
    FINAL,
    CpuMeter,
    System,
    api_client,
    connect,
    create_flow,
    first_agent_request,
    post_run,
    settle,
    wait_final,
)
from bench.system import progress as say

MINUTE_S = 60.0
EVERY_S = 2.0
# The targets: the first minute within 1.5x of the quiet launch, the first run of a
# new task flow within 2x of a warm one.
FIRST_MINUTE_FACTOR, NEW_FLOW_FACTOR = 1.5, 2.0


async def _latency(system: System, client: httpx.AsyncClient, flow_id: int, tag: str) -> float:
    """One run: POST -> first agent request; waits for the run to end before returning."""
    launched = await post_run(client, flow_id)
    first = await first_agent_request(system, tag, launched.posted_at, timeout=60.0)
    conn = await connect(system)
    try:
        rows = await wait_final(conn, [launched.execution_id], timeout=60)
    finally:
        await conn.close()
    row = rows.get(launched.execution_id)
    if row is None or row["status"] not in FINAL:
        raise RuntimeError(f"run {launched.execution_id} did not end: {row}")
    return first - launched.posted_at


async def _new_flow(client: httpx.AsyncClient, name: str) -> tuple[int, str]:
    tag = f"{name}-{uuid.uuid4().hex[:8]}"
    return await create_flow(client, name, [f"bench {tag}: say hi"]), tag


async def measure(system: System, *, started_at: float, warm_runs: int = 10) -> list[Row]:
    """`started_at`: time.monotonic() when the system answered healthy."""
    meter = CpuMeter(system).start()
    async with api_client(system) as client:
        flow_id, tag = await _new_flow(client, "first-minute")
        first_after_start = await _latency(system, client, flow_id, tag)
        say(f"first run after start-up: {first_after_start * 1000:.0f} ms")
        minute: list[float] = [first_after_start]
        while time.monotonic() - started_at < MINUTE_S:
            began = time.monotonic()
            minute.append(await _latency(system, client, flow_id, tag))
            await asyncio.sleep(max(0.0, EVERY_S - (time.monotonic() - began)))
        busy_minute = meter.stop()  # what kept the machine busy meanwhile

        quiet = await settle(timeout=60)
        new_id, new_tag = await _new_flow(client, "new-flow")
        new_first = await _latency(system, client, new_id, new_tag)
        new_warm = [await _latency(system, client, new_id, new_tag) for _ in range(warm_runs)]
        reference = [await _latency(system, client, flow_id, tag) for _ in range(warm_runs)]

    quiet_p50 = median(reference)
    minute_p50, minute_max = median(minute), max(minute)
    warm_p50 = median(new_warm)
    note = "" if quiet else "; the machine stayed busy with other work"
    return [
        Row(
            "first run after start-up (POST -> first agent request)",
            f"<= {FIRST_MINUTE_FACTOR}x quiet",
            ms(first_after_start),
            ms(quiet_p50),
            first_after_start <= FIRST_MINUTE_FACTOR * quiet_p50,
            f"baseline column: quiet warm p50 of the same flow, {warm_runs} runs{note}",
        ),
        Row(
            "runs in the first minute after start-up, p50",
            f"<= {FIRST_MINUTE_FACTOR}x quiet",
            ms(minute_p50),
            ms(quiet_p50),
            minute_p50 <= FIRST_MINUTE_FACTOR * quiet_p50,
            f"{len(minute)} runs, one every {EVERY_S:g} s; p95 {ms(percentile(minute, 95))}, "
            f"max {ms(minute_max)}; {busy_minute}",
        ),
        Row(
            "first run of a task flow created a moment before",
            f"<= {NEW_FLOW_FACTOR}x warm",
            ms(new_first),
            ms(warm_p50),
            new_first <= NEW_FLOW_FACTOR * warm_p50,
            f"baseline column: that flow's warm p50, {warm_runs} runs",
        ),
    ]
