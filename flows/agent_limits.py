"""Per-agent concurrency, enforced across every worker by Prefect global concurrency limits.

`AGENT_CONCURRENCY` holds a default for every agent and overrides per agent name:
`"4"`, `"4,gpt-4o=2"`, or `"gpt-4o=2"` (only that agent limited). Each agent's limit is
the Prefect global concurrency limit `agent:<name>`; a prompt holds one slot of it while
its request is at the agent. Prefect ignores a limit that does not exist yet (it only
warns), so the limit is created or updated before its first use in each process.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists

# The parsed setting lives with the settings, which must not import Prefect.
from flows.settings import AgentLimits


def limit_name(agent: str) -> str:
    return f"agent:{agent}"


_ensured: dict[str, int] = {}


async def _ensure_limit(agent: str, limit: int) -> None:
    if _ensured.get(agent) == limit:
        return
    async with get_client() as client:
        try:
            await client.upsert_global_concurrency_limit_by_name(limit_name(agent), limit)
        except ObjectAlreadyExists:
            # Prefect's upsert reads then creates; another run (or worker) created it in
            # between. Now it exists, so a second upsert takes the update path.
            await client.upsert_global_concurrency_limit_by_name(limit_name(agent), limit)
    _ensured[agent] = limit


@contextlib.asynccontextmanager
async def agent_slot(limits: AgentLimits, agent: str, *, hold_s: float) -> AsyncIterator[None]:
    """Hold one of the agent's slots for the block; no-op when the agent is unlimited.

    `hold_s` bounds how long a slot may be held (the agent timeout): if this process dies,
    Prefect frees the slot when its lease runs out.
    """
    limit = limits.limit_for(agent)
    if limit is None:
        yield
        return
    await _ensure_limit(agent, limit)
    async with concurrency(
        limit_name(agent), occupy=1, lease_duration=max(60.0, hold_s * 2), strict=True
    ):
        yield
