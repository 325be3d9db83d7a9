"""Reading Server-Sent Events: the one reader used by the CLI, the bench and the tests.

It follows the WHATWG rules for an event stream: lines `field: value` (one space after the
colon is dropped), `data` lines joined with newlines, a blank line ends a message, a line
that starts with a colon is a comment, a message without data is not an event. It reads
lines, so it works under any HTTP client; `events` and `aevents` wrap httpx's
`iter_lines()` and `aiter_lines()`.

Example:

    with client.stream("GET", "/api/executions/stream") as response:
        for event in events(response.iter_lines()):
            print(event.event, event.json())
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One message of the stream."""

    event: str  # "message" when the server named none
    data: str
    id: str | None  # the last id the server sent, as the browser would resend it
    received_at: float  # time.time() when its last line arrived

    def json(self) -> Any:
        """The data decoded as JSON (raises ValueError when it is not JSON)."""
        return json.loads(self.data)


@dataclass
class EventDecoder:
    """Turns the lines of an event stream into `Event`s, one line at a time.

    Besides the events it notes what the server said about the stream itself: `retry_ms`
    (the reconnection delay), `comments` (heartbeats) and `last_event_id`.
    """

    retry_ms: int | None = None
    comments: int = 0
    last_event_id: str | None = None
    _event: str = field(default="", init=False)
    _data: list[str] = field(default_factory=list, init=False)

    def feed(self, line: str) -> Event | None:
        """Take one line (without its line ending); return the event it completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None  # other fields are ignored, as the standard says

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Event(event or "message", "\n".join(data), self.last_event_id, time.time())


def events(lines: Iterable[str], decoder: EventDecoder | None = None) -> Iterator[Event]:
    """The events in `lines` (e.g. `response.iter_lines()`), as each one completes."""
    decoder = decoder or EventDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event


async def aevents(
    lines: AsyncIterable[str], decoder: EventDecoder | None = None
) -> AsyncIterator[Event]:
    """The events in `lines` (e.g. `response.aiter_lines()`), as each one completes."""
    decoder = decoder or EventDecoder()
    async for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
