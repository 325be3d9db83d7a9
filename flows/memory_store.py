"""Reads and writes of `memories`: notes sent to the agent as a system message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from flows.database import Pool
from flows.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class Memory:
    """One row of `memories`."""

    id: int
    content: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, content, created_at, updated_at"
_as_memory = class_row(Memory)


class MemoryStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def _one(self, query: Any, params: Any) -> Memory | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_memory)
            await cursor.execute(query, params)
            return await cursor.fetchone()

    async def list_memories(self) -> list[Memory]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_memory)
            await cursor.execute(f"SELECT {_COLUMNS} FROM memories ORDER BY id")
            return await cursor.fetchall()

    async def get_memory(self, memory_id: int) -> Memory:
        row = await self._one(f"SELECT {_COLUMNS} FROM memories WHERE id = %s", (memory_id,))
        if row is None:
            raise NotFoundError(f"Memory {memory_id} does not exist.")
        return row

    async def create_memory(self, content: str) -> Memory:
        row = await self._one(
            f"INSERT INTO memories (content) VALUES (%s) RETURNING {_COLUMNS}", (content,)
        )
        assert row is not None
        return row

    async def update_memory(self, memory_id: int, content: str) -> Memory:
        row = await self._one(
            f"UPDATE memories SET content = %s, updated_at = now() WHERE id = %s"
            f" RETURNING {_COLUMNS}",
            (content, memory_id),
        )
        if row is None:
            raise NotFoundError(f"Memory {memory_id} does not exist.")
        return row

    async def delete_memory(self, memory_id: int) -> None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("DELETE FROM memories WHERE id = %s", (memory_id,))
        if cursor.rowcount == 0:
            raise NotFoundError(f"Memory {memory_id} does not exist.")

    async def memory_contents(self) -> list[str]:
        """Every memory's text, oldest first: what the agent is told before each prompt."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT content FROM memories ORDER BY id")
            return [row["content"] for row in await cursor.fetchall()]
