"""An ASGI middleware that refuses request bodies over a size limit with 413.

It counts the bytes as they arrive rather than trusting `Content-Length` (a chunked
upload has none, and a client may lie); a declared length over the limit is refused
before any byte is read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BodyTooLarge, error_response

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodySizeLimit:
    """Wrap `app` so no request body larger than `max_bytes` reaches it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            # Reads are most requests; none of their routes reads a body.
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI's body parsing lets it through to the
                    # error handlers instead of turning it into a 400.
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge()
        response = error_response(
            error.status_code, str(error.detail), headers={"Connection": "close"}
        )
        await response(scope, receive, send)
