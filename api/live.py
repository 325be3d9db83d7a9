"""The live feed behind `GET /api/executions/stream`: ONE `LISTEN flow_executions`
connection per API process, fanned out to every open event stream.

The trigger on `flow_executions` sends a tiny NOTIFY (`{"id", "status",
"current_prompt_index"}`) on every insert and update. `ExecutionFeed` listens on one
dedicated autocommit connection (not a pool connection), gathers the changed ids, reads
those rows once from the pool (a burst of changes becomes one read, and no pool connection
is held between reads), encodes them once as Server-Sent Events and puts the same bytes in
every subscriber's bounded queue. A subscriber whose queue is full has fallen behind: its
stream is ended (the browser reconnects and gets a fresh snapshot) instead of slowing
everyone else down.

Subscribers may also ask for the agent's text while it is written: the flow publishes it
on the channel `flow_execution_partials` (see `flows.partials`), and those notifications
are forwarded as they are, as `partial` events, without reading anything.

No change is lost: a new subscriber's snapshot is read by the same loop that reads the
changes, after the subscriber was registered and while LISTEN is active, so every change
is either in the snapshot or in an event after it. When the LISTEN connection is lost,
changes made until it is back were not heard: every subscriber then gets a fresh snapshot.

Example:

    async with open_execution_feed(database_url=url, pool=pool, prefect_ui_url=ui) as feed:
        with feed.subscription(ids=[42]) as events:
            chunk = await events.get()  # b"id: ...\\nevent: snapshot\\ndata: {...}\\n\\n"
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import psycopg
from pydantic import Field

from api.schemas import ExecutionCore
from flows.database import Pool
from flows.execution_store import ACTIVE_STATUSES
from flows.partials import CHANNEL as PARTIALS_CHANNEL

logger = logging.getLogger("taskflows.api.live")

# Long texts in events are cut to this many characters; GET /api/executions/{id} has them all.
PREVIEW_CHARS = 2000
# How many undelivered messages a subscriber may have before it is dropped.
QUEUE_SIZE = 256
# How often an idle LISTEN connection is checked (a dead server would otherwise go unnoticed).
LIVENESS_CHECK_S = 30.0

_SUMMARY_SQL = """
    SELECT id, flow_id, status, current_prompt_index, total_prompts, started_at, completed_at,
           error, flow_run_id, call_name, agent, trigger, retry_of, attempts, worker_name,
           queued_at, updated_at,
           left(prompts ->> current_prompt_index, %(preview)s) AS current_prompt,
           jsonb_array_length(prompt_results) AS results_count,
           prompt_results -> -1 AS last_result
    FROM flow_executions
    WHERE id = ANY(%(ids)s) OR (%(with_active)s AND status IN ('queued', 'running'))
    ORDER BY id
