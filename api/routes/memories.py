"""Memories: notes the agent is told (as one system message) before every prompt."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import MemoryStoreDep
from api.params import MemoryId, error_responses
from api.schemas import Deleted, MemoryIn, MemoryOut

router = APIRouter(
    prefix="/api/memories",
    tags=["memories"],
    responses=error_responses(401, 404, 422, 503),
)


@router.get("")
async def list_memories(memories: MemoryStoreDep) -> list[MemoryOut]:
    """Every memory, oldest first (the order the agent reads them)."""
    return [MemoryOut.model_validate(row) for row in await memories.list_memories()]


@router.post("", status_code=201)
async def create_memory(body: MemoryIn, memories: MemoryStoreDep, response: Response) -> MemoryOut:
    memory = await memories.create_memory(body.content)
    response.headers["Location"] = f"{router.prefix}/{memory.id}"
    return MemoryOut.model_validate(memory)


@router.get("/{memory_id}")
async def read_memory(memory_id: MemoryId, memories: MemoryStoreDep) -> MemoryOut:
    return MemoryOut.model_validate(await memories.get_memory(memory_id))


@router.put("/{memory_id}")
async def replace_memory(
    memory_id: MemoryId, body: MemoryIn, memories: MemoryStoreDep
) -> MemoryOut:
    return MemoryOut.model_validate(await memories.update_memory(memory_id, body.content))


@router.delete("/{memory_id}")
async def delete_memory(memory_id: MemoryId, memories: MemoryStoreDep) -> Deleted:
    await memories.delete_memory(memory_id)
    return Deleted(id=memory_id)
