"""Reads and writes of `task_flows`: the named, ordered lists of prompts users run."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg.errors
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from flows.database import Pool
from flows.errors import ConflictError, NotFoundError


@dataclass(frozen=True, slots=True)
class TaskFlow:
    """One row of `task_flows`."""

    id: int
    call_name: str
    description: str
    agent: str
    prompts: list[str]
    # Optimistic concurrency: every update bumps it.
    version: int
    # The Prefect deployment that runs it (None until synced).
    deployment_id: UUID | None
    created_at: datetime
    updated_at: datetime


_EDITABLE = ("call_name", "description", "agent", "prompts")
# Named columns, not `*`: a column added by a later migration must not break the rows.
_COLUMNS = ", ".join(field.name for field in fields(TaskFlow))
_as_task_flow = class_row(TaskFlow)


class TaskFlowStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def _one(self, query: Any, params: Any) -> TaskFlow | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_task_flow)
            await cursor.execute(query, params)
            return await cursor.fetchone()

    async def list_task_flows(self) -> list[TaskFlow]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_task_flow)
            await cursor.execute(f"SELECT {_COLUMNS} FROM task_flows ORDER BY call_name")
            return await cursor.fetchall()

    async def find_task_flow(self, flow_id: int) -> TaskFlow | None:
        return await self._one(f"SELECT {_COLUMNS} FROM task_flows WHERE id = %s", (flow_id,))

    async def get_task_flow(self, flow_id: int) -> TaskFlow:
        row = await self.find_task_flow(flow_id)
        if row is None:
            raise NotFoundError(f"Task flow {flow_id} does not exist.")
        return row

    async def create_task_flow(
        self, *, call_name: str, agent: str, prompts: list[str], description: str = ""
    ) -> TaskFlow:
        try:
            row = await self._one(
                f"""
                INSERT INTO task_flows (call_name, description, agent, prompts)
                VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}
                """,
                (call_name, description, agent, Jsonb(prompts)),
            )
        except psycopg.errors.UniqueViolation:
            raise ConflictError(f"A task flow named {call_name!r} already exists.") from None
        assert row is not None
        return row

    async def update_task_flow(
        self, flow_id: int, changes: dict[str, Any], *, expected_version: int | None = None
    ) -> TaskFlow:
        """Apply a partial update in one statement; bump `version`.

        With `expected_version`, a write based on an older version is refused (409) instead
        of silently overwriting someone else's change.
        """
        unknown = set(changes) - set(_EDITABLE)
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        assignments = [
            sql.SQL("{} = {}").format(
                sql.Identifier(column),
                sql.Placeholder(column),
            )
            for column in changes
        ]
        params = {k: Jsonb(v) if k == "prompts" else v for k, v in changes.items()}
        params.update(id=flow_id, expected=expected_version)
        query = sql.SQL(
            """
            UPDATE task_flows
            SET {assignments}, version = version + 1, updated_at = now()
            WHERE id = %(id)s AND (%(expected)s::int IS NULL OR version = %(expected)s::int)
            RETURNING {columns}
            """
        ).format(
            assignments=sql.SQL(", ").join([*assignments, sql.SQL("id = id")]),
            columns=sql.SQL(_COLUMNS),
        )
        try:
            row = await self._one(query, params)
        except psycopg.errors.UniqueViolation:
            raise ConflictError(
                f"A task flow named {changes.get('call_name')!r} already exists."
            ) from None
        if row is None:
            current = await self.get_task_flow(flow_id)  # raises NotFoundError
            raise ConflictError(
                f"Task flow {flow_id} was changed by someone else (now version "
                f"{current.version}, you sent {expected_version}); reload it and try again."
            )
        return row

    async def delete_task_flow(self, flow_id: int) -> TaskFlow:
        """Delete a task flow; its executions stay (history is never lost by a delete)."""
        row = await self._one(
            f"DELETE FROM task_flows WHERE id = %s RETURNING {_COLUMNS}", (flow_id,)
        )
        if row is None:
            raise NotFoundError(f"Task flow {flow_id} does not exist.")
        return row

    async def set_deployment_id(self, flow_id: int, deployment_id: UUID | None) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE task_flows SET deployment_id = %s WHERE id = %s",
                (deployment_id, flow_id),
            )
