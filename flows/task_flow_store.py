"""Reads and writes of `task_flows`: the named, ordered lists of prompts users run."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg.errors
from psycopg import sql
from psycopg.types.json import Jsonb

from flows.database import Pool
from flows.errors import ConflictError, NotFoundError

TaskFlow = dict[str, Any]
_EDITABLE = ("call_name", "description", "agent", "prompts")


class TaskFlowStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list_task_flows(self) -> list[TaskFlow]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM task_flows ORDER BY call_name")
            return await cursor.fetchall()

    async def find_task_flow(self, flow_id: int) -> TaskFlow | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM task_flows WHERE id = %s", (flow_id,))
            return await cursor.fetchone()

    async def get_task_flow(self, flow_id: int) -> TaskFlow:
        row = await self.find_task_flow(flow_id)
        if row is None:
            raise NotFoundError(f"Task flow {flow_id} does not exist.")
        return row

    async def create_task_flow(
        self, *, call_name: str, agent: str, prompts: list[str], description: str = ""
    ) -> TaskFlow:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(
                    """
                    INSERT INTO task_flows (call_name, description, agent, prompts)
                    VALUES (%s, %s, %s, %s) RETURNING *
                    """,
                    (call_name, description, agent, Jsonb(prompts)),
                )
                row = await cursor.fetchone()
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
            RETURNING *
            """
        ).format(assignments=sql.SQL(", ").join([*assignments, sql.SQL("id = id")]))
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                row = await cursor.fetchone()
        except psycopg.errors.UniqueViolation:
            raise ConflictError(
                f"A task flow named {changes.get('call_name')!r} already exists."
            ) from None
        if row is None:
            current = await self.get_task_flow(flow_id)  # raises NotFoundError
            raise ConflictError(
                f"Task flow {flow_id} was changed by someone else (now version "
                f"{current['version']}, you sent {expected_version}); reload it and try again."
            )
        return row

    async def delete_task_flow(self, flow_id: int) -> TaskFlow:
        """Delete a task flow; its executions stay (history is never lost by a delete)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM task_flows WHERE id = %s RETURNING *", (flow_id,)
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"Task flow {flow_id} does not exist.")
        return row

    async def set_deployment_id(self, flow_id: int, deployment_id: UUID | None) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE task_flows SET deployment_id = %s WHERE id = %s",
                (deployment_id, flow_id),
            )
