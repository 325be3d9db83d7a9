"""The fake agent the benchmark talks to: the bundled demo agent over loopback HTTP, served
from a thread of the bench process, with a log of when each request arrived and when its
answer was handed to the socket (so agent time and "the agent answered" are known exactly).

Prompts carry directives (`[delay=0.2]`, `[size=50000]`) and a unique tag, so each request
is matched to the run and prompt that sent it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from stack.agent_thread import serve_demo_agent
from stack.demo_agent import DemoAgent

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass
class Exchange:
    """One chat request: its prompt, when it arrived, when its answer was sent."""

    prompt: str
    received_at: float
    answered_at: float = 0.0

    @property
    def agent_time(self) -> float:
        return self.answered_at - self.received_at if self.answered_at else 0.0


@dataclass
class AgentLog:
    """What the agent saw; appended to from the agent's thread, read from the bench's."""

    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.exchanges.clear()

    def matching(self, tag: str) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if tag in e.prompt]

    def first(self, tag: str, after: float = 0.0) -> Exchange | None:
        with self.lock:
            for exchange in self.exchanges:
                if tag in exchange.prompt and exchange.received_at >= after:
                    return exchange
        return None


class Timed:
    """ASGI wrapper: logs each chat completion's arrival and the moment its answer is sent."""

    def __init__(self, app: Any, log: AgentLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        received_at = time.time()
        body = bytearray()
        exchange = Exchange(prompt="", received_at=received_at)

        async def receive_and_keep() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    exchange.prompt = _prompt_of(bytes(body))
                    with self.log.lock:
                        self.log.exchanges.append(exchange)
            return message

        async def send_and_stamp(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                exchange.answered_at = time.time()

        try:
            await self.app(scope, receive_and_keep, send_and_stamp)
        except asyncio.CancelledError:
            # The bench is ending with `[delay=60]` answers still pending: nothing to report.
            return


def _prompt_of(body: bytes) -> str:
    try:
        messages = json.loads(body).get("messages") or []
        return str(messages[-1].get("content", "")) if messages else ""
    except (ValueError, AttributeError):
        return ""


@dataclass
class FakeAgent:
    url: str
    demo: DemoAgent
    log: AgentLog


@contextmanager
def serve_agent() -> Iterator[FakeAgent]:
    """Serve the demo agent on a free loopback port for the duration of the block."""
    log = AgentLog()
    with serve_demo_agent(
        wrap=lambda app: Timed(app, log),
        # Long `[delay=60]` answers still in flight must not hold up the end of the bench.
        timeout_graceful_shutdown=2,
        # Up to a few hundred runs at once keep their sockets open.
        backlog=2048,
    ) as (demo, url):
        try:
            yield FakeAgent(url, demo, log)
        finally:
            # `[delay=60]` answers still pending are cut short on purpose: no error report.
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
