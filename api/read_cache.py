"""The answers of the hot reads kept in memory, and dropped the moment they may be wrong.

`api.hot_reads` asks this cache for `/active`, `/recent` and `/{id}`; a miss reads the
tables as before and keeps the bytes. What keeps it right:

- Every write that changes one of these answers sends a NOTIFY on
  `flows.channels.EXECUTION_CHANGES` from a trigger (`sql/011_notify_every_visible_change.sql`:
  executions inserted, updated, deleted; results inserted, updated, deleted; TRUNCATE). The
  live feed (`api.live.feed`), the API process's one LISTEN connection, calls `changed()` for
  each as soon as it is read from the socket: the lists (`/active`, `/recent`) and that
  execution's `/{id}` are dropped (everything, when the payload names no execution).
- A read that raced with a change is never kept: `read()` notes the generation before the
  query and keeps the answer only if no notification came in meanwhile. This is sound
  because PostgreSQL sends a notification only after its transaction committed: a change
  the query did not see committed after the query's snapshot, so its notification arrives
  after the generation was noted, and it either moves the generation before the answer is
  kept (not kept) or drops the answer right after.
- While the LISTEN connection is down (and before it is first up) changes go unheard, so
  the cache is off: `read()` reads the tables every time. When the connection is back the
  cache starts empty (`listening()`): what it held may have been changed meanwhile.

The answers carry nothing else that changes: `prefect_url` is built from a setting, and
`/{id}`'s `partial_response` (the agent's text in flight, held by the feed in memory) is
not cached but put into the cached execution on every request (`api.routes.executions`).

Memory is bounded by `max_bytes` (the bodies' sizes and a little per entry): the least
recently used answers go first. With several API processes each has its own feed and
cache, each right on its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# What an entry costs besides its body (key, tuple, dict slot), roughly, in bytes.
ENTRY_OVERHEAD = 256

# `/active`, and `/recent` per (limit, before_id, results): every one depends on all executions.
ACTIVE_KEY = ("active",)


def recent_key(limit: int, before_id: int | None, results: bool) -> tuple[Hashable, ...]:
    return ("recent", limit, before_id, results)


def execution_key(execution_id: int) -> tuple[Hashable, ...]:
    return ("execution", execution_id)


class ReadCache:
    """Answers by key, kept only while the feed's LISTEN is up (see the module doc)."""

    def __init__(self, *, enabled: bool = True, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        self._listening = False
        self._generation = 0
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        # Keys of the answers that depend on every execution (`/active`, `/recent`).
        self._lists: set[Hashable] = set()

    @property
    def active(self) -> bool:
        """Whether answers are served from memory now."""
        return self.enabled and self._listening

    @property
    def size_bytes(self) -> int:
        return self._size

    @property
    def entry_count(self) -> int:
        return len(self._entries)

    # --- what the live feed tells it ------------------------------------------------------

    def listening(self) -> None:
        """The LISTEN connection is (again) up: start empty, changes missed meanwhile."""
        self._clear()
        self._listening = True

    def not_listening(self) -> None:
        """The LISTEN connection is down or closing: changes would go unheard, so stop."""
        self._listening = False
        self._clear()

    def changed(self, execution_id: int | None) -> None:
        """A NOTIFY: execution `execution_id` changed (None: anything may have)."""
        self._generation += 1
        if execution_id is None:
            self._clear()
            return
        for key in list(self._lists):
            self._drop(key)
        self._drop(execution_key(execution_id))

    # --- what the hot reads ask ------------------------------------------------------------

    async def read(
        self,
        key: Hashable,
        load: Callable[[], Awaitable[T]],
        size: Callable[[T], int],
        *,
        is_list: bool,
    ) -> T:
        """The answer for `key`: kept, or `load()`ed (and kept when that is safe)."""
        if not self.active:
            return await load()
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            value: T = found[0]
            return value
        generation = self._generation
        value = await load()
        # Only if no notification arrived while the query ran (see the module doc).
        if self.active and generation == self._generation:
            self._keep(key, value, size(value), is_list=is_list)
        return value

    # --- the store --------------------------------------------------------------------------

    def _keep(self, key: Hashable, value: object, body_size: int, *, is_list: bool) -> None:
        size = body_size + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        self._drop(key)
        while self._entries and self._size + size > self.max_bytes:
            self._drop(next(iter(self._entries)))  # the least recently used
        self._entries[key] = (value, size)
        self._size += size
        if is_list:
            self._lists.add(key)

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= entry[1]
        self._lists.discard(key)

    def _clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._lists.clear()
        self._size = 0
