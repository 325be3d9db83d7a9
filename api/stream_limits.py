"""Bounds on the live streams (SSE) one API process serves.

Each open stream holds a socket, a subscription and its queue for as long as the client
stays. Without bounds, clients opening streams (or one that stops reading, whose messages
then wait in the server's buffers) wear the process down. So:

- at most `MAX_STREAMS` streams at once; one more is answered 503 with a sentence;
- a send that the client has not taken within `STREAM_SEND_TIMEOUT_S` ends that stream.

`bench/streams.py` measures what 1,000 idle streams cost. A route uses it like this::

    async def stream(limiter: StreamLimiterDep) -> StreamingResponse:
        return limiter.response(messages(), media_type="text/event-stream")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from api.errors import error_response

logger = logging.getLogger("taskflows.api")

# How long a refused client should wait before it tries again.
RETRY_AFTER_S = 5


class _SlowClient(Exception):
    """The client did not take a message within the send timeout."""


class StreamLimiter:
    """Counts the open streams of this process and builds responses that respect the bounds."""

    def __init__(self, *, max_streams: int, send_timeout_s: float) -> None:
        self.max_streams = max_streams
        self.send_timeout_s = send_timeout_s
        self.open = 0

    def response(
        self,
        content: AsyncIterator[bytes],
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> StreamingResponse:
        """A streaming response of `content` that counts against the limit while it runs."""
        return _BoundedStream(self, content, media_type=media_type, headers=headers)


class _BoundedStream(StreamingResponse):
    def __init__(
        self,
        limiter: StreamLimiter,
        content: AsyncIterator[bytes],
        *,
        media_type: str,
        headers: Mapping[str, str] | None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter
        # Checked and counted here, with no await in between, so a burst cannot overshoot;
        # a refused stream never started its generator, so it never subscribed.
        if limiter.open >= limiter.max_streams:
            refused = error_response(
                503,
                f"This server already serves its limit of {limiter.max_streams} live "
                "streams; try again in a moment (the limit is set by MAX_STREAMS).",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await refused(scope, receive, send)
            return
        limiter.open += 1
        timeout = limiter.send_timeout_s

        async def timed_send(message: Message) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await send(message)
            except TimeoutError:
                raise _SlowClient from None

        # The stream runs beside a watch for the client's disconnect, so a client that leaves
        # frees its place at once rather than at the next message the server tries to send.
        streaming = asyncio.ensure_future(super().__call__(scope, _never, timed_send))
        leaving = asyncio.ensure_future(_disconnect(receive))
        try:
            await asyncio.wait({streaming, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if streaming.done():
                streaming.result()  # raises what the stream raised
        except _SlowClient:
            # Returning ends the response; the server then drops the connection.
            logger.info("Closed a live stream whose client took nothing for %.0f s", timeout)
        finally:
            limiter.open -= 1
            for task in (streaming, leaving):
                task.cancel()
            await asyncio.gather(streaming, leaving, return_exceptions=True)
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()  # leaves the generator's subscription


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _never() -> Message:
    # The receive handed to the stream itself: the disconnect watch above reads the real one.
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def get_stream_limiter(request: Request) -> StreamLimiter:
    limiter: StreamLimiter = request.app.state.stream_limiter
    return limiter


StreamLimiterDep = Annotated[StreamLimiter, Depends(get_stream_limiter)]
