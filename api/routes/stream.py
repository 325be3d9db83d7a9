"""`GET /api/executions/stream`: every change of an execution, live, as Server-Sent Events.

What a client receives, each message with an increasing `id:`:

- `event: snapshot`, data `{"executions": [...]}`: the active (queued or running)
  executions, plus those named in `?ids=1,2`. It is always the first message, and it comes
  again whenever the server may have missed changes (it lost its database connection).
- `event: execution`, data: one execution that changed, as an `ExecutionSummary`.
- `event: partial` (only with `?partials=true`), data `{"id", "index", "attempt",
  "offset", "delta"}`: text the agent is writing for prompt `index` of execution `id`;
  `delta` goes at character `offset` of that attempt's answer. The final response comes
  in the `execution` event as usual.
- `: heartbeat` comments every 15 s while nothing happens, so proxies keep the line open.

A browser's `EventSource` reconnects by itself (after the `retry:` delay sent first) with
`Last-Event-ID`; that answer, like every connection, starts with a fresh snapshot: the
simplest behaviour that is always right. The changes come from PostgreSQL LISTEN/NOTIFY
through one shared listener per API process (`api.live`).

`GET /api/executions/summaries` answers what a snapshot carries, read at once, for clients
that cannot keep a stream open (the page polls it when the stream fails).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response, StreamingResponse

from api.deps import ResourcesDep
from api.errors import InvalidRequest
from api.live import ExecutionFeed, Summaries, sse
from api.params import error_responses
from api.schemas import MAX_ID
from api.stream_limits import StreamLimiterDep

router = APIRouter(tags=["executions"], responses=error_responses(422))

HEARTBEAT_S = 15.0
RECONNECT_DELAY_MS = 2000
MAX_IDS = 200

Ids = Annotated[
    str | None,
    Query(
        max_length=4000,
        pattern=r"^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){0,199}$",
        description="Comma-separated execution ids to include in the snapshot, e.g. `3,7`",
    ),
]
Partials = Annotated[
    bool,
    Query(description="Also send `partial` events: the agent's text while it is written"),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=100,
        description="Sent by a reconnecting EventSource; the stream starts with a fresh snapshot.",
    ),
]


@router.get(
    "/api/executions/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The event stream"},
        **error_responses(503),
    },
)
async def stream_executions(
    resources: ResourcesDep,
    limiter: StreamLimiterDep,
    ids: Ids = None,
    partials: Partials = False,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    """Server-Sent Events: a `snapshot`, then one `execution` event per change."""
    return limiter.response(
        _messages(resources.live, _parse_ids(ids), partials=partials),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


WithActive = Annotated[
    bool,
    Query(description="Also the active (queued or running) executions, as in a snapshot"),
]


@router.get("/api/executions/summaries", response_model=Summaries, responses=error_responses(503))
async def read_summaries(
    resources: ResourcesDep, ids: Ids = None, active: WithActive = True
) -> Response:
    """The executions `ids` (and the active ones) as the stream sends them: what a
    `snapshot` event carries, for clients that poll instead."""
    body = await resources.live.snapshot(_parse_ids(ids), with_active=active)
    return Response(body, media_type="application/json")


def _parse_ids(text: str | None) -> list[int]:
    parts = [part.strip() for part in (text or "").split(",") if part.strip()]
    if len(parts) > MAX_IDS:
        raise InvalidRequest(f"ids names more than {MAX_IDS} executions.")
    ids = []
    for part in parts:
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_ID:
            raise InvalidRequest(
                f"ids has {part[:20]!r}, which is not an execution id; send ids such as `3,7`."
            )
        ids.append(int(part))
    return ids


async def _messages(
    feed: ExecutionFeed, ids: list[int], *, partials: bool = False, heartbeat_s: float = HEARTBEAT_S
) -> AsyncIterator[bytes]:
    # Subscribing here, as the response starts, means a stream that never starts (the
    # client left at once) never subscribes; leaving the `with` unsubscribes in any case,
    # including when the client disconnects and this generator is cancelled.
    with feed.subscription(ids, partials=partials) as subscription:
        yield sse.retry(RECONNECT_DELAY_MS)
        while True:
            try:
                async with asyncio.timeout(heartbeat_s):
                    chunk = await subscription.get()
            except TimeoutError:
                yield sse.comment("heartbeat")
                continue
            if chunk is None:  # fell behind, or the server is shutting down
                return
            yield chunk
