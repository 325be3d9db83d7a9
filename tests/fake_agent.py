"""The fake agent for tests: the bundled demo agent served over real HTTP from a thread,
so a test can steer its behaviour and read back what it received."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from stack.demo_agent import DemoAgent, create_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_fake_agent() -> Iterator[tuple[DemoAgent, str]]:
    """Serve a DemoAgent on a free loopback port; yield it and its base URL."""
    agent = DemoAgent()
    port = free_port()
    config = uvicorn.Config(create_app(agent), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-agent", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake agent did not start")
        time.sleep(0.02)
    try:
        yield agent, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
