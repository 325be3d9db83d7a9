"""Idle live streams (issue 12): what 1,000 open SSE streams cost one API process, and that
the next one beyond its `MAX_STREAMS` is refused.

A fresh API process is started for the measurement (with `MAX_STREAMS` set to the count), so
the figure is not mixed with what other groups left in the main API's heap. Each stream is a
raw socket that sends the request, reads the first message (`retry:`, so the server has
subscribed it) and then reads nothing more: an idle browser tab.

- memory per idle stream: (RSS with the streams open - RSS before) / streams;
- the stream beyond the limit: its status (503 expected).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.stats import Row
from bench.system import System, read_rss_kb
from stack.commands import api_argv
from stack.ports import free_port

# A stream should cost well under the 256-message queue it may fill: a few tens of KiB.
TARGET_KIB_PER_STREAM = 64.0


async def _open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """Open one stream; return it once its first message arrived, with the HTTP status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /api/executions/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    await reader.readuntil(b"\r\n\r\n")  # the headers
    if status == 200:
        await reader.readuntil(b"retry:")
    return reader, writer, status


async def measure(system: System, *, streams: int = 1000) -> list[Row]:
    port = free_port()
    child = system.supervisor.start(
        "api-streams",
        api_argv(port),
        env={**system.running.env, "MAX_STREAMS": str(streams)},
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout=90,
    )
    assert child.pid is not None
    opened: list[asyncio.StreamWriter] = []
    try:
        await asyncio.sleep(1.0)  # let start-up garbage settle before the baseline sample
        before_kib = read_rss_kb(child.pid)[0]
        started = time.monotonic()
        for first in range(0, streams, 100):  # in batches: no thundering herd of connects
            batch = await asyncio.gather(
                *(_open_stream(port) for _ in range(first, min(first + 100, streams)))
            )
            for _, writer, status in batch:
                opened.append(writer)
                if status != 200:
                    raise RuntimeError(f"stream refused with {status} below the limit")
        open_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        with_streams_kib = read_rss_kb(child.pid)[0]
        _, extra_writer, extra_status = await _open_stream(port)
        extra_writer.close()
    finally:
        for writer in opened:
            writer.close()
        for writer in opened:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        child.stop()
    per_stream = (with_streams_kib - before_kib) / streams
    return [
        Row(
            f"memory per idle live stream ({streams} open)",
            f"<= {TARGET_KIB_PER_STREAM:.0f} KiB",
            f"{per_stream:.1f} KiB",
            met=per_stream <= TARGET_KIB_PER_STREAM,
            note=f"API RSS {before_kib / 1024:.0f} -> {with_streams_kib / 1024:.0f} MiB; "
            f"opened in {open_s:.1f} s",
        ),
        Row(
            f"stream {streams + 1} with MAX_STREAMS={streams}",
            "503",
            str(extra_status),
            met=extra_status == 503,
        ),
    ]
