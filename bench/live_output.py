"""Live agent output (issue 7): how soon streamed text reaches an SSE client, and what
streaming costs the database.

- first token -> visible: the fake agent streams each answer in chunks; the figure is the
  arrival of the first `partial` event for a prompt at an SSE client
  (`/api/executions/stream?partials=true`) minus the moment the agent sent that prompt's
  first chunk of text. p95 over the prompts of a few runs.
- extra database writes per prompt: writes to the run's `flow_executions` row (counted by a
  trigger the bench adds for the measurement; lease renewals, which depend on time, not on
  streaming, are left out) by a streamed run minus those of the same run with streaming
  refused by the agent, per prompt. Partial text travels by NOTIFY only, so the target is 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx

from bench.stats import Row, ms, percentile
from bench.system import FINAL, System, api_client, connect, create_flow, post_run, wait_final
from cli.sse import aevents

TARGET_P95 = 0.150
WORDS = " ".join(f"word{n}" for n in range(30))


async def _listen(client: httpx.AsyncClient, partials: list[tuple[float, dict[str, Any]]]) -> None:
    async with client.stream(
        "GET", "/api/executions/stream", params={"partials": "true"}
    ) as response:
        async for event in aevents(response.aiter_lines()):
            if event.event == "partial":
                with contextlib.suppress(ValueError):
                    partials.append((event.received_at, event.json()))


_COUNTER = """
CREATE TABLE IF NOT EXISTS bench_row_writes (execution_id bigint, op text);
CREATE OR REPLACE FUNCTION bench_count_write() RETURNS trigger AS $$
BEGIN
    INSERT INTO bench_row_writes VALUES (NEW.id, TG_OP);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_count_insert ON flow_executions;
CREATE TRIGGER bench_count_insert AFTER INSERT ON flow_executions
    FOR EACH ROW EXECUTE FUNCTION bench_count_write();
DROP TRIGGER IF EXISTS bench_count_update ON flow_executions;
CREATE TRIGGER bench_count_update AFTER UPDATE ON flow_executions
    FOR EACH ROW WHEN (NEW.updated_at IS DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION bench_count_write();
"""
_UNCOUNTER = """
DROP TRIGGER IF EXISTS bench_count_insert ON flow_executions;
DROP TRIGGER IF EXISTS bench_count_update ON flow_executions;
DROP FUNCTION IF EXISTS bench_count_write();
DROP TABLE IF EXISTS bench_row_writes;
"""


async def _writes_to(system: System, execution_id: int) -> int:
    conn = await connect(system)
    try:
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM bench_row_writes WHERE execution_id = %s", (execution_id,)
        )
        row = await cursor.fetchone()
        return int(row["n"]) if row else 0
    finally:
        await conn.close()


async def _sql(system: System, script: str) -> None:
    conn = await connect(system)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def _run_and_wait(system: System, client: httpx.AsyncClient, flow_id: int) -> int:
    launched = await post_run(client, flow_id)
    conn = await connect(system)
    try:
        rows = await wait_final(conn, [launched.execution_id], timeout=120)
    finally:
        await conn.close()
    status = rows[launched.execution_id]["status"] if rows else "unknown"
    if status not in FINAL or status != "completed":
        raise RuntimeError(f"the live-output run ended {status}")
    return launched.execution_id


async def measure(system: System, *, runs: int, prompts: int) -> list[Row]:
    tag = f"live-{uuid.uuid4().hex[:8]}"
    latencies: list[float] = []
    async with api_client(system) as client:
        texts = [f"[chunkdelay=0.05] bench {tag} #{k + 1}# {WORDS}" for k in range(prompts)]
        flow_id = await create_flow(client, "live-output", texts)
        partials: list[tuple[float, dict[str, Any]]] = []
        listener = asyncio.create_task(_listen(client, partials))
        await asyncio.sleep(0.5)
        try:
            for _ in range(runs):
                system.agent.demo.requests.clear()
                execution_id = await _run_and_wait(system, client, flow_id)
                first_chunk = {
                    n: r.first_chunk_at
                    for n, r in enumerate(system.agent.demo.requests)
                    if tag in r.prompt and r.stream and r.first_chunk_at
                }
                seen: dict[int, float] = {}
                for arrived, partial in partials:
                    if partial.get("id") == execution_id:
                        seen.setdefault(int(partial["index"]), arrived)
                latencies += [seen[i] - first_chunk[i] for i in seen if i in first_chunk]
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await listener

        await _sql(system, _COUNTER)
        try:
            streamed = await _writes_to(system, await _run_and_wait(system, client, flow_id))
            # Refused streaming: the worker falls back to plain requests for this agent (and
            # remembers it per agent name: a name of its own leaves the other figures alone).
            system.agent.demo.behaviour.streaming = False
            plain_flow = await create_flow(client, "live-plain", texts, agent=f"plain-{tag}")
            plain = await _writes_to(system, await _run_and_wait(system, client, plain_flow))
        finally:
            system.agent.demo.behaviour.streaming = True
            await _sql(system, _UNCOUNTER)
    p95 = percentile(latencies, 95) if latencies else float("nan")
    extra = (streamed - plain) / prompts
    return [
        Row(
            "live output: agent's first token -> first partial at an SSE client, p95",
            "<= 150 ms",
            ms(p95, 1),
            "-",
            p95 <= TARGET_P95 if latencies else None,
            f"{len(latencies)} prompts streamed in chunks; partials throttled to ~100 ms",
        ),
        Row(
            "live output: extra database writes per prompt from streaming",
            "0",
            f"{extra:g}",
            "-",
            extra <= 0,
            f"writes to the execution's row: streamed run {streamed}, plain run {plain} "
            f"({prompts} prompts each)",
        ),
    ]
