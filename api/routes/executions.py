"""Executions: the runs of task flows as mirrored in `flow_executions`.

The seed's shapes are kept: `active` and `recent` answer a JSON array of executions,
`/{id}` the execution object. Each carries a `prefect_url` to its flow run.

These are the hottest reads (every open page polls or reloads them), so PostgreSQL builds
the JSON and the bytes are sent as they are (`ExecutionStore.*_json`): no model per row,
no second validation. `response_model` still tells the OpenAPI document what they are.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import ResourcesDep
from api.live.summary import ExecutionSummary
from api.params import ExecutionId, error_responses
from api.resources import Resources
from api.schemas import MAX_ID, ExecutionOut
from flows.errors import NotFoundError
from flows.execution_store import ExecutionStore
from flows.settings import Settings

router = APIRouter(
    prefix="/api/executions", tags=["executions"], responses=error_responses(404, 422, 503)
)

Limit = Annotated[int, Query(ge=1, le=500, description="How many executions, 1..500")]
BeforeId = Annotated[
    int | None, Query(ge=1, le=MAX_ID, description="Only executions older than this id")
]
WithResults = Annotated[
    bool,
    Query(
        description="false: summaries (no `prompts` or `prompt_results`; `results_count`, "
        "`current_prompt` and `last_result` cut to 2,000 characters) for light lists"
    ),
]


def _json(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


async def execution_response(
    executions: ExecutionStore,
    execution_id: int,
    settings: Settings,
    partial: dict[str, object] | None = None,
) -> Response:
    """The execution object of `execution_id` as a response; 404 when there is none."""
    return _json(await _execution_bytes(executions, execution_id, settings, partial))


async def _execution_bytes(
    executions: ExecutionStore,
    execution_id: int,
    settings: Settings,
    partial: dict[str, object] | None,
) -> bytes:
    """The execution object as JSON; NotFoundError when there is none.

    `partial` (the answer being written, from the live feed) is shown only while running.
    """
    body, status = await _stored_execution(executions, execution_id, settings)
    return with_partial(body, status, partial)


async def _stored_execution(
    executions: ExecutionStore, execution_id: int, settings: Settings
) -> tuple[bytes, str]:
    """The execution object as stored (`partial_response` null) and its status."""
    found = await executions.execution_json(
        execution_id, prefect_ui_url=settings.resolved_prefect_ui_url()
    )
    if found is None:
        raise NotFoundError(f"Execution {execution_id} does not exist.")
    return found


def with_partial(body: bytes, status: str, partial: dict[str, object] | None) -> bytes:
    """`body` with the text being written as `partial_response`, shown only while running."""
    if partial is None or status != "running":
        return body
    # The object PostgreSQL built ends with `"partial_response" : null}`: swap the null.
    assert body.endswith(b"null}")
    return body[: -len(b"null}")] + json.dumps(partial, separators=(",", ":")).encode() + b"}"


# The bodies of the three hot reads, shared by the routes below (which FastAPI validates and
# documents) and by `api.hot_reads`, which answers the common, plainly valid requests for
# them without FastAPI's routing and dependency resolution, from its cache when it can
# (`api.read_cache`). The routes always read the tables.


async def active_body(resources: Resources) -> bytes:
    """Queued and running executions, oldest first, as a JSON array."""
    return await ExecutionStore(resources.pool).active_json(
        prefect_ui_url=resources.settings.resolved_prefect_ui_url()
    )


async def recent_body(
    resources: Resources, *, limit: int, before_id: int | None, results: bool
) -> bytes:
    """The newest executions first (full, or summaries with `results=False`)."""
    return await ExecutionStore(resources.pool).recent_json(
        prefect_ui_url=resources.settings.resolved_prefect_ui_url(),
        limit=limit,
        before_id=before_id,
        results=results,
    )


async def execution_body(resources: Resources, execution_id: int) -> bytes:
    """One execution with its live `partial_response`; NotFoundError when there is none."""
    partial = resources.live.partial_of(execution_id)
    executions = ExecutionStore(resources.pool)
    return await _execution_bytes(executions, execution_id, resources.settings, partial)


async def stored_execution(resources: Resources, execution_id: int) -> tuple[bytes, str]:
    """One execution as stored, `partial_response` null, and its status (for `with_partial`);
    NotFoundError when there is none. What `api.read_cache` keeps for `/{id}`."""
    return await _stored_execution(ExecutionStore(resources.pool), execution_id, resources.settings)


# /active and /recent come before /{execution_id}, which would otherwise match them.
@router.get("/active", response_model=list[ExecutionOut])
async def list_active_executions(resources: ResourcesDep) -> Response:
    """Queued and running executions, oldest first."""
    return _json(await active_body(resources))


@router.get("/recent", response_model=list[ExecutionOut] | list[ExecutionSummary])
async def list_recent_executions(
    resources: ResourcesDep,
    limit: Limit = 20,
    before_id: BeforeId = None,
    results: WithResults = True,
) -> Response:
    """The newest executions first; pass the last id as `before_id` for the next page.

    `results=false` answers summaries (the shape of the live stream's events): a history
    list needs no answers until one execution is opened with `GET /api/executions/{id}`.
    """
    return _json(await recent_body(resources, limit=limit, before_id=before_id, results=results))


@router.get("/{execution_id}", response_model=ExecutionOut)
async def read_execution(execution_id: ExecutionId, resources: ResourcesDep) -> Response:
    """One execution; while a prompt is being answered, `partial_response` has the text
    the agent has written so far."""
    return _json(await execution_body(resources, execution_id))
