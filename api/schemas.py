"""Request and response bodies. JSON keys follow the seed (`call_name`, `prompts`, ...)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

# Ids are PostgreSQL BIGSERIALs; anything outside 1..2^63-1 cannot exist.
MAX_ID = 2**63 - 1
MAX_PROMPTS = 1000


def _no_control_characters(value: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters such as newlines or tabs")
    return value


# Prefect refuses these in deployment names, and a task flow's deployment is named after it.
_NOT_IN_NAMES = "/%&<>"


def _usable_as_deployment_name(value: str) -> str:
    if any(char in value for char in _NOT_IN_NAMES):
        raise ValueError("must not contain any of / % & < > (Prefect names cannot)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only spaces")
    return value


# The patterns repeat the validators in the OpenAPI spec, so a client (or a fuzzer) can
# tell from the spec alone what is accepted: no NUL or control characters, not blank.
_TEXT = r"^[^\x00]*\S[^\x00]*$"
_NAME = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_CALL_NAME = r"^[^\x00-\x1f\x7f/%&<>]*[^\s\x00-\x1f\x7f/%&<>][^\x00-\x1f\x7f/%&<>]*$"


def _no_nul(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL characters.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


CallName = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_CALL_NAME),
    AfterValidator(_no_control_characters),
    AfterValidator(_usable_as_deployment_name),
]
AgentName = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NAME),
    AfterValidator(_no_control_characters),
]
Description = Annotated[
    StrictStr, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$"), AfterValidator(_no_nul)
]
Prompt = Annotated[
    StrictStr,
    StringConstraints(max_length=200_000, pattern=_TEXT),
    AfterValidator(_not_blank),
    AfterValidator(_no_nul),
]
Prompts = Annotated[list[Prompt], Field(min_length=1, max_length=MAX_PROMPTS)]
Version = Annotated[int, Field(ge=1, le=2**31 - 1)]
MemoryContent = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100_000, pattern=_TEXT),
    AfterValidator(_no_nul),
]


class _Input(BaseModel):
    # A misspelt field ("promts") is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class TaskFlowIn(_Input):
    """A new task flow. `agent` defaults to the configured default agent."""

    call_name: CallName
    agent: AgentName | None = None
    description: Description = ""
    prompts: Prompts


class TaskFlowPut(TaskFlowIn):
    """A whole task flow, replacing the stored one; `version` guards against lost updates."""

    version: Version | None = None


class TaskFlowPatch(_Input):
    """Some fields of a task flow. Omitted fields keep their value; null is refused."""

    model_config = ConfigDict(
        extra="forbid",
        # At least one field to change (`version` alone changes nothing).
        json_schema_extra={
            "anyOf": [
                {"required": [name]} for name in ("call_name", "agent", "description", "prompts")
            ]
        },
    )

    # SkipJsonSchema: the spec says what the validator below enforces (no nulls).
    call_name: CallName | SkipJsonSchema[None] = None
    agent: AgentName | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    prompts: Prompts | SkipJsonSchema[None] = None
    version: Version | None = None

    @field_validator("call_name", "agent", "description", "prompts", mode="before")
    @classmethod
    def _refuse_null(cls, value: object) -> object:
        # Only explicit values reach here: an omitted field is left alone, a null refused.
        if value is None:
            raise ValueError("must not be null (leave it out to keep its value)")
        return value


class TaskFlowOut(BaseModel):
    # Built from the store's rows (dataclasses).
    model_config = ConfigDict(from_attributes=True)

    id: int
    call_name: str
    description: str
    agent: str
    prompts: list[str]
    version: int
    deployment_id: UUID | None
    created_at: datetime
    updated_at: datetime


class MemoryIn(_Input):
    content: MemoryContent


class MemoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    content: str
    created_at: datetime
    updated_at: datetime


class PartialResponse(BaseModel):
    index: int = Field(description="The prompt being answered (0-based)")
    attempt: int
    offset: int = Field(description="Characters of the answer before `text` (0 normally)")
    text: str


class ExecutionCore(BaseModel):
    """The fields of an execution that every view of it carries (the API and the stream)."""

    id: int
    flow_id: int | None = Field(description="The task flow; null for a scheduled prompt's run")
    status: str = Field(description="queued, running, completed, failed or cancelled")
    current_prompt_index: int = Field(description="0-based index of the prompt being run")
    total_prompts: int
    started_at: datetime
    completed_at: datetime | None
    error: str | None
    flow_run_id: UUID | None
    call_name: str
    agent: str
    trigger: str
    retry_of: int | None
    scheduled_prompt_id: int | None = Field(
        default=None, description="The scheduled prompt this run sent, if it was one"
    )
    attempts: int = Field(default=0, description="How many times this execution was started")
    worker_name: str | None = Field(default=None, description="The worker running it")
    queued_at: datetime
    updated_at: datetime
    prefect_url: str | None = Field(description="The flow run in the Prefect UI")


class ExecutionOut(ExecutionCore):
    """One run of a task flow, as mirrored in `flow_executions`."""

    prompts: list[str]
    prompt_results: list[dict[str, Any]]
    partial_response: PartialResponse | None = Field(
        default=None,
        description="GET /api/executions/{id} only: the answer to the prompt in flight, as "
        "far as the agent has written it (not stored; the final response replaces it)",
    )


class RunIn(_Input):
    """The optional body of `POST /api/task_flows/{id}/run`."""

    trigger: Literal["api", "cli"] = Field(
        default="api", description="What started the run, recorded on the execution"
    )


class RunOut(BaseModel):
    ok: Literal[True] = True
    execution_id: int
    flow_id: int
    flow_run_id: UUID | None
    status: str


class RetryOut(RunOut):
    retry_of: int


class Deleted(BaseModel):
    ok: Literal[True] = True
    id: int


class AgentsOut(BaseModel):
    """The agent names as strings (the old system's shape) and the default agent."""

    agents: list[str] = Field(description="Agent names, as `GET /v1/models` lists them")
    default: str = Field(description="The agent a task flow gets when it names none")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description='"ok" when everything a run needs is ready (the old system\'s key)'
    )
    ok: bool
    database: str
    prefect: str
    worker: str


