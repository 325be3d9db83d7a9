"""A stand-in for the old system's hub, to run its UI against taskflows in tests.

The hub serves the built UI under `/ext/automation_memory/`, answers `/api/supervisor/ports`
(the UI asks it first), and proxies `/api/automation_memory/*` to the extension's backend
with that prefix stripped, as its Caddy block does. Here the backend is the taskflows API.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stack.ports import free_port

PREFIX = "/api/automation_memory"
# Hop-by-hop and length headers are the proxy's own business, as in any reverse proxy.
# Host goes through unchanged, as Caddy's reverse_proxy passes it: taskflows sees the hub's
# name (which must be a name it serves) and the browser's writes as same-origin.
_NOT_FORWARDED = {"content-length", "connection", "transfer-encoding"}


def create_hub(ui_dist: Path, backend_url: str, backend_port: int) -> Starlette:
    client = httpx.AsyncClient(base_url=backend_url, timeout=30)

    async def ports(request: Request) -> Response:
        return JSONResponse({"services": {"automation_memory.backend": backend_port}})

    async def proxy(request: Request) -> Response:
        path = request.url.path.removeprefix(PREFIX) or "/"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        answer = await client.request(
            request.method,
            path,
            params=request.query_params,
            content=await request.body(),
            headers=headers,
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
        kept.pop("content-encoding", None)  # httpx has decoded the body
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/api/supervisor/ports", ports),
            Route(PREFIX + "/{path:path}", proxy, methods=methods),
            Route("/favicon.ico", no_icon),
            Mount("/ext/automation_memory", StaticFiles(directory=ui_dist, html=True)),
        ],
        lifespan=lambda app: _closing(client),
    )


@asynccontextmanager
async def _closing(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


@contextmanager
def serve_hub(ui_dist: Path, backend_url: str) -> Iterator[str]:
    """Serve the hub stand-in on a free loopback port; yield its base URL."""
    backend_port = httpx.URL(backend_url).port or 80
    port = free_port()
    config = uvicorn.Config(
        create_hub(ui_dist, backend_url, backend_port),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hub", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the hub stand-in did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
