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
from dataclasses import dataclass, field

from prefect.client.orchestration import get_client
from prefect.concurrency.asyncio import concurrency
from prefect.exceptions import ObjectAlreadyExists


@dataclass(frozen=True)
class AgentLimits:
    default: int | None = None
    per_agent: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None) -> AgentLimits:
        """Read `AGENT_CONCURRENCY`; raise ValueError with a sentence on bad input."""
        default: int | None = None
        per_agent: dict[str, int] = {}
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.rpartition("=")
            try:
                limit = int(value)
            except ValueError:
                raise ValueError(
                    f"AGENT_CONCURRENCY: {part!r} is not a number or NAME=NUMBER"
                ) from None
            if limit < 1:
                raise ValueError(f"AGENT_CONCURRENCY: {part!r} must be at least 1")
            if name:
                per_agent[name.strip()] = limit
            else:
                default = limit
        return cls(default, per_agent)

    def limit_for(self, agent: str) -> int | None:
        return self.per_agent.get(agent, self.default)


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
