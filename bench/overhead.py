"""Overhead per prompt: (run time - agent time) / prompts, for a 20-prompt run with short
answers and a 200-prompt run with 50 KB answers. It must stay flat as the results grow:
each result is a row of its own (`execution_results`), written with the execution's progress
in one statement, for taskflows and the baseline alike.

Run time is the execution's `started_at` -> `completed_at` (the flow body, launch excluded:
that is the launch figure). Agent time is measured at the fake agent (request arrival to
answer sent), so everything else (task runs, HTTP client, JSON, the SQL append) counts as
overhead, for taskflows and for the baseline alike. Flatness: the median gap between one
answer and the next request, over the first and over the last 20 prompts of the long run.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass

from bench.baseline_client import Baseline, new_keys, trigger
from bench.stats import Row, median, ms, spread
from bench.system import (
    FINAL,
    System,
    api_client,
    connect,
    create_flow,
    post_run,
    settle,
    wait_final,
)

TARGET = 0.005  # issue 15: <= 5 ms per prompt at 20 prompts


@dataclass
class RunCost:
    per_prompt: float  # seconds of overhead per prompt
    first_gaps: float  # median answer -> next request gap, first 20 prompts
    last_gaps: float  # the same, last 20 prompts


def _cost(system: System, tag: str, total: float, prompts: int) -> RunCost:
    exchanges = sorted(system.agent.log.matching(tag), key=lambda e: e.received_at)
    agent_time = sum(e.agent_time for e in exchanges)
    gaps = [b.received_at - a.answered_at for a, b in itertools.pairwise(exchanges)]
    return RunCost((total - agent_time) / prompts, median(gaps[:20]), median(gaps[-20:]))


async def _ours(system: System, flow_id: int, tag: str, prompts: int, timeout: float) -> RunCost:
    system.agent.log.clear()
    async with api_client(system) as client:
        launched = await post_run(client, flow_id)
    conn = await connect(system)
    try:
        rows = await wait_final(conn, [launched.execution_id], timeout=timeout, interval=0.1)
    finally:
        await conn.close()
    row = rows.get(launched.execution_id)
    if row is None or row["status"] != "completed":
        raise RuntimeError(f"overhead run {launched.execution_id} did not complete: {row}")
    total = (row["completed_at"] - row["started_at"]).total_seconds()
    return _cost(system, tag, total, prompts)


async def _baseline(
    system: System, flow_id: int, tag: str, prompts: int, timeout: float
) -> RunCost:
    system.agent.log.clear()
    conn = await connect(system)
    try:
        (key,) = new_keys(1, "overhead")
        await trigger(conn, flow_id, [key])
        rows = await wait_final(
            conn, [key], timeout=timeout, interval=0.1, column="idempotency_key"
        )
    finally:
        await conn.close()
    row = rows.get(key)
    if row is None or row["status"] not in FINAL:
        raise RuntimeError(f"baseline overhead run {key} did not end: {row}")
    total = (row["completed_at"] - row["started_at"]).total_seconds()
    return _cost(system, tag, total, prompts)


async def _figure(
    system: System, label: str, prompts: int, suffix: str, repeat: int, timeout: float
) -> tuple[list[RunCost], list[RunCost]]:
    tag = f"ovh-{uuid.uuid4().hex[:8]}"
    async with api_client(system) as client:
        flow_id = await create_flow(
            client, label, [f"bench {tag} prompt {k + 1}{suffix}" for k in range(prompts)]
        )
    ours, base = [], []
    for _ in range(repeat):
        ours.append(await _ours(system, flow_id, tag, prompts, timeout))
        await settle(timeout=10)
        base.append(await _baseline(system, flow_id, tag, prompts, timeout))
    return ours, base


async def measure(
    system: System, baseline: Baseline, *, short: int, long: int, repeat: int
) -> list[Row]:
    del baseline  # triggered through its channel
    rows: list[Row] = []
    ours, base = await _figure(system, "short", short, "", repeat, timeout=120)
    value = median([c.per_prompt for c in ours])
    rows.append(
        Row(
            f"overhead per prompt, {short} prompts, short answers",
            "<= 5 ms",
            ms(value, 1),
            ms(median([c.per_prompt for c in base]), 1),
            value <= TARGET,
            spread([c.per_prompt * 1000 for c in ours], " ms", 1),
        )
    )
    ours, base = await _figure(system, "long", long, " [size=50000]", 1, timeout=900)
    value = ours[0].per_prompt
    first, last = ours[0].first_gaps, ours[0].last_gaps
    # Flat: the gap between prompts must not grow with the results already stored.
    flat = last <= max(first * 1.5, first + 0.003)
    rows.append(
        Row(
            f"overhead per prompt, {long} prompts x 50 KB answers",
            "flat (last 20 gaps <= 1.5x the first 20)",
            ms(value, 1),
            ms(base[0].per_prompt, 1),
            flat,
            f"gap answer->next request: first 20 {ms(first, 1)}, last 20 {ms(last, 1)}"
            f" (baseline {ms(base[0].first_gaps, 1)} / {ms(base[0].last_gaps, 1)})",
        )
    )
    return rows