class ErrorOut(BaseModel):
    """The body of every error response."""

    ok: Literal[False] = False
    error: str = Field(description="What went wrong, in one sentence")
    detail: list[dict[str, str]] = Field(
        default_factory=list, description="Per-field problems: field, message, type"
    )


def _cron(value: str) -> str:
    from deployments.schedules import check_cron

    return check_cron(value)


def _timezone(value: str) -> str:
    from deployments.schedules import check_timezone

    return check_timezone(value)


class ScheduleIn(_Input):
    """A task flow's cron schedule (5 fields: minute hour day-of-month month day-of-week)."""

    cron: Annotated[StrictStr, StringConstraints(max_length=200), AfterValidator(_cron)] = Field(
        examples=["0 9 * * 1-5"]
    )
    timezone: Annotated[StrictStr, StringConstraints(max_length=100), AfterValidator(_timezone)] = (
        Field(default="UTC", examples=["Europe/Berlin"])
    )
    enabled: bool = True


class ScheduleOut(BaseModel):
    """The schedule as Prefect has it (edits made in the Prefect UI included)."""

    flow_id: int
    call_name: str
    kind: str = Field(description="cron; interval or rrule when set so in the Prefect UI")
    cron: str | None
    interval_seconds: float | None = None
    rrule: str | None = None
    timezone: str
    enabled: bool = Field(description="The schedule is active in Prefect")
    paused: bool = Field(description="The deployment is paused in Prefect, so nothing fires")
    next_runs: list[datetime] = Field(
        description="The next times it fires, in its time zone (empty when disabled or paused)"
    )
    other_schedules: int = Field(
        default=0, description="More schedules added in the Prefect UI (PUT replaces them all)"
    )
    deployment_id: UUID
    schedule_id: UUID
    prefect_url: str = Field(description="The deployment in the Prefect UI")


def _webhook_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL, such as https://hooks.example/alert")
    return value.strip()


AlertEvent = Literal["failed", "cancelled", "late"]


class AlertIn(_Input):
    """Post to `webhook_url` when a run (of the task flow, or any run) fails, is cancelled,
    or is late (a scheduled run that has not started on time)."""

    webhook_url: Annotated[
        StrictStr, StringConstraints(max_length=2000), AfterValidator(_webhook_url)
    ] = Field(examples=["https://hooks.slack.com/services/T000/B000/XXXX"])
    on: list[AlertEvent] = Field(default=["failed"], min_length=1, max_length=3)
    enabled: bool = True

    @field_validator("on")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class AllRunsAlertOut(BaseModel):
    """The alert for every run, as Prefect has it (edits made in the Prefect UI included)."""

    webhook_url: str
    on: list[str]
    enabled: bool
    automation_id: UUID
    automation_name: str
    prefect_url: str = Field(description="The automation in the Prefect UI")


class AlertOut(AllRunsAlertOut):
    """A task flow's alert, as Prefect has it (edits made in the Prefect UI included)."""

    flow_id: int
    call_name: str


class AlertRemoved(BaseModel):
    ok: Literal[True] = True
    removed: bool = Field(description="False when there was no alert to remove")