"""


class ExecutionSummary(ExecutionCore):
    """An execution as the stream sends it: the execution object of `GET
    /api/executions/{id}` without `prompts` and `prompt_results` (which grow with every
    prompt), plus what a live view needs from them."""

    current_prompt: str | None = Field(
        description="The prompt at current_prompt_index (cut to 2,000 characters)"
    )
    results_count: int = Field(description="How many items prompt_results has")
    last_result: dict[str, Any] | None = Field(
        description="The last item of prompt_results (prompt and response cut to 2,000 characters)"
    )


@dataclass(eq=False)
class Subscription:
    """One stream's place in the feed: its queue of encoded SSE messages.

    `get()` returns the next chunk of messages, or None once the stream is over (the
    subscriber fell behind, or the API is shutting down).
    """

    ids: frozenset[int]
    queue: asyncio.Queue[bytes | None]
    partials: bool = False
    ended: bool = False

    async def get(self) -> bytes | None:
        if self.ended and self.queue.empty():
            return None
        return await self.queue.get()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass
class _Backoff:
    """Exponential delays with jitter: about initial, 2*initial, 4*initial, ... up to maximum."""

    initial: float = 0.5
    maximum: float = 15.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


@dataclass(eq=False)
class ExecutionFeed:
    """Listens for execution changes and fans them out to subscribers (see the module doc).

    The LISTEN connection is opened by the first subscriber and kept until `aclose()`.
    """

    database_url: str
    pool: Pool
    prefect_ui_url: str
    queue_size: int = QUEUE_SIZE
    liveness_check_s: float = LIVENESS_CHECK_S
    application_name: str = "taskflows-api-live"

    _subscribers: set[Subscription] = field(default_factory=set, init=False)
    # Subscribers waiting for their (first or fresh) snapshot.
    _pending: list[Subscription] = field(default_factory=list, init=False)
    _changed: set[int] = field(default_factory=set, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _closing: bool = field(default=False, init=False)
    # The text so far of each prompt in flight, from its `partial` notifications: a client
    # that connects mid-answer starts from it. It is a relay buffer, not a cache of the
    # table: an entry is dropped as soon as the prompt's result reaches the row.
    _partials: dict[int, dict[str, Any]] = field(default_factory=dict, init=False)
    # Event ids are microseconds since the epoch, kept strictly increasing: they also
    # increase across API restarts, so a browser never sees an id go backwards.
    _last_event_id: int = field(default_factory=lambda: time.time_ns() // 1000, init=False)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers) + len(self._pending)

    def subscribe(self, ids: Iterable[int] = (), *, partials: bool = False) -> Subscription:
        """Register a subscriber; its first message is a snapshot of the active executions
        and of the executions `ids`, then one `execution` event per change (and, with
        `partials`, a `partial` event per piece of agent text published)."""
        subscription = Subscription(
            frozenset(ids), asyncio.Queue(maxsize=self.queue_size), partials=partials
        )
        if self._closing:
            subscription._end()
            return subscription
        self._pending.append(subscription)
        self._wakeup.set()
        self.start()
        return subscription

    def start(self) -> None:
        """Start listening (idempotent); the API does it at start-up, so the text of
        prompts in flight is known before the first stream or read asks for it."""
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="taskflows-live-feed"
            )

    def partial_of(self, execution_id: int) -> dict[str, Any] | None:
        """`{index, attempt, offset, text}` of the prompt in flight, as far as it is written."""
        entry = self._partials.get(execution_id)
        return dict(entry) if entry else None

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.ended = True
        self._subscribers.discard(subscription)
        with suppress(ValueError):
            self._pending.remove(subscription)

    @contextmanager
    def subscription(
        self, ids: Iterable[int] = (), *, partials: bool = False
    ) -> Iterator[Subscription]:
        subscription = self.subscribe(ids, partials=partials)
        try:
            yield subscription
        finally:
            self.unsubscribe(subscription)

    def end_streams(self) -> None:
        """End every stream and refuse new ones: the server is shutting down."""
        self._closing = True
        for subscription in [*self._subscribers, *self._pending]:
            subscription._end()
        self._subscribers.clear()
        self._pending.clear()

    async def aclose(self) -> None:
        self.end_streams()
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url,
                    autocommit=True,
                    application_name=self.application_name,
                    connect_timeout=10,
                ) as conn:
                    await conn.execute("LISTEN flow_executions")
                    await conn.execute(f"LISTEN {PARTIALS_CHANNEL}")
                    if backoff.attempt:
                        logger.info("Live feed: listening again; sending fresh snapshots.")
                    backoff.reset()
                    self._resync_everyone()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._receive(conn))
                        group.create_task(self._publish())
            except* psycopg.OperationalError as lost:
                logger.warning(
                    "Live feed: the database connection is lost (%s); reconnecting.",
                    str(lost.exceptions[0]).strip() or type(lost.exceptions[0]).__name__,
                )
            except* Exception as failed:
                logger.error("Live feed failed; restarting it.", exc_info=failed)
            await asyncio.sleep(backoff.next_delay())

    def _resync_everyone(self) -> None:
        """Changes made while nobody listened were missed: everyone gets a fresh snapshot."""
        self._pending.extend(self._subscribers)
        self._subscribers.clear()
        self._wakeup.set()

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for notify in conn.notifies(timeout=self.liveness_check_s):
                if notify.channel == PARTIALS_CHANNEL:
                    self._forward_partial(notify.payload)
                else:
                    self._note_change(notify.payload)
            await conn.execute("SELECT 1")  # raises OperationalError when the server is gone

    def _note_change(self, payload: str) -> None:
        try:
            execution_id = int(json.loads(payload)["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("Live feed: ignoring a notification it cannot read: %.200r", payload)
            return
        self._changed.add(execution_id)
        self._wakeup.set()

    def _forward_partial(self, payload: str) -> None:
        """Agent text as it is written: `{"id", "index", "attempt", "offset", "delta"}`."""
        try:
            partial = json.loads(payload)
            fields = {key: partial[key] for key in ("id", "index", "attempt", "offset")}
            if not all(type(value) is int for value in fields.values()):
                raise TypeError("not integers")
            if not isinstance(partial["delta"], str):
                raise TypeError("delta is not text")
        except (ValueError, KeyError, TypeError):
            logger.warning("Live feed: ignoring partial output it cannot read: %.200r", payload)
            return
        self._remember_partial(fields, partial["delta"])
        wanted = [s for s in self._subscribers if s.partials]
        if wanted:
            data = json.dumps({**fields, "delta": partial["delta"]}, ensure_ascii=False)
            message = self._message("partial", data)
            for subscription in wanted:
                self._offer(subscription, message)

    def _remember_partial(self, fields: dict[str, int], delta: str) -> None:
        entry = self._partials.get(fields["id"])
        same_attempt = entry is not None and (entry["index"], entry["attempt"]) == (
            fields["index"],
            fields["attempt"],
        )
        if same_attempt and entry is not None:
            if fields["offset"] == entry["offset"] + len(entry["text"]):
                entry["text"] += delta
            return  # a repeat or a gap: keep what is consistent
        self._partials[fields["id"]] = {
            "index": fields["index"],
            "attempt": fields["attempt"],
            "offset": fields["offset"],
            "text": delta,
        }

    def _forget_finished_partials(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            entry = self._partials.get(row["id"])
            if entry is not None and (
                row["status"] not in ACTIVE_STATUSES or row["results_count"] > entry["index"]
            ):
                del self._partials[row["id"]]

    def _partials_for(self, execution_ids: Iterable[int]) -> bytes:
        """`partial` events replaying the text so far, for a client that just connected."""
        chunks = []
        for execution_id in execution_ids:
            entry = self._partials.get(execution_id)
            if entry is not None:
                data = json.dumps(
                    {
                        "id": execution_id,
                        "index": entry["index"],
                        "attempt": entry["attempt"],
                        "offset": entry["offset"],
                        "delta": entry["text"],
                    },
                    ensure_ascii=False,
                )
                chunks.append(self._message("partial", data))
        return b"".join(chunks)

    async def _publish(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not (self._changed or self._pending):
                continue
            changed, self._changed = self._changed, set()
            pending, self._pending = self._pending, []
            try:
                rows = await self._read(changed, pending)
            except BaseException:
                self._changed |= changed
                self._pending[:0] = [s for s in pending if not s.ended]
                raise
            # No await from here on: the fan-out cannot be interleaved with anything.
            self._fan_out(rows, changed, pending)

    async def _read(self, changed: set[int], pending: list[Subscription]) -> list[dict[str, Any]]:
        ids = set(changed)
        for subscription in pending:
            ids |= subscription.ids
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                _SUMMARY_SQL,
                {"ids": sorted(ids), "with_active": bool(pending), "preview": PREVIEW_CHARS},
            )
            return await cursor.fetchall()

    def _fan_out(
        self, rows: list[dict[str, Any]], changed: set[int], pending: list[Subscription]
    ) -> None:
        self._forget_finished_partials(rows)
        encoded = {row["id"]: self._encode(row) for row in rows}
        changes = b"".join(
            self._message("execution", encoded[execution_id])
            for execution_id in sorted(changed)
            if execution_id in encoded
        )
        if changes:
            for subscription in list(self._subscribers):
                self._offer(subscription, changes)
        for subscription in pending:
            if subscription.ended:
                continue
            shown = [
                encoded[row["id"]]
                for row in rows
                if row["status"] in ACTIVE_STATUSES or row["id"] in subscription.ids
            ]
            snapshot = '{"executions":[' + ",".join(shown) + "]}"
            self._subscribers.add(subscription)
            self._offer(subscription, self._message("snapshot", snapshot))
            if subscription.partials:
                replay = self._partials_for(
                    row["id"]
                    for row in rows
                    if row["status"] in ACTIVE_STATUSES or row["id"] in subscription.ids
                )
                if replay:
                    self._offer(subscription, replay)

    def _encode(self, row: dict[str, Any]) -> str:
        flow_run_id = row["flow_run_id"]
        last = row["last_result"]
        if isinstance(last, dict):
            last = {
                **last,
                "prompt": _preview(last.get("prompt")),
                "response": _preview(last.get("response")),
            }
        summary = ExecutionSummary.model_validate(
            {
                **row,
                "last_result": last,
                "prefect_url": (
                    f"{self.prefect_ui_url}/runs/flow-run/{flow_run_id}" if flow_run_id else None
                ),
            }
        )
        return summary.model_dump_json()

    def _message(self, event: str, data: str) -> bytes:
        self._last_event_id = max(self._last_event_id + 1, time.time_ns() // 1000)
        return f"id: {self._last_event_id}\nevent: {event}\ndata: {data}\n\n".encode()

    def _offer(self, subscription: Subscription, chunk: bytes) -> None:
        try:
            subscription.queue.put_nowait(chunk)
        except asyncio.QueueFull:
            logger.info(
                "Live feed: a client fell %d messages behind; ending its stream.",
                self.queue_size,
            )
            self._subscribers.discard(subscription)
            subscription._end()


def _preview(text: object) -> object:
    if isinstance(text, str) and len(text) > PREVIEW_CHARS:
        return text[:PREVIEW_CHARS]
    return text


@asynccontextmanager
async def open_execution_feed(
    *, database_url: str, pool: Pool, prefect_ui_url: str
) -> AsyncIterator[ExecutionFeed]:
    """A feed for this process, its streams ended at shutdown (see `_on_shutdown_signal`)."""
    feed = ExecutionFeed(database_url=database_url, pool=pool, prefect_ui_url=prefect_ui_url)
    feed.start()
    try:
        with _on_shutdown_signal(feed.end_streams):
            yield feed
    finally:
        await feed.aclose()


@contextmanager
def _on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Also call `callback` when the server is told to stop (SIGINT, SIGTERM).

    Why: uvicorn waits for every open response to finish BEFORE it runs the lifespan
    shutdown, and an event stream never finishes by itself, so Ctrl-C would hang for as
    long as a page is open. The server's own handler (installed before the app starts) is
    kept and called after ours. Only the main thread can handle signals; elsewhere (an API
    served from a thread in tests) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    chained: dict[int, Callable[[int, FrameType | None], Any]] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained[signum](signum, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        # Only chain to a server's handler: the interpreter's defaults stop the process anyway.
        if callable(current) and current is not signal.default_int_handler:
            chained[sig] = current
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, previous in chained.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
