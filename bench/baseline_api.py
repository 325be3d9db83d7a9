"""The API baseline: the three read endpoints as a bare ASGI app (no framework, no models),
reading the same tables through a psycopg pool of the same size, JSON by the standard
library. Served by the same uvicorn as the real API, it is the floor of a Python server on
this machine.

It reads the data the way a plain app would: the execution rows, then the result rows of
those executions in one more query, assembled into `prompt_results` (or, with
`results=false`, counted, the last one cut to 2,000 characters) in Python.

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


PREVIEW = 2000
_RESULTS = (
    "SELECT execution_id, item FROM execution_results WHERE execution_id = ANY(%s)"
    " ORDER BY execution_id, prompt_index, id"
)


def _cut(item: dict[str, Any]) -> dict[str, Any]:
    return {
        **item,
        **{k: item[k][:PREVIEW] for k in ("prompt", "response") if isinstance(item.get(k), str)},
    }


async def _executions(where: str, params: tuple[Any, ...], *, full: bool = True) -> list[Any]:
    assert _pool is not None
    async with _pool.connection() as conn:
        cursor = await conn.execute(f"SELECT * FROM flow_executions {where}", params)
        rows = await cursor.fetchall()
        if not rows:
            return []
        cursor = await conn.execute(_RESULTS, ([row["id"] for row in rows],))
        results: dict[int, list[Any]] = {}
        for result in await cursor.fetchall():
            results.setdefault(result["execution_id"], []).append(result["item"])
    out = []
    for row in rows:
        run = row.get("flow_run_id")
        row["prefect_url"] = f"{PREFECT_UI}/runs/flow-run/{run}" if run else None
        mine = results.get(row["id"], [])
        if full:
            row["prompt_results"] = mine
        else:
            prompts = row.pop("prompts")
            index = row["current_prompt_index"]
            row["current_prompt"] = prompts[index][:PREVIEW] if index < len(prompts) else None
            row["results_count"] = len(mine)
            row["last_result"] = _cut(mine[-1]) if mine else None
        out.append(row)
    return out


async def _handle(path: str, query: str) -> tuple[int, Any]:
    if path == "/healthz":
        return 200, {"ok": True}
    if path == "/api/executions/active":
        return 200, await _executions("WHERE status IN ('queued', 'running') ORDER BY id", ())
    if path == "/api/executions/recent":
        args = parse_qs(query)
        limit = int((args.get("limit") or ["20"])[0])
        full = (args.get("results") or ["true"])[0] != "false"
        return 200, await _executions("ORDER BY id DESC LIMIT %s", (limit,), full=full)
    prefix = "/api/executions/"
    if path.startswith(prefix) and path[len(prefix) :].isdigit():
        rows = await _executions("WHERE id = %s", (int(path[len(prefix) :]),))
        return (200, rows[0]) if rows else (404, {"detail": "not found"})
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
