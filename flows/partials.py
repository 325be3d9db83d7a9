"""Live agent output: the text of the prompt in flight, published as it is written.

Partial text never touches the table (the final result is appended once, as always): it
travels through PostgreSQL NOTIFY on the channel `channels.PARTIAL_OUTPUT`, throttled to
about one message per `interval_s`, as deltas with their offset. NOTIFY payloads are
limited to 8,000 bytes, so a large delta is split. Each message is JSON:
`{"id": <execution>, "index": <prompt>, "attempt": n, "offset": <chars before>, "delta": "..."}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from flows.channels import PARTIAL_OUTPUT
from flows.database import Pool

# Leave room in the 8,000-byte payload for the JSON envelope and escaping.
_MAX_DELTA_BYTES = 3_000

logger = logging.getLogger("taskflows.partials")


def _pieces(text: str, max_bytes: int = _MAX_DELTA_BYTES) -> list[str]:
    """Split `text` so that each piece, JSON-escaped, stays well under the payload limit."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        cost = len(json.dumps(char, ensure_ascii=False).encode()) - 2
        if size + cost > max_bytes and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += cost
    if current:
        pieces.append("".join(current))
    return pieces


class PartialPublisher:
    """Collects one prompt attempt's streamed text and NOTIFYs it, throttled."""

    def __init__(
        self, pool: Pool, *, execution_id: int, index: int, attempt: int, interval_s: float = 0.1
    ) -> None:
        self._pool = pool
        self._execution_id = execution_id
        self._index = index
        self._attempt = attempt
        self._interval_s = interval_s
        self._sent_chars = 0
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self.messages_sent = 0

    def add(self, text: str) -> None:
        """Called for each piece of text the agent streams; never blocks."""
        self._pending.append(text)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._interval_s)
        await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        text, self._pending = "".join(self._pending), []
        try:
            async with self._pool.connection() as conn:
                for piece in _pieces(text):
                    payload = json.dumps(
                        {
                            "id": self._execution_id,
                            "index": self._index,
                            "attempt": self._attempt,
                            "offset": self._sent_chars,
                            "delta": piece,
                        },
                        ensure_ascii=False,
                    )
                    await conn.execute("SELECT pg_notify(%s, %s)", (PARTIAL_OUTPUT, payload))
                    self._sent_chars += len(piece)
                    self.messages_sent += 1
        except Exception as exc:  # live output is a courtesy; the final result is what counts
            logger.warning("Could not publish partial output: %r", exc)

    async def close(self) -> None:
        """Stop publishing (the final result, appended to the row, supersedes the partials)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
