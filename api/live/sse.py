"""Server-Sent Events on the wire: how the API writes messages, comments and `retry:`.

(The CLI and the bench read them with `cli.sse`.)
"""

from __future__ import annotations

import time


class EventIds:
    """Event ids: microseconds since the epoch, kept strictly increasing. They also
    increase across API restarts, so a browser never sees an id go backwards."""

    def __init__(self) -> None:
        self._last = time.time_ns() // 1000

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


def message(event_id: int, event: str, data: str) -> bytes:
    """One message; `data` must be one line (JSON is)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment line: clients ignore it, proxies see the connection is alive."""
    return f": {text}\n\n".encode()


def retry(delay_ms: int) -> bytes:
    """How long a browser's EventSource waits before reconnecting."""
    return f"retry: {delay_ms}\n\n".encode()
