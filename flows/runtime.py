"""What every flow run in a process shares: one database pool and one agent client.

A worker runs many flow runs as asyncio tasks in one event loop; opening a pool or an HTTP
client per run would cost sockets and milliseconds each time. Resources are created on
first use and belong to the event loop that created them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from flows.agent_client import AgentClient
from flows.agent_limits import AgentLimits
from flows.database import Pool, create_pool
from flows.execution_store import ExecutionStore
from flows.memory_store import MemoryStore
from flows.settings import Settings, get_settings
from flows.task_flow_store import TaskFlowStore


@dataclass
class Runtime:
    settings: Settings
    pool: Pool
    agent: AgentClient
    executions: ExecutionStore
    task_flows: TaskFlowStore
    memories: MemoryStore
    agent_limits: AgentLimits

    async def aclose(self) -> None:
        await self.agent.aclose()
        await self.pool.close()


# One opening task per loop: concurrent first callers await the same one.
_runtimes: dict[asyncio.AbstractEventLoop, asyncio.Task[Runtime]] = {}


async def open_runtime(settings: Settings) -> Runtime:
    pool = create_pool(
        settings.resolved_database_url(), max_size=settings.db_pool_max, name="taskflows-runs"
    )
    await pool.open(wait=True, timeout=30)
    agent = AgentClient(
        base_url=settings.resolved_agent_url(),
        api_key=settings.agent_api_key.get_secret_value() if settings.agent_api_key else None,
        timeout_s=settings.agent_timeout_s,
        stream=settings.agent_stream,
    )
    return Runtime(
        settings=settings,
        pool=pool,
        agent=agent,
        executions=ExecutionStore(pool),
        task_flows=TaskFlowStore(pool),
        memories=MemoryStore(pool),
        agent_limits=AgentLimits.parse(settings.agent_concurrency),
    )


async def get_runtime() -> Runtime:
    """The runtime of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    opening = _runtimes.get(loop)
    if opening is None:
        opening = _runtimes[loop] = loop.create_task(open_runtime(get_settings()))
    try:
        return await asyncio.shield(opening)
    except Exception:
        _runtimes.pop(loop, None)  # let the next run try again (e.g. the database was down)
        raise


async def close_runtime() -> None:
    """Close the running loop's runtime (the worker calls this when it stops)."""
    opening = _runtimes.pop(asyncio.get_running_loop(), None)
    if opening is not None and opening.done() and not opening.exception():
        await opening.result().aclose()
