"""Reads and writes of `memories`: notes sent to the agent as a system message."""

from __future__ import annotations

from typing import Any

from flows.database import Pool
from flows.errors import NotFoundError

Memory = dict[str, Any]


class MemoryStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list_memories(self) -> list[Memory]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM memories ORDER BY id")
            return await cursor.fetchall()

    async def get_memory(self, memory_id: int) -> Memory:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("SELECT * FROM memories WHERE id = %s", (memory_id,))
            row = await cursor.fetchone()
        if row is None:
            raise NotFoundError(f"Memory {memory_id} does not exist.")
        return row

    async def create_memory(self, content: str) -> Memory:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO memories (content) VALUES (%s) RETURNING *", (content,)
            )
            row = await cursor.fetchone()
        assert row is not None
        return row

    async def update_memory(self, memory_id: int, content: str) -> Memory:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "UPDATE memories SET content = %s, updated_at = now() WHERE id = %s RETURNING *",
                (content, memory_id),
            )
            row = await cursor.fetchone()
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
