"""The API baseline: the three read endpoints as a bare ASGI app (no framework, no models),
the same SQL through a psycopg pool of the same size, JSON by the standard library. Served
by the same uvicorn as the real API, it is the floor of a Python server on this machine.

`python -m uvicorn bench.baseline_api:app --host 127.0.0.1 --port PORT` with DATABASE_URL set.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

Scope = dict[str, Any]
PREFECT_UI = "http://127.0.0.1:4200"

_pool: AsyncConnectionPool[Any] | None = None


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def _out(row: dict[str, Any]) -> dict[str, Any]:
    run = row.get("flow_run_id")
    return {**row, "prefect_url": f"{PREFECT_UI}/runs/flow-run/{run}" if run else None}


async def _query(sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    assert _pool is not None
    async with _pool.connection() as conn:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()


async def _handle(path: str, query: str) -> tuple[int, Any]:
    if path == "/healthz":
        return 200, {"ok": True}
    if path == "/api/executions/active":
        rows = await _query(
            "SELECT * FROM flow_executions WHERE status IN ('queued', 'running') ORDER BY id", ()
        )
        return 200, [_out(r) for r in rows]
    if path == "/api/executions/recent":
        limit = int((parse_qs(query).get("limit") or ["20"])[0])
        rows = await _query("SELECT * FROM flow_executions ORDER BY id DESC LIMIT %s", (limit,))
        return 200, [_out(r) for r in rows]
    prefix = "/api/executions/"
    if path.startswith(prefix) and path[len(prefix) :].isdigit():
        rows = await _query(
            "SELECT * FROM flow_executions WHERE id = %s", (int(path[len(prefix) :]),)
        )
        return (200, _out(rows[0])) if rows else (404, {"detail": "not found"})
    return 404, {"detail": "not found"}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _pool = AsyncConnectionPool(
                    os.environ["DATABASE_URL"],
                    min_size=1,
                    max_size=10,
                    kwargs={"autocommit": True, "row_factory": dict_row},
                    open=False,
                )
                await _pool.open(wait=True, timeout=30)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, payload = await _handle(scope["path"], scope.get("query_string", b"").decode())
    body = json.dumps(payload, default=_default).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
