"""A small OpenAI-compatible agent: what `make up` runs when no agent is configured, and the
fake agent the tests and benchmarks talk to over real HTTP.

It answers `POST /v1/chat/completions` by echoing the prompt (so a run's results are easy
to recognise) and `GET /v1/models`. Directives inside a prompt steer it, for demos and tests:

- `[delay=0.5]`  answer after 0.5 s
- `[fail=503]`   answer with that HTTP status
- `[hang]`       never answer
- `[empty]`      answer with an empty message
- `[size=50000]` pad the answer to that many characters (at most 1,000,000)
- `[flaky=2]`    answer HTTP 503 the first 2 times this exact prompt arrives

Asked to stream (`"stream": true`), it sends OpenAI chunks (`data: {...}` lines, then
`data: [DONE]`), usage in the last chunk when `stream_options.include_usage` is set:

- `[chunkdelay=0.2]` wait that long between chunks
- `[stall]`          go silent after the first chunk
- `[nostream]`       refuse streaming with HTTP 400, as agents without it do

Run it with `python -m stack.demo_agent --port 8080`. It keeps the last 10,000 requests
it received (for the tests and the bench); older ones are forgotten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

MODELS = ("default", "demo-echo")
# Bounds, so that a prompt or a long-running `make up` cannot make the agent eat the memory.
MAX_ANSWER_CHARS = 1_000_000
REQUEST_LOG_SIZE = 10_000
_DIRECTIVE = re.compile(
    r"\[(delay|fail|hang|empty|size|flaky|chunkdelay|stall|nostream)(?:=([0-9.]+))?\]"
)


@dataclass
class AgentBehaviour:
    """Defaults for every request; prompt directives override them per request."""

    delay_s: float = 0.0
    fail_status: int | None = None
    hang: bool = False
    streaming: bool = True  # False: refuse `stream: true` like agents without it


@dataclass
class ReceivedRequest:
    received_at: float  # time.time() when the request arrived
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    first_chunk_at: float | None = None  # time.time() when the first streamed text left

    @property
    def prompt(self) -> str:
        return str(self.messages[-1].get("content", "")) if self.messages else ""


@dataclass
class DemoAgent:
    behaviour: AgentBehaviour = field(default_factory=AgentBehaviour)
    # The most recent requests only (REQUEST_LOG_SIZE).
    requests: deque[ReceivedRequest] = field(
        default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE)
    )
    in_flight: int = 0
    max_in_flight: int = 0
    in_flight_by_model: dict[str, int] = field(default_factory=dict)
    max_in_flight_by_model: dict[str, int] = field(default_factory=dict)

    def prompts_received(self) -> list[str]:
        return [request.prompt for request in self.requests]


def _directives(prompt: str) -> dict[str, str]:
    return {name: value for name, value in _DIRECTIVE.findall(prompt)}


def _size(value: str | None) -> int | None:
    try:
        return min(int(float(value)), MAX_ANSWER_CHARS) if value else None
    except ValueError:
        return None  # "[size=1.2.3]": no padding


def _answer(prompt: str, messages: list[dict[str, Any]], size: int | None) -> str:
    memory_note = ""
    if messages and messages[0].get("role") == "system":
        count = str(messages[0]["content"]).count("\n- ")  # one "- " line per memory
        memory_note = f" (with {count} {'memory' if count == 1 else 'memories'})"
    text = f"Echo{memory_note}: {_DIRECTIVE.sub('', prompt).strip()}"
    if size and size > len(text):
        text += " " + "x" * (size - len(text) - 1)
    return text


def create_app(agent: DemoAgent | None = None) -> FastAPI:
    agent = agent or DemoAgent()
    app = FastAPI(title="taskflows demo agent", docs_url=None, redoc_url=None)
    app.state.agent = agent

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        messages = body.get("messages") or []
        received = ReceivedRequest(
            time.time(), str(body.get("model")), messages, stream=bool(body.get("stream"))
        )
        agent.requests.append(received)
        directives = _directives(received.prompt)
        if directives.get("flaky"):
            seen = sum(1 for r in agent.requests if r.prompt == received.prompt)
            if seen <= int(directives["flaky"]):
                return JSONResponse(
                    {"error": {"message": "demo agent is flaky as asked"}}, status_code=503
                )
        model = received.model
        agent.in_flight += 1
        agent.max_in_flight = max(agent.max_in_flight, agent.in_flight)
        agent.in_flight_by_model[model] = agent.in_flight_by_model.get(model, 0) + 1
        agent.max_in_flight_by_model[model] = max(
            agent.max_in_flight_by_model.get(model, 0), agent.in_flight_by_model[model]
        )

        def done() -> None:
            agent.in_flight -= 1
            agent.in_flight_by_model[model] -= 1

        try:
            response = await _respond(agent.behaviour, received, body)
        except BaseException:
            done()
            raise
        if isinstance(response, StreamingResponse):
            response.background = BackgroundTask(done)  # still in flight while it streams
        else:
            done()
        return response

    return app


async def _respond(
    behaviour: AgentBehaviour, received: ReceivedRequest, body: dict[str, Any]
) -> Response:
    directives = _directives(received.prompt)
    if received.stream and ("nostream" in directives or not behaviour.streaming):
        return JSONResponse(
            {"error": {"message": "stream is not supported by this agent"}}, status_code=400
        )
    if behaviour.hang or "hang" in directives:
        await asyncio.Event().wait()
    delay = float(directives.get("delay") or behaviour.delay_s)
    if delay:
        await asyncio.sleep(delay)
    status = int(directives["fail"]) if directives.get("fail") else behaviour.fail_status
    if status:
        return JSONResponse(
            {"error": {"message": f"demo agent failing with {status} as asked"}}, status_code=status
        )
    size = _size(directives.get("size"))
    content = "" if "empty" in directives else _answer(received.prompt, received.messages, size)
    words = len(received.prompt.split())
    usage = {
        "prompt_tokens": words,
        "completion_tokens": len(content.split()),
        "total_tokens": words + len(content.split()),
    }
    if received.stream:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _chunks(received, content, usage if include_usage else None, directives),
            media_type="text/event-stream",
        )
    return JSONResponse(
        {
            "id": f"chatcmpl-demo-{len(content)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": received.model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": usage,
        }
    )


async def _chunks(
    received: ReceivedRequest,
    content: str,
    usage: dict[str, int] | None,
    directives: dict[str, str],
) -> AsyncIterator[str]:
    """The answer as OpenAI streaming chunks, a few words each."""
    pause = float(directives.get("chunkdelay") or 0)
    words = re.findall(r"\S+\s*", content) or [content]
    pieces = ["".join(words[i : i + 3]) for i in range(0, len(words), 3)]

    def event(**fields: Any) -> str:
        return (
            "data: "
            + json.dumps(
                {
                    "id": "chatcmpl-demo",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": received.model,
                    **fields,
                }
            )
            + "\n\n"
        )

    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return event(choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    yield chunk({"role": "assistant", "content": ""})
    for number, piece in enumerate(pieces):
        if number and pause:
            await asyncio.sleep(pause)
        if received.first_chunk_at is None:
            received.first_chunk_at = time.time()
        yield chunk({"content": piece})
        if "stall" in directives:
            await asyncio.Event().wait()
    yield chunk({}, finish="stop")
    if usage is not None:
        yield event(choices=[], usage=usage)
    yield "data: [DONE]\n\n"


app = create_app()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args()
    app.state.agent.behaviour.delay_s = args.delay
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
