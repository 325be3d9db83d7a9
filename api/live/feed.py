"""The fan-out: ONE LISTEN connection per API process, its changes sent to every open stream.

The trigger on `flow_executions` sends a tiny NOTIFY (`channels.EXECUTION_CHANGES`) on every
insert and update. `ExecutionFeed` listens on one dedicated autocommit connection (not a
pool connection), gathers the changed ids, reads those rows once from the pool (a burst of
changes becomes one read, and no pool connection is held between reads), encodes them once
as Server-Sent Events and puts the same bytes in every subscriber's bounded queue. A
subscriber whose queue is full has fallen behind: its stream is ended (the browser
reconnects and gets a fresh snapshot) instead of slowing everyone else down.

Subscribers may also ask for the agent's text while it is written (`api.live.partials`):
those notifications are forwarded as they are, as `partial` events, without reading anything.

No change is lost: a new subscriber's snapshot is read by the same loop that reads the
changes, after the subscriber was registered and while LISTEN is active, so every change
is either in the snapshot or in an event after it. When the LISTEN connection is lost,
changes made until it is back were not heard: every subscriber then gets a fresh snapshot.

The same notifications keep the hot reads' cache right (`read_cache`, `api.read_cache`):
each one drops what it may have changed the moment it is read from the socket, and the
cache is off while the LISTEN connection is not up.

Example:

    async with open_execution_feed(database_url=url, pool=pool, prefect_ui_url=ui) as feed:
        with feed.subscription(ids=[42]) as events:
            chunk = await events.get()  # b"id: ...\\nevent: snapshot\\ndata: {...}\\n\\n"
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg

from api.live import sse
from api.live.partials import PartialTexts, parse_piece
from api.live.shutdown import on_shutdown_signal
from api.live.summary import summaries_json
from api.read_cache import ReadCache
from flows.channels import EXECUTION_CHANGES, PARTIAL_OUTPUT
from flows.database import Pool
from flows.execution_store import ACTIVE_STATUSES, ExecutionStore, SummaryRow
from flows.retrying import Backoff

logger = logging.getLogger("taskflows.api.live")

# How many undelivered messages a subscriber may have before it is dropped.
QUEUE_SIZE = 256
# How often an idle LISTEN connection is checked (a dead server would otherwise go unnoticed).
LIVENESS_CHECK_S = 30.0
# Waits between attempts to listen again after the connection was lost.
RECONNECT_BACKOFF = Backoff(base_s=0.5, cap_s=15.0)


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
    # Off until LISTEN is up; pass `ReadCache(enabled=False)` to never keep anything.
    read_cache: ReadCache = field(default_factory=ReadCache)

    _subscribers: set[Subscription] = field(default_factory=set, init=False)
    # Subscribers waiting for their (first or fresh) snapshot.
    _pending: list[Subscription] = field(default_factory=list, init=False)
    _changed: set[int] = field(default_factory=set, init=False)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _closing: bool = field(default=False, init=False)
    _partials: PartialTexts = field(default_factory=PartialTexts, init=False)
    _event_ids: sse.EventIds = field(default_factory=sse.EventIds, init=False)

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
        return self._partials.text_of(execution_id)

    async def snapshot(self, ids: Iterable[int] = (), *, with_active: bool = True) -> str:
        """The data of a `snapshot` event, read now: the summaries of the executions `ids`
        and (with `with_active`) of every active one. For clients that cannot stream."""
        rows = await self._summaries(ids, with_active=with_active)
        return summaries_json(row.json for row in rows)

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
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url,
                    autocommit=True,
                    application_name=self.application_name,
                    connect_timeout=10,
                ) as conn:
                    await conn.execute(f"LISTEN {EXECUTION_CHANGES}")
                    await conn.execute(f"LISTEN {PARTIAL_OUTPUT}")
                    if failures:
                        logger.info("Live feed: listening again; sending fresh snapshots.")
                    failures = 0
                    self._resync_everyone()
                    # Every change committed from now on is heard; earlier ones may not
                    # have been: the cache starts empty.
                    self.read_cache.listening()
                    try:
                        async with asyncio.TaskGroup() as group:
                            group.create_task(self._receive(conn))
                            group.create_task(self._publish())
                    finally:
                        self.read_cache.not_listening()
            except* psycopg.OperationalError as lost:
                logger.warning(
                    "Live feed: the database connection is lost (%s); reconnecting.",
                    str(lost.exceptions[0]).strip() or type(lost.exceptions[0]).__name__,
                )
            except* Exception as failed:
                logger.error("Live feed failed; restarting it.", exc_info=failed)
            await asyncio.sleep(RECONNECT_BACKOFF.delay(failures))
            failures += 1

    def _resync_everyone(self) -> None:
        """Changes made while nobody listened were missed: everyone gets a fresh snapshot."""
        self._pending.extend(self._subscribers)
        self._subscribers.clear()
        self._wakeup.set()

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            while True:
                async for notify in conn.notifies(timeout=self.liveness_check_s):
                    if notify.channel == PARTIAL_OUTPUT:
                        self._forward_partial(notify.payload)
                    else:
                        self._note_change(notify.payload)
                await conn.execute("SELECT 1")  # raises OperationalError when the server is gone
        finally:
            # At once, in the step that saw the connection fail, not once the task group
            # has also stopped `_publish`: a change from now on would go unheard.
            self.read_cache.not_listening()

    def _note_change(self, payload: str) -> None:
        try:
            change = json.loads(payload)
            execution_id = None if change["id"] is None else int(change["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("Live feed: ignoring a notification it cannot read: %.200r", payload)
            self.read_cache.changed(None)  # whatever it was about, drop everything
            return
        self.read_cache.changed(execution_id)
        if execution_id is None:
            # A TRUNCATE (sql/011): no list of changed ids, so everyone starts over.
            self._resync_everyone()
            return
        self._changed.add(execution_id)
        self._wakeup.set()

    def _forward_partial(self, payload: str) -> None:
        piece = parse_piece(payload)
        if piece is None:
            logger.warning("Live feed: ignoring partial output it cannot read: %.200r", payload)
            return
        self._partials.add(piece)
        wanted = [s for s in self._subscribers if s.partials]
        if wanted:
            message = self._message("partial", piece.to_json())
            for subscription in wanted:
                self._offer(subscription, message)

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

    async def _read(self, changed: set[int], pending: list[Subscription]) -> list[SummaryRow]:
        ids = set(changed)
        for subscription in pending:
            ids |= subscription.ids
        return await self._summaries(ids, with_active=bool(pending))

    async def _summaries(self, ids: Iterable[int], *, with_active: bool) -> list[SummaryRow]:
        return await ExecutionStore(self.pool).summaries(
            ids, with_active=with_active, prefect_ui_url=self.prefect_ui_url
        )

    def _fan_out(
        self, rows: list[SummaryRow], changed: set[int], pending: list[Subscription]
    ) -> None:
        self._partials.forget_finished(rows)
        encoded = {row.id: row.json for row in rows}
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
                row.id
                for row in rows
                if row.status in ACTIVE_STATUSES or row.id in subscription.ids
            ]
            snapshot = summaries_json(encoded[execution_id] for execution_id in shown)
            self._subscribers.add(subscription)
            self._offer(subscription, self._message("snapshot", snapshot))
            if subscription.partials:
                replay = b"".join(
                    self._message("partial", piece.to_json())
                    for piece in self._partials.replay(shown)
                )
                if replay:
                    self._offer(subscription, replay)

    def _message(self, event: str, data: str) -> bytes:
        return sse.message(self._event_ids.next(), event, data)

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


@asynccontextmanager
async def open_execution_feed(
    *,
    database_url: str,
    pool: Pool,
    prefect_ui_url: str,
    read_cache: ReadCache | None = None,
) -> AsyncIterator[ExecutionFeed]:
    """A feed for this process, its streams ended at shutdown (see `on_shutdown_signal`)."""
    feed = ExecutionFeed(
        database_url=database_url,
        pool=pool,
        prefect_ui_url=prefect_ui_url,
        read_cache=ReadCache() if read_cache is None else read_cache,
    )
    feed.start()
    try:
        with on_shutdown_signal(feed.end_streams):
            yield feed
    finally:
        await feed.aclose()
