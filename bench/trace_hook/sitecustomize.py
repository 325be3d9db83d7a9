"""Loaded by the API and the worker only under `python -m bench --trace` (this directory is
put on their PYTHONPATH): log every HTTP request made with httpx (the Prefect client, the
agent client) and every SQL statement run with psycopg, with start and end times, one JSON
line each, into $BENCH_TRACE_DIR/<name>-<pid>.jsonl. It also watches the main event loop
(the one `asyncio.run` starts in the main thread) and logs every stretch over 15 ms in which
the loop could not run anything (blocking code, or CPU-bound work between awaits).
Nothing is changed but the timing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

_DIR = os.environ.get("BENCH_TRACE_DIR")


def _install(directory: str) -> None:
    import httpx
    import psycopg

    name = os.environ.get("BENCH_TRACE_NAME", "process")
    out = open(os.path.join(directory, f"{name}-{os.getpid()}.jsonl"), "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()

    def log(kind: str, start: float, what: str) -> None:
        record = {
            "proc": name,
            "thread": threading.current_thread().name,
            "kind": kind,
            "start": start,
            "end": time.time(),
            "what": what,
        }
        with lock:
            out.write(json.dumps(record) + "\n")

    original_send = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return await original_send(self, request, **kwargs)
        finally:
            log(
                "http",
                start,
                f"{request.method} {request.url.host}:{request.url.port}{request.url.path}",
            )

    httpx.AsyncClient.send = send  # type: ignore[method-assign]

    original_execute = psycopg.AsyncCursor.execute

    async def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return await original_execute(self, query, *args, **kwargs)
        finally:
            text = query if isinstance(query, str) else repr(query)
            log("sql", start, " ".join(text.split())[:90])

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]

    import asyncio

    original_run = asyncio.run

    async def watch_loop() -> None:
        period = 0.005
        while True:
            before = time.time()
            await asyncio.sleep(period)
            late = time.time() - before - period
            if late > 0.015:
                record_blocked(before + period, late)

    def record_blocked(start: float, late: float) -> None:
        with lock:
            out.write(
                json.dumps(
                    {
                        "proc": name,
                        "thread": "MainThread",
                        "kind": "loop",
                        "start": start,
                        "end": start + late,
                        "what": "event loop blocked",
                    }
                )
                + "\n"
            )

    async def watched(main: Any) -> Any:
        watcher = asyncio.get_running_loop().create_task(watch_loop())
        try:
            return await main
        finally:
            watcher.cancel()

    def run(main: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            return original_run(watched(main), **kwargs)
        return original_run(main, **kwargs)

    asyncio.run = run


if _DIR:
    _install(_DIR)
