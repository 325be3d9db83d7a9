"""Reads and writes of `scheduled_prompts`: one prompt sent at a time of day on weekdays.

A row is what the user asked for; its Prefect deployment and cron schedule are derived
from it (`deployments/scheduled_prompts.py`), so the table is the source of truth and
Prefect is brought in step after every write and at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from flows.database import Pool
from flows.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class ScheduledPrompt:
    """One row of `scheduled_prompts`. A table taken over from the old system may hold NULLs
    and odd values where this one would not, so those fields say so."""

    id: int
    time_of_day: str | None  # "HH:MM", 24-hour, in `timezone`
    days_of_week: Any  # as stored: 7 booleans, Sunday first (`weekdays` reads it safely)
    prompt: str | None
    agent: str | None
    enabled: bool | None
    timezone: str
    deployment_id: UUID | None
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def weekdays(self) -> list[bool]:
        """Seven booleans, Sunday first, whatever the stored value holds."""
        days = self.days_of_week if isinstance(self.days_of_week, list) else []
        return [day is True for day in days[:7]] + [False] * (7 - len(days[:7]))


# Named columns, not `*`: a column added by a later migration must not break the rows.
_COLUMNS = ", ".join(field.name for field in fields(ScheduledPrompt))
_as_scheduled_prompt = class_row(ScheduledPrompt)
EDITABLE = ("time_of_day", "days_of_week", "prompt", "agent", "enabled", "timezone")


class ScheduledPromptStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list_scheduled_prompts(self) -> list[ScheduledPrompt]:
        """Every scheduled prompt, newest first (the old system's order)."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_scheduled_prompt)
            await cursor.execute(f"SELECT {_COLUMNS} FROM scheduled_prompts ORDER BY id DESC")
            return await cursor.fetchall()

    async def find_scheduled_prompt(self, prompt_id: int) -> ScheduledPrompt | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_scheduled_prompt)
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM scheduled_prompts WHERE id = %s", (prompt_id,)
            )
            return await cursor.fetchone()

    async def get_scheduled_prompt(self, prompt_id: int) -> ScheduledPrompt:
        row = await self.find_scheduled_prompt(prompt_id)
        if row is None:
            raise NotFoundError(f"Scheduled prompt {prompt_id} does not exist.")
        return row

    async def create_scheduled_prompt(
        self,
        *,
        time_of_day: str,
        days_of_week: list[bool],
        prompt: str,
        agent: str,
        enabled: bool = True,
        timezone: str = "UTC",
    ) -> ScheduledPrompt:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_scheduled_prompt)
            await cursor.execute(
                f"""
                INSERT INTO scheduled_prompts
                    (time_of_day, days_of_week, prompt, agent, enabled, timezone)
                VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}
                """,
                (time_of_day, Jsonb(days_of_week), prompt, agent, enabled, timezone),
            )
            row = await cursor.fetchone()
        assert row is not None
        return row

    async def update_scheduled_prompt(
        self, prompt_id: int, changes: dict[str, Any]
    ) -> ScheduledPrompt:
        """Change the given fields in one statement (two concurrent edits of different
        fields both stick); the others keep their value."""
        fields = {name: value for name, value in changes.items() if name in EDITABLE}
        if "days_of_week" in fields:
            fields["days_of_week"] = Jsonb(fields["days_of_week"])
        assignments = [
            sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
            for name in fields
        ]
        query = sql.SQL(
            "UPDATE scheduled_prompts SET {}, updated_at = now() WHERE id = {} RETURNING {}"
        ).format(sql.SQL(", ").join(assignments), sql.Placeholder("id"), sql.SQL(_COLUMNS))
        if not fields:
            query = sql.SQL("SELECT {} FROM scheduled_prompts WHERE id = {}").format(
                sql.SQL(_COLUMNS), sql.Placeholder("id")
            )
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_scheduled_prompt)
            await cursor.execute(query, {**fields, "id": prompt_id})
            row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"Scheduled prompt {prompt_id} does not exist.")
        return row

    async def delete_scheduled_prompt(self, prompt_id: int) -> ScheduledPrompt:
        """Delete it; return the deleted row (its deployment must go too)."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_scheduled_prompt)
            await cursor.execute(
                f"DELETE FROM scheduled_prompts WHERE id = %s RETURNING {_COLUMNS}", (prompt_id,)
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"Scheduled prompt {prompt_id} does not exist.")
        return row

    async def set_deployment_id(self, prompt_id: int, deployment_id: UUID | None) -> None:
        # updated_at stays: this records where Prefect keeps it, not a user's edit.
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE scheduled_prompts SET deployment_id = %s WHERE id = %s",
                (deployment_id, prompt_id),
            )
