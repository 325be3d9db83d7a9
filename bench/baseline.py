"""The baseline: the floor any orchestrated runner is compared with.

A plain asyncio + psycopg process with no orchestrator. It LISTENs for triggers and, for
each, does what a run must do at the least: read the task flow and the memories, insert the
execution row, send each prompt to the agent with httpx, append each result with the same
single SQL statement as `flows.execution_store` and mark the execution completed. Runs go
concurrently, at most `--concurrency` at once (the worker's default, 50).

The bench starts it as `python -m bench.baseline --database-url ... --agent-url ...` and
triggers runs with `pg_notify('bench_baseline', '{"flow_id": 1, "key": "..."}')`; a run's
execution carries the trigger's key as its `idempotency_key`, so the bench finds it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from flows.execution_store import STORE_PROMPT_RESULT

CHANNEL = "bench_baseline"
LISTENER_NAME = "bench-baseline-listener"

INSERT = """
    INSERT INTO flow_executions
        (flow_id, status, total_prompts, call_name, agent, prompts, trigger, idempotency_key)
    VALUES (%s, 'running', %s, %s, %s, %s, 'cli', %s)
    RETURNING id
"""
# The very statement of ExecutionStore.update_execution_progress: the result as a row of
# its own and the execution's index moved, in one statement.
APPEND = STORE_PROMPT_RESULT
COMPLETE = """
    UPDATE flow_executions
    SET status = %s, error = %s, completed_at = now(), updated_at = now()
    WHERE id = %s AND status IN ('queued', 'running')
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Runner:
    def __init__(self, pool: AsyncConnectionPool[Any], agent: httpx.AsyncClient, limit: int):
        self.pool = pool
        self.agent = agent
        self.slots = asyncio.Semaphore(limit)
        self.tasks: set[asyncio.Task[None]] = set()

    def trigger(self, payload: str) -> None:
        job = json.loads(payload)
        task = asyncio.get_running_loop().create_task(self.run(int(job["flow_id"]), job["key"]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, flow_id: int, key: str) -> None:
        async with self.slots:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT call_name, agent, prompts FROM task_flows WHERE id = %s", (flow_id,)
                )
                flow = await cursor.fetchone()
                cursor = await conn.execute("SELECT content FROM memories ORDER BY id")
                memories = [row["content"] for row in await cursor.fetchall()]
                if flow is None:
                    return
                prompts: list[str] = list(flow["prompts"])
                cursor = await conn.execute(
                    INSERT,
                    (flow_id, len(prompts), flow["call_name"], flow["agent"], Jsonb(prompts), key),
                )
                row = await cursor.fetchone()
                assert row is not None
                execution_id = row["id"]
            error = None
            for index, prompt in enumerate(prompts):
                result = await self.prompt(flow["agent"], index, prompt, memories)
                async with self.pool.connection() as conn:
                    next_index = index + 1 if result["success"] else index
                    await conn.execute(
                        APPEND,
                        {
                            "next": next_index,
                            "id": execution_id,
                            "index": index,
                            "success": bool(result["success"]),
                            "started_at": result.get("started_at"),
                            "result": Jsonb(result),
                        },
                    )
                if not result["success"]:
                    error = f"Prompt {index + 1} of {len(prompts)} failed: {result['error']}"
                    break
            async with self.pool.connection() as conn:
                status = "failed" if error else "completed"
                await conn.execute(COMPLETE, (status, error, execution_id))

    async def prompt(
        self, agent: str, index: int, prompt: str, memories: list[str]
    ) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if memories:
            notes = "\n".join(f"- {memory}" for memory in memories)
            messages.append({"role": "system", "content": f"Things to remember:\n{notes}"})
        messages.append({"role": "user", "content": prompt})
        started_at, clock = _now(), time.perf_counter()
        content, usage, error = None, None, None
        try:
            response = await self.agent.post(
                "/v1/chat/completions", json={"model": agent, "messages": messages}
            )
            response.raise_for_status()
            data = response.json()
            content = data["choices"][0]["message"]["content"]
            usage = data.get("usage")
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        return {
            "index": index,
            "prompt": prompt,
            "success": error is None,
            "response": content,
            "error": error,
            "started_at": started_at,
            "finished_at": _now(),
            "duration_ms": round((time.perf_counter() - clock) * 1000, 1),
            "attempts": 1,
            "usage": usage,
        }


async def serve(database_url: str, agent_url: str, concurrency: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url,
        min_size=2,
        max_size=10,  # the worker's default pool size (DB_POOL_MAX)
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )
    await pool.open(wait=True, timeout=30)
    agent = httpx.AsyncClient(
        base_url=agent_url,
        timeout=httpx.Timeout(180.0, connect=10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        trust_env=False,
    )
    runner = Runner(pool, agent, concurrency)
    listener = await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, application_name=LISTENER_NAME
    )

    async def listen() -> None:
        await listener.execute(f"LISTEN {CHANNEL}")
        async for notify in listener.notifies():
            runner.trigger(notify.payload)

    listening = asyncio.create_task(listen())
    try:
        await stop.wait()
    finally:
        listening.cancel()
        with suppress(asyncio.CancelledError, psycopg.Error):
            await listening
        for task in list(runner.tasks):
            task.cancel()
        await asyncio.gather(*runner.tasks, return_exceptions=True)
        await listener.close()
        await agent.aclose()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--agent-url", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(serve(args.database_url, args.agent_url, args.concurrency))


if __name__ == "__main__":
    main()
