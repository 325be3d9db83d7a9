"""The connections the API opens once at start-up and closes at shutdown.

One bounded psycopg pool, one Prefect client and one HTTP client for the agent, shared by
every request, and the live feed of execution changes (`api.live`: one LISTEN connection,
opened at start-up), which also keeps the hot reads' cache (`api.read_cache`) right. The
pool opens without waiting, so the API starts (and answers 503 with a sentence) while the
database is briefly down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from api.live import ExecutionFeed, open_execution_feed
from api.read_cache import ReadCache
from flows.database import Pool, create_pool
from flows.settings import Settings

AGENT_LIST_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything opened once per process and shared by all requests."""

    settings: Settings
    pool: Pool
    prefect: PrefectClient
    agent_http: httpx.AsyncClient
    live: ExecutionFeed


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Open the pool and the clients; close them all on exit, whatever happened."""
    async with AsyncExitStack() as stack:
        pool = create_pool(
            settings.resolved_database_url(),
            max_size=settings.db_pool_max,
            name="taskflows-api",
            timeout=settings.db_wait_s,
        )
        await pool.open(wait=False)
        stack.push_async_callback(pool.close)
        prefect = await stack.enter_async_context(_prefect_client(settings))
        agent_http = await stack.enter_async_context(_agent_client(settings))
        live = await stack.enter_async_context(
            open_execution_feed(
                database_url=settings.resolved_database_url(),
                pool=pool,
                prefect_ui_url=settings.resolved_prefect_ui_url(),
                read_cache=ReadCache(
                    enabled=settings.read_cache, max_bytes=settings.read_cache_mb * 1024 * 1024
                ),
            )
        )
        yield Resources(
            settings=settings,
            pool=pool,
            prefect=prefect,
            agent_http=agent_http,
            live=live,
        )


def _prefect_client(settings: Settings) -> PrefectClient:
    """A client for `PREFECT_API_URL`, or for our default server when it is unset.

    Without a URL, Prefect would start a throwaway server of its own (or refuse): the
    API must talk to the same server as the worker.
    """
    if PREFECT_API_URL.value():
        return get_client()
    with temporary_settings(updates={PREFECT_API_URL: settings.resolved_prefect_api_url()}):
        return get_client()


def _agent_client(settings: Settings) -> httpx.AsyncClient:
    headers = {}
    if settings.agent_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.agent_api_key.get_secret_value()}"
    return httpx.AsyncClient(
        base_url=settings.resolved_agent_url(),
        headers=headers,
        timeout=httpx.Timeout(AGENT_LIST_TIMEOUT_S),
    )
