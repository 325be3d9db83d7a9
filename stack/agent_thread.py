"""The demo agent served over real HTTP from a thread of this process.

The tests and the bench steer it (`DemoAgent.behaviour`) and read back what it received, so it
runs in their process rather than as a child. Example::

    with serve_demo_agent() as (agent, url):
        httpx.get(f"{url}/v1/models")
        agent.requests  # what arrived
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from flows.errors import StartError
from stack.demo_agent import DemoAgent, create_app
from stack.ports import free_port


@contextmanager
def serve_demo_agent(
    agent: DemoAgent | None = None,
    *,
    wrap: Callable[[Any], Any] | None = None,
    start_timeout: float = 15.0,
    **uvicorn_options: Any,
) -> Iterator[tuple[DemoAgent, str]]:
    """Serve `agent` (a fresh one by default) on a free loopback port; yield it and its URL.

    `wrap` wraps the ASGI app (the bench times each exchange that way); `uvicorn_options` go
    to `uvicorn.Config` (e.g. `backlog`, `timeout_graceful_shutdown`).
    """
    agent = agent or DemoAgent()
    app: Any = create_app(agent)
    port = free_port()
    config = uvicorn.Config(
        wrap(app) if wrap else app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **uvicorn_options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-agent", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise StartError(f"The demo agent did not start within {start_timeout:.0f} s.")
        time.sleep(0.02)
    try:
        yield agent, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
