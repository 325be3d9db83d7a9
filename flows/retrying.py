"""Backoff with jitter, the one used wherever taskflows waits before trying again.

`Backoff.run` retries database work through a PostgreSQL restart, under a deadline: a run
must not lose progress because PostgreSQL restarted for a few seconds; every write the flow
makes is safe to repeat (see `ExecutionStore`), so it is retried on a lost connection until
the deadline, then the error is raised. Loops that never give up (the API's live feed
reconnecting its LISTEN connection) count their own attempts and ask `delay(attempt)`.

Example:

    backoff = Backoff(base_s=0.5, cap_s=15.0)
    await asyncio.sleep(backoff.delay(attempt))  # about 0.5, 1, 2, 4 ... 15 s, jittered
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg_pool import PoolTimeout

T = TypeVar("T")
logger = logging.getLogger("taskflows.retrying")

# Only failures of the connection are worth retrying; a constraint violation is not.
RETRYABLE = (psycopg.OperationalError, PoolTimeout)


@dataclass(frozen=True)
class Backoff:
    """Delays of `base_s`, 2x, 4x... capped at `cap_s`, each with up to 50% jitter (so that
    many clients that lost the same server do not all come back at the same instant)."""

    base_s: float = 0.1
    cap_s: float = 5.0
    deadline_s: float = 90.0

    def delay(self, attempt: int) -> float:
        delay = min(self.cap_s, self.base_s * (2**attempt))
        return delay * (0.5 + random.random() / 2)

    async def run(self, operation: Callable[[], Awaitable[T]], *, what: str) -> T:
        deadline = time.monotonic() + self.deadline_s
        attempt = 0
        while True:
            try:
                return await operation()
            except RETRYABLE as exc:
                if time.monotonic() >= deadline:
                    raise
                delay = self.delay(attempt)
                attempt += 1
                logger.warning(
                    "%s failed (%s); retry %d in %.2f s", what, type(exc).__name__, attempt, delay
                )
                await asyncio.sleep(delay)
