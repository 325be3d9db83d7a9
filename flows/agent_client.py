"""The Agent API client: one reused `httpx.AsyncClient` talking OpenAI's chat protocol.

`POST {agent}/v1/chat/completions` with `{"model": <agent name>, "messages": [...]}`; the
answer is `choices[0].message.content`; `usage` is kept when the agent reports it. Memories
travel as one system message before the prompt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from flows.errors import AgentError

_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class AgentAnswer:
    content: str
    usage: dict[str, Any] | None = None
    model: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def build_messages(prompt: str, memories: list[str]) -> list[dict[str, str]]:
    """The chat messages for one prompt: memories first, as a single system message."""
    messages: list[dict[str, str]] = []
    if memories:
        notes = "\n".join(f"- {memory}" for memory in memories)
        messages.append({"role": "system", "content": f"Things to remember:\n{notes}"})
    messages.append({"role": "user", "content": prompt})
    return messages


class _Stalled(Exception):
    """The agent went silent in the middle of a streamed answer."""


def _status_error(status_code: int, text: str) -> AgentError:
    return AgentError(
        f"The agent answered HTTP {status_code}: {_excerpt(text) or '(empty body)'}",
        transient=status_code == 429 or status_code >= 500,
        status_code=status_code,
    )


def _refuses_streaming(status_code: int, text: str) -> bool:
    """An agent that does not do `stream: true` says so with a 4xx naming it."""
    return status_code in (400, 404, 405, 415, 422, 501) and "stream" in text.lower()


async def _assemble(response: httpx.Response, on_text: TextCallback | None) -> AgentAnswer:
    """Join OpenAI's server-sent chunks (`data: {...}` lines, then `data: [DONE]`)."""
    parts: list[str] = []
    usage: dict[str, Any] | None = None
    model: str | None = None
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise AgentError(
                    f"The agent sent a malformed stream chunk: {_excerpt(data)}", transient=False
                ) from None
            if isinstance(chunk.get("error"), dict):
                message = chunk["error"].get("message") or "no message"
                raise AgentError(
                    f"The agent failed mid-answer: {_excerpt(str(message))}", transient=True
                )
            model = chunk.get("model") or model
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if isinstance(piece, str) and piece:
                    parts.append(piece)
                    if on_text is not None:
                        on_text(piece)
    except httpx.ReadTimeout:
        if parts:
            raise _Stalled from None
        raise
    content = "".join(parts)
    if not content.strip():
        raise AgentError("The agent returned an empty answer.", transient=False)
    return AgentAnswer(content=content, usage=usage, model=model)


def redacted_url(url: str) -> str:
    """`url` as it may appear in an error anyone can read: no user, password or query.

    >>> redacted_url("https://user:s3cret@agent.example:8443/base?key=abc")
    'https://agent.example:8443/base'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


TextCallback = Callable[[str], None]
StreamMode = Literal["auto", "on", "off"]


class AgentClient:
    """Sends prompts to an OpenAI-compatible agent. Share one per process: it pools sockets.

    With `stream="auto"` (the default) it asks for a streamed answer and hands each piece
    of text to `on_text` as it arrives; an agent that refuses streaming gets a plain
    request instead, and is remembered (per agent name) so it is not asked again.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_connections: int = 200,
        stream: StreamMode = "auto",
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        # Errors end up in executions that anyone with API access reads: never credentials.
        self.shown_url = redacted_url(self.base_url)
        self.timeout_s = timeout_s
        self.stream = stream
        self._no_streaming: set[str] = set()
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            # The read timeout is also the longest silence allowed between streamed chunks.
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def streams_to(self, agent: str) -> bool:
        return self.stream == "on" or (self.stream == "auto" and agent not in self._no_streaming)

    async def chat(
        self,
        *,
        agent: str,
        prompt: str,
        memories: list[str],
        on_text: TextCallback | None = None,
    ) -> AgentAnswer:
        """Send one prompt and return the agent's whole answer, or raise AgentError."""
        payload: dict[str, Any] = {"model": agent, "messages": build_messages(prompt, memories)}
        streamed_chars = 0

        def seen(text: str) -> None:
            nonlocal streamed_chars
            streamed_chars += len(text)
            if on_text is not None:
                on_text(text)

        try:
            # httpx's timeout bounds each read; this bounds the whole answer, so an agent
            # that trickles bytes forever still times out.
            async with asyncio.timeout(self.timeout_s):
                if self.streams_to(agent):
                    answer = await self._streamed(agent, payload, seen)
                    if answer is not None:
                        return answer
                response = await self._http.post("/v1/chat/completions", json=payload)
        except (_Stalled, httpx.TimeoutException, TimeoutError):
            if streamed_chars:
                raise AgentError(
                    f"The agent at {self.shown_url} stalled mid-answer ({streamed_chars} "
                    f"characters in) and did not finish within {self.timeout_s:g} s "
                    "(timed out).",
                    transient=True,
                ) from None
            raise AgentError(
                f"The agent at {self.shown_url} did not answer within {self.timeout_s:g} s "
                "(timed out).",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            detail = str(exc).replace(self.base_url, self.shown_url)
            raise AgentError(
                f"Could not reach the agent at {self.shown_url}: {type(exc).__name__}"
                f"{': ' + detail if detail else ''}.",
                transient=True,
            ) from None
        return self._parse(response)

    async def _streamed(
        self, agent: str, payload: dict[str, Any], on_text: TextCallback | None
    ) -> AgentAnswer | None:
        """A streamed answer; None when the agent refused to stream (use a plain request)."""
        body = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                if self.stream == "auto" and _refuses_streaming(response.status_code, text):
                    self._no_streaming.add(agent)
                    return None
                raise _status_error(response.status_code, text)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                # The agent ignored "stream": it sent a whole answer. Fine; stop asking.
                if self.stream == "auto":
                    self._no_streaming.add(agent)
                await response.aread()
                return self._parse(response)
            return await _assemble(response, on_text)

    def _parse(self, response: httpx.Response) -> AgentAnswer:
        if response.status_code != 200:
            raise _status_error(response.status_code, response.text)
        try:
            data = response.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AgentError(
                "The agent's answer is not an OpenAI chat completion: "
                f"{_excerpt(response.text) or '(empty body)'}",
                transient=False,
                status_code=response.status_code,
            ) from None
        if not isinstance(content, str) or not content.strip():
            raise AgentError("The agent returned an empty answer.", transient=False)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        return AgentAnswer(content=content, usage=usage, model=data.get("model"), raw=data)

    async def list_models(self) -> list[str]:
        """The agent names the server offers (`GET /v1/models`, `data[].id`)."""
        try:
            response = await self._http.get("/v1/models", timeout=10.0)
            response.raise_for_status()
            return [str(item["id"]) for item in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise AgentError(
                f"Could not list the agents at {self.shown_url}: {type(exc).__name__}.",
                transient=True,
            ) from None
