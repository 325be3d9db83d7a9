"""FastAPI dependencies: what a route may ask for, read from the app's shared resources.

The lifespan in `api.app` opens the resources once and stores them on `app.state`;
routes name what they need with the `...Dep` aliases below, e.g.
`async def read(task_flows: TaskFlowStoreDep) -> ...`.
"""

from __future__ import annotations

import hmac
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prefect.client.orchestration import PrefectClient
from pydantic import SecretStr

from api.errors import Unauthorized
from api.resources import Resources
from api.security import SESSION_COOKIE, session_value
from flows.database import Pool
from flows.execution_store import ExecutionStore
from flows.memory_store import MemoryStore
from flows.settings import Settings
from flows.task_flow_store import TaskFlowStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# Every dependency is `async def`: FastAPI runs a plain `def` in its thread pool, several
# thread hops per request for what are attribute reads (measured: 3-5x fewer req/s).
ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


async def get_pool(resources: ResourcesDep) -> Pool:
    return resources.pool


async def get_prefect(resources: ResourcesDep) -> PrefectClient:
    return resources.prefect


async def get_agent_http(resources: ResourcesDep) -> httpx.AsyncClient:
    return resources.agent_http


async def get_task_flow_store(resources: ResourcesDep) -> TaskFlowStore:
    return TaskFlowStore(resources.pool)


async def get_memory_store(resources: ResourcesDep) -> MemoryStore:
    return MemoryStore(resources.pool)


async def get_execution_store(resources: ResourcesDep) -> ExecutionStore:
    return ExecutionStore(resources.pool)


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[Pool, Depends(get_pool)]
PrefectDep = Annotated[PrefectClient, Depends(get_prefect)]
AgentHttpDep = Annotated[httpx.AsyncClient, Depends(get_agent_http)]
TaskFlowStoreDep = Annotated[TaskFlowStore, Depends(get_task_flow_store)]
MemoryStoreDep = Annotated[MemoryStore, Depends(get_memory_store)]
ExecutionStoreDep = Annotated[ExecutionStore, Depends(get_execution_store)]

_bearer = HTTPBearer(auto_error=False, description="TASKFLOWS_API_TOKEN, when it is set.")


# Open with a token too: the probe of an orchestrator has no token, and /healthz says only
# what is down; "/" is the page shell, which asks for the token. (/static is a mount, which
# FastAPI's dependencies never see.)
TOKEN_FREE_PATHS = frozenset({"/healthz", "/"})


async def require_token(
    request: Request,
    resources: ResourcesDep,
    # Declared for the OpenAPI document (the bearer scheme); `check_token` reads the header.
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With `TASKFLOWS_API_TOKEN` set, refuse any request without it (see api.security)."""
    check_token(resources.settings.api_token, request)


def check_token(token: SecretStr | None, request: Request) -> None:
    """Raise `Unauthorized` unless `request` carries `token` (or the page's session cookie
    on a read). A plain function, so the hot reads (`api.hot_reads`) apply the same check."""
    if token is None or request.url.path in TOKEN_FREE_PATHS:
        return
    # What HTTPBearer(auto_error=False) accepts: `Bearer <credentials>`, scheme in any case.
    scheme, sent = get_authorization_scheme_param(request.headers.get("Authorization"))
    if scheme.lower() != "bearer":
        sent = ""
    if hmac.compare_digest(sent.encode(), token.get_secret_value().encode()):
        return
    # The page's session cookie stands in for the header on reads (EventSource cannot
    # send headers); it never authorises a write.
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if request.method in SAFE_METHODS and hmac.compare_digest(
        cookie.encode(), session_value(token).encode()
    ):
        return
    raise Unauthorized(
        "This API needs its token: send the header `Authorization: Bearer "
        "<TASKFLOWS_API_TOKEN>` (the page asks for it once)."
    )
