"""Start the baseline runner (bench/baseline.py) as a subprocess and trigger its runs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from bench.baseline import CHANNEL, LISTENER_NAME
from bench.system import Row, System
from flows.errors import ChildFailed
from flows.settings import PROJECT_ROOT
from stack.supervisor import Child


@dataclass
class Baseline:
    child: Child

    @property
    def pid(self) -> int:
        assert self.child.pid is not None
        return self.child.pid


async def start_baseline(system: System, conn: psycopg.AsyncConnection[Row]) -> Baseline:
    child = system.supervisor.start(
        "baseline",
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--database-url",
            system.database_url,
            "--agent-url",
            system.agent.url,
        ],
        cwd=PROJECT_ROOT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cursor = await conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND query ILIKE 'LISTEN%%'",
            (LISTENER_NAME,),
        )
        if await cursor.fetchone() is not None:
            return Baseline(child)
        if not child.running():
            break
        await asyncio.sleep(0.05)
    child.stop()
    raise ChildFailed("the baseline runner did not start listening; " + child.log_tail())


def new_keys(count: int, prefix: str) -> list[str]:
    return [f"{prefix}-{uuid.uuid4().hex[:12]}" for _ in range(count)]


async def trigger(conn: psycopg.AsyncConnection[Row], flow_id: int, keys: Sequence[str]) -> float:
    """Start one baseline run per key, all in one NOTIFY batch; return time.time() before it."""
    payloads = [json.dumps({"flow_id": flow_id, "key": key}) for key in keys]
    sent_at = time.time()
    await conn.execute(
        "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload", (CHANNEL, payloads)
    )
    return sent_at
