"""The three hot reads answered without FastAPI's routing and dependency resolution.

`GET /api/executions/active`, `/recent` and `/{id}` are what every open page polls. Through
FastAPI, an idle `/active` (an empty array from a cheap query) spent about five times as
long in the framework (matching the included routers one by one, resolving the token
dependency and its own) as in the database. This ASGI middleware answers those requests
itself when they are plainly valid, with the same bodies (`api.routes.executions`), the
same token check (`api.deps.check_token`) and the same error answers (the app's exception
handlers). It sits inside the Host/Origin guard, CORS and the body limit, so those apply as
before. Anything else, including every request FastAPI would refuse (an out-of-range
`limit`, an id that is not a number, an unknown parameter), goes on to the FastAPI routes,
which also keep describing these endpoints in the OpenAPI document.

The answers come from the process's read cache (`api.read_cache`) when it holds them and
is on: the same bytes, dropped on every NOTIFY of a change, off while the live feed's
LISTEN connection is down, and off altogether with `READ_CACHE=false`. `/{id}`'s
`partial_response` (the text in flight) is put in on every request, never cached. The
FastAPI routes always read the tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import check_token
from api.read_cache import ACTIVE_KEY, execution_key, recent_key
from api.resources import Resources
from api.routes.executions import active_body, recent_body, stored_execution, with_partial
from api.schemas import MAX_ID

_PREFIX = "/api/executions/"
_MAX_LIMIT = 500  # as `Limit` in api.routes.executions
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}

Read = Callable[[Resources], Awaitable[bytes]]


class HotReads:
    """Serve the plainly valid hot reads directly; pass everything else to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = _hot_read(scope) if scope["type"] == "http" else None
        if read is None:
            await self.app(scope, receive, send)
            return
        application = scope["app"]  # set by Starlette before any middleware runs
        resources: Resources = application.state.resources
        request = Request(scope)
        try:
            check_token(resources.settings.api_token, request)
            response = Response(await read(resources), media_type="application/json")
        except Exception as exc:
            handler = _handler_for(application.exception_handlers, exc)
            if handler is None:
                raise  # the server-error handler logs it and answers 500, as for any route
            response = await handler(request, exc)
        await response(scope, receive, send)


def _hot_read(scope: Scope) -> Read | None:
    """The read this request asks for, or None when FastAPI should handle it."""
    path: str = scope["path"]
    if scope["method"] != "GET" or not path.startswith(_PREFIX) or scope.get("root_path"):
        return None
    tail = path[len(_PREFIX) :]
    query: bytes = scope["query_string"]
    if tail == "active":
        return _active if not query else None
    if tail == "recent":
        return _recent(query)
    execution_id = _whole_number(tail)
    if execution_id is None or query:
        return None
    return lambda resources: _execution(resources, execution_id)


async def _active(resources: Resources) -> bytes:
    return await resources.live.read_cache.read(
        ACTIVE_KEY, lambda: active_body(resources), len, is_list=True
    )


async def _execution(resources: Resources, execution_id: int) -> bytes:
    # In the order of `execution_body`: the text in flight, then the execution.
    partial = resources.live.partial_of(execution_id)
    body, status = await resources.live.read_cache.read(
        execution_key(execution_id),
        lambda: stored_execution(resources, execution_id),
        lambda stored: len(stored[0]),
        is_list=False,
    )
    return with_partial(body, status, partial)


def _recent(query: bytes) -> Read | None:
    """`/recent`'s parameters when each is given at most once and plainly valid."""
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= {"limit", "before_id", "results"}:
        return None
    limit = _whole_number(params.get("limit", "20"))
    before_id = _whole_number(params["before_id"]) if "before_id" in params else None
    results = _BOOLEANS.get(params.get("results", "true"))
    if limit is None or limit > _MAX_LIMIT or results is None:
        return None
    if "before_id" in params and before_id is None:
        return None
    return lambda resources: resources.live.read_cache.read(
        recent_key(limit, before_id, results),
        lambda: recent_body(resources, limit=limit, before_id=before_id, results=results),
        len,
        is_list=True,
    )


def _whole_number(text: str) -> int | None:
    """1..MAX_ID written plainly (ASCII digits, no sign, no leading zero), else None."""
    if not (text.isascii() and text.isdigit()) or text.startswith("0") or len(text) > 19:
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def _handler_for(
    handlers: dict[object, Callable[[Request, Exception], Awaitable[Response]]],
    exc: Exception,
) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The app's handler for `exc`, looked up by class as Starlette does; None for the
    catch-all `Exception` handler, which Starlette runs after logging at the outermost layer."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
