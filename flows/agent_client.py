"""The Agent API client: one reused `httpx.AsyncClient` talking OpenAI's chat protocol.

`POST {agent}/v1/chat/completions` with `{"model": <agent name>, "messages": [...]}`; the
answer is `choices[0].message.content`; `usage` is kept when the agent reports it. Memories
travel as one system message before the prompt.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

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


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "…"


class AgentClient:
    """Sends prompts to an OpenAI-compatible agent. Share one per process: it pools sockets."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_connections: int = 200,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=50),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, *, agent: str, prompt: str, memories: list[str]) -> AgentAnswer:
        """Send one prompt and return the agent's answer, or raise AgentError."""
        payload = {"model": agent, "messages": build_messages(prompt, memories)}
        try:
            # httpx's timeout bounds each read; this bounds the whole answer, so an agent
            # that trickles bytes forever still times out.
            async with asyncio.timeout(self.timeout_s):
                response = await self._http.post("/v1/chat/completions", json=payload)
        except (httpx.TimeoutException, TimeoutError):
            raise AgentError(
                f"The agent at {self.base_url} did not answer within {self.timeout_s:g} s "
                "(timed out).",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            raise AgentError(
                f"Could not reach the agent at {self.base_url}: {type(exc).__name__}"
                f"{': ' + str(exc) if str(exc) else ''}.",
                transient=True,
            ) from None
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> AgentAnswer:
        if response.status_code != 200:
            transient = response.status_code == 429 or response.status_code >= 500
            body = _excerpt(response.text) or "(empty body)"
            raise AgentError(
                f"The agent answered HTTP {response.status_code}: {body}",
                transient=transient,
                status_code=response.status_code,
            )
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
                f"Could not list the agents at {self.base_url}: {type(exc).__name__}.",
                transient=True,
            ) from None
