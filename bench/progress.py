"""Progress visibility: the agent answers a prompt -> the change is readable through the API.

A run of prompts that each take 200 ms; a tight loop polls `GET /api/executions/{id}` and
notes when each prompt's result first shows. Latency = that response's arrival - the moment
the fake agent sent the answer (an upper bound: it includes one poll round trip). When the
API has `GET /api/executions/stream` (SSE), its events are timed as well.

Baseline: the baseline runner's executions, read through the same API (the floor of
"commit, then read it back over HTTP").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from typing import Any

import httpx

from bench.baseline_client import Baseline, new_keys, trigger
from bench.stats import Row, median, ms, percentile, spread
from bench.system import FINAL, System, api_client, connect, create_flow, post_run, settle
from cli.sse import aevents

TARGET_P95 = 0.050
_NUMBER = re.compile(r"#(\d+)#")


async def _poll(client: httpx.AsyncClient, execution_id: int, timeout: float) -> dict[int, float]:
    """Poll until the execution ends; return prompt index -> when its result was first seen."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.get(f"/api/executions/{execution_id}")
        arrived = time.time()
        if response.status_code == 200:
            body = response.json()
            for result in body.get("prompt_results") or []:
                seen.setdefault(int(result["index"]), arrived)
            if body.get("status") in FINAL:
                break
    return seen


def _answers(system: System, tag: str) -> dict[int, float]:
    """Prompt index -> when the agent sent its answer."""
    answers: dict[int, float] = {}
    for exchange in system.agent.log.matching(tag):
        match = _NUMBER.search(exchange.prompt)
        if match and exchange.answered_at:
            answers[int(match.group(1)) - 1] = exchange.answered_at
    return answers


def _latencies(seen: dict[int, float], answers: dict[int, float]) -> list[float]:
    return [seen[i] - answers[i] for i in seen if i in answers]


async def _stream_available(client: httpx.AsyncClient) -> bool:
    try:
        async with asyncio.timeout(3):
            async with client.stream("GET", "/api/executions/stream") as response:
                kind = response.headers.get("content-type", "")
                return response.status_code == 200 and kind.startswith("text/event-stream")
    except (TimeoutError, httpx.HTTPError):
        return False


def _progress_of(data: Any, execution_id: int) -> int | None:
    """The current_prompt_index an SSE event reports for the execution, if it names it."""
    candidates = [data]
    if isinstance(data, dict):
        candidates += [v for v in data.values() if isinstance(v, dict | list)]
    for item in candidates:
        items = item if isinstance(item, list) else [item]
        for entry in items:
            if isinstance(entry, dict) and entry.get("id") == execution_id:
                index = entry.get("current_prompt_index")
                if isinstance(index, int):
                    return index
    return None


async def _listen(client: httpx.AsyncClient, events: list[tuple[float, Any]]) -> None:
    async with client.stream("GET", "/api/executions/stream") as response:
        async for event in aevents(response.aiter_lines()):
            with contextlib.suppress(ValueError):
                events.append((event.received_at, event.json()))


def _sse_latencies(
    events: list[tuple[float, Any]], execution_id: int, answers: dict[int, float]
) -> list[float]:
    seen: dict[int, float] = {}
    for arrived, data in events:
        index = _progress_of(data, execution_id)
        if index is not None:
            for done in range(index):  # prompts 0..index-1 are complete
                seen.setdefault(done, arrived)
    return _latencies(seen, answers)


async def _one(
    system: System, client: httpx.AsyncClient, execution_id: int, tag: str, timeout: float
) -> list[float]:
    seen = await _poll(client, execution_id, timeout)
    return _latencies(seen, _answers(system, tag))


async def _baseline_execution(system: System, flow_id: int) -> int:
    conn = await connect(system)
    try:
        (key,) = new_keys(1, "progress")
        await trigger(conn, flow_id, [key])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cursor = await conn.execute(
                "SELECT id FROM flow_executions WHERE idempotency_key = %s", (key,)
            )
            row = await cursor.fetchone()
            if row is not None:
                return int(row["id"])
            await asyncio.sleep(0.005)
        raise RuntimeError("the baseline did not start its progress run")
    finally:
        await conn.close()


async def measure(system: System, baseline: Baseline, *, prompts: int, repeat: int) -> list[Row]:
    del baseline
    tag = f"prog-{uuid.uuid4().hex[:8]}"
    timeout = 30 + prompts * 1.0
    p95s, base_p95s, sse_p95s = [], [], []
    samples = 0
    async with api_client(system) as client:
        flow_id = await create_flow(
            client, "progress", [f"bench {tag} #{k + 1}# [delay=0.2]" for k in range(prompts)]
        )
        has_stream = await _stream_available(client)
        for _ in range(repeat):
            system.agent.log.clear()
            events: list[tuple[float, Any]] = []
            listener = asyncio.create_task(_listen(client, events)) if has_stream else None
            try:
                launched = await post_run(client, flow_id)
                ours = await _one(system, client, launched.execution_id, tag, timeout)
            finally:
                if listener is not None:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                        await listener
            answers = _answers(system, tag)
            p95s.append(percentile(ours, 95))
            samples += len(ours)
            if has_stream:
                sse_p95s.append(
                    percentile(_sse_latencies(events, launched.execution_id, answers), 95)
                )
            system.agent.log.clear()
            await settle(timeout=10)
            execution_id = await _baseline_execution(system, flow_id)
            base = await _one(system, client, execution_id, tag, timeout)
            base_p95s.append(percentile(base, 95))
    value = median(p95s)
    rows = [
        Row(
            "progress visible via API (poll GET /executions/{id}), p95",
            "<= 50 ms",
            ms(value, 1),
            ms(median(base_p95s), 1),
            value <= TARGET_P95,
            f"{samples} prompts; {spread([v * 1000 for v in p95s], ' ms', 1)}".rstrip("; "),
        )
    ]
    if has_stream:
        sse = median(sse_p95s)
        rows.append(
            Row(
                "progress visible via SSE /executions/stream, p95",
                "<= 50 ms",
                ms(sse, 1),
                "-",
                sse <= TARGET_P95 if sse == sse else None,
                "event arrival - agent answer",
            )
        )
    else:
        rows.append(Row("progress via SSE", "-", "n/a", "-", None, "no /api/executions/stream yet"))
    return rows
