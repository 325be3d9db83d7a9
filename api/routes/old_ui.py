"""`GET /api/executions/refresh`: what the old system's UI polls every two seconds.

The old server answered `{"active": [...], "recent": [...]}` from an in-memory cache (which
lied after a restart). This answers the same shape from the table, like `/active` and
`/recent`: the active executions (queued and running) oldest first, then the 20 newest
that are not active, each a full execution (`call_name`, `agent`, `prompts`,
`prompt_results`, ...). PostgreSQL builds the JSON in one statement (one snapshot).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.deps import ExecutionStoreDep, SettingsDep
from api.params import error_responses
from api.schemas import ExecutionOut

router = APIRouter(prefix="/api/executions", tags=["executions"], responses=error_responses(503))

RECENT = 20  # what the old server sent


class RefreshOut(BaseModel):
    active: list[ExecutionOut] = Field(description="Queued and running executions, oldest first")
    recent: list[ExecutionOut] = Field(
        description=f"The {RECENT} newest executions that are not active, newest first"
    )


# Registered before the executions router: `/api/executions/{execution_id}` would match it.
@router.get("/refresh", response_model=RefreshOut)
async def refresh_executions(executions: ExecutionStoreDep, settings: SettingsDep) -> Response:
    """Active executions and the recent history in one answer (the old UI's poll)."""
    body = await executions.refresh_json(
        prefect_ui_url=settings.resolved_prefect_ui_url(), recent=RECENT
    )
    return Response(content=body, media_type="application/json")
