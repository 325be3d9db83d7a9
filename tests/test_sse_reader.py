"""The one Server-Sent Events reader (`cli.sse`), on streams written as the standard allows.

The API's own streams are read with it in test_stream.py and test_live_output.py; these
cases cover what the API does not send today but a proxy or another server may.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from cli.sse import EventDecoder, aevents, events


def _read(text: str, decoder: EventDecoder | None = None) -> list[tuple[str, str, str | None]]:
    return [(e.event, e.data, e.id) for e in events(text.split("\n"), decoder)]


def test_named_events_with_ids_as_the_api_writes_them():
    stream = 'retry: 2000\n\nid: 7\nevent: snapshot\ndata: {"executions":[]}\n\n: heartbeat\n\n'
    decoder = EventDecoder()
    assert _read(stream, decoder) == [("snapshot", '{"executions":[]}', "7")]
    assert decoder.retry_ms == 2000 and decoder.comments == 1


def test_data_lines_join_with_newlines_and_one_space_is_dropped():
    assert _read("data:first\ndata:  second\n\n") == [("message", "first\n second", None)]


def test_a_message_without_data_is_no_event_and_its_name_does_not_leak():
    assert _read("event: lonely\n\ndata: x\n\n") == [("message", "x", None)]


def test_the_last_id_carries_over_and_unknown_fields_are_ignored():
    assert _read("id: 3\ndata: a\n\nfoo: bar\ndata: b\n\n") == [
        ("message", "a", "3"),
        ("message", "b", "3"),
    ]


def test_an_unfinished_message_at_the_end_is_not_an_event():
    assert _read("data: complete\n\ndata: cut off") == [("message", "complete", None)]


def test_the_async_reader_reads_the_same():
    async def lines() -> AsyncIterator[str]:
        for line in ["event: partial", "data: 1", "", "event: partial", "data: 2", "", ""]:
            yield line

    async def read() -> list[str]:
        return [event.data async for event in aevents(lines())]

    assert asyncio.run(read()) == ["1", "2"]
