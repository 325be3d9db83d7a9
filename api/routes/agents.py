"""The agents a task flow can use, as listed by the Agent API (`GET /v1/models`)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi import APIRouter
from starlette.exceptions import HTTPException

from api.deps import AgentHttpDep, SettingsDep
from api.params import error_responses
from api.schemas import AgentsOut

router = APIRouter(tags=["agents"], responses=error_responses(502, 503))


def shown_url(url: str) -> str:
    """The agent's URL as it may appear in a message: without any user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@router.get("/api/agents")
async def list_agents(http: AgentHttpDep, settings: SettingsDep) -> AgentsOut:
    """The agent names (`data[].id` of `/v1/models`), as plain strings like the old system
    answered, and the default one."""
    where = shown_url(settings.resolved_agent_url())
    try:
        response = await http.get("/v1/models")
    except httpx.TimeoutException:
        raise HTTPException(503, f"The agent at {where} did not answer in time.") from None
    except httpx.HTTPError:
        raise HTTPException(503, f"The agent at {where} is unreachable.") from None
    if response.status_code != 200:
        hint = " (check AGENT_API_KEY)" if response.status_code in (401, 403) else ""
        raise HTTPException(
            502,
            f"The agent at {where} answered HTTP {response.status_code} to GET /v1/models{hint}.",
        )
    try:
        models = response.json()["data"]
        names = [model["id"] for model in models if isinstance(model.get("id"), str)]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise HTTPException(
            502, f"The agent at {where} did not answer GET /v1/models with a model list."
        ) from None
    return AgentsOut(agents=names, default=settings.default_agent)
