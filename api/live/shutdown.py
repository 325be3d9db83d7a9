"""Ending the event streams when the server is told to stop, by chaining signal handlers."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
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
