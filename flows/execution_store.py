"""The execution store: every read and write of `flow_executions` and its results, in one place.

The seed's six functions (`create_execution`, `get_execution`, `list_active_executions`,
`list_recent_executions`, `update_execution_progress`, `complete_execution`) plus the few the
Prefect life cycle needs. Each write is one statement (or one transaction), so progress is
never lost or duplicated by a read-modify-write race.

Rows come back as `Execution` dataclasses built by the driver (`class_row`), so a type checker
sees every field a caller reads. Prompt results are rows of their own (`execution_results`,
one per ended attempt): appending one costs the same at prompt 200 as at prompt 1.

The hot reads of the API (`active_json`, `recent_json`, `execution_json`) have PostgreSQL
build the JSON answer itself: the bytes go to the client as they are, without a Python
object per row in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, tuple_row
from psycopg.types.json import Jsonb

from flows.database import Pool
from flows.errors import ConflictError
from flows.retrying import Backoff

ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("completed", "failed", "cancelled")
# Long texts in summaries are cut to this many characters; the full execution has them all.
PREVIEW_CHARS = 2000


# One prompt's progress in ONE statement: the result as a row of its own and the
# execution's index moved (`update_execution_progress`; the bench's baseline runs it too).
STORE_PROMPT_RESULT = """
    WITH moved AS (
        UPDATE flow_executions
        SET current_prompt_index = GREATEST(current_prompt_index, %(next)s),
            updated_at = now()
        WHERE id = %(id)s AND status = 'running'
        RETURNING id
    )
    INSERT INTO execution_results (execution_id, prompt_index, success, started_at, item)
    SELECT moved.id, %(index)s, %(success)s, %(started_at)s::timestamptz, %(result)s
    FROM moved
    ON CONFLICT (execution_id, prompt_index, started_at) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Execution:
    """One row of `flow_executions` (its results are read apart: `list_results`)."""

    id: int
    flow_id: int | None  # None: a scheduled prompt's run (see scheduled_prompt_id)
    status: str
    current_prompt_index: int
    total_prompts: int
    started_at: datetime
    completed_at: datetime | None
    error: str | None
    flow_run_id: UUID | None
    call_name: str
    agent: str
    prompts: list[str]
    trigger: str
    retry_of: int | None
    idempotency_key: str | None
    worker_name: str | None
    heartbeat_at: datetime | None
    attempts: int
    queued_at: datetime
    updated_at: datetime
    scheduled_prompt_id: int | None

    @property
    def ended(self) -> bool:
        return self.status in FINAL_STATUSES


# Named columns, not `*`: a column added by a later migration must not break the rows.
_COLUMNS = ", ".join(field.name for field in fields(Execution))
_E_COLUMNS = ", ".join(f"e.{field.name}" for field in fields(Execution))
_as_execution = class_row(Execution)

# The execution object of the API, built by PostgreSQL (the keys of `api.schemas.ExecutionOut`).
# `%(ui)s` is the Prefect UI's base URL; `prefect_url` stays null without a flow run.
_EXECUTION_FIELDS = """
    'id', e.id, 'flow_id', e.flow_id, 'status', e.status,
    'current_prompt_index', e.current_prompt_index, 'total_prompts', e.total_prompts,
    'started_at', e.started_at, 'completed_at', e.completed_at, 'error', e.error,
    'flow_run_id', e.flow_run_id, 'call_name', e.call_name, 'agent', e.agent,
    'trigger', e.trigger, 'retry_of', e.retry_of, 'attempts', e.attempts,
    'worker_name', e.worker_name, 'queued_at', e.queued_at, 'updated_at', e.updated_at,
    'scheduled_prompt_id', e.scheduled_prompt_id,
    'prefect_url', %(ui)s::text || '/runs/flow-run/' || e.flow_run_id
"""
# (`prefect_url` is `flows.prefect_links.flow_run_url`, written in SQL.)
_FULL_OBJECT = f"""
    json_build_object({_EXECUTION_FIELDS},
        'prompts', e.prompts,
        'prompt_results', COALESCE(
            (SELECT json_agg(r.item ORDER BY r.prompt_index, r.id)
             FROM execution_results AS r WHERE r.execution_id = e.id),
            '[]'::json),
        'partial_response', NULL)
"""
# The light form for lists (`?results=false`) and the live stream: no prompts or results,
# which grow with every prompt; how many results there are and the last one, cut short.
_SUMMARY_OBJECT = f"""
    json_build_object({_EXECUTION_FIELDS},
        'current_prompt', left(e.prompts ->> e.current_prompt_index, %(preview)s),
        'results_count',
            (SELECT count(*) FROM execution_results AS r WHERE r.execution_id = e.id),
        'last_result',
            (SELECT execution_result_preview(r.item, %(preview)s) FROM execution_results AS r
             WHERE r.execution_id = e.id ORDER BY r.prompt_index DESC, r.id DESC LIMIT 1))
"""


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """An execution's summary as the live view sends it (`api.live.ExecutionSummary`),
    encoded by PostgreSQL, with the fields the live feed itself reads."""

    id: int
    status: str
    results_count: int
    json: str


_as_summary_row = class_row(SummaryRow)


class Claim(Enum):
    """What `ExecutionStore.claim_queued` found."""

    CLAIMED = "claimed"  # this worker holds the queued execution now
    TAKEN = "taken"  # another live worker claimed it first
    # No queued execution for the flow run: a run started in the Prefect UI or by a
    # schedule (the flow body creates its execution), or a retry of an ended one.
    NO_QUEUED_EXECUTION = "no queued execution"


class ExecutionStore:
    """Reads and writes `flow_executions` through a shared connection pool."""

    def __init__(self, pool: Pool, *, backoff: Backoff | None = None) -> None:
        self._pool = pool
        # Writes made by a running flow are repeatable, so they ride out a database restart.
        self._backoff = backoff or Backoff()

    async def _one(self, query: str, params: Any) -> Execution | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_execution)
            await cursor.execute(query, params)
            return await cursor.fetchone()

    async def _all(self, query: str, params: Any = None) -> list[Execution]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_execution)
            await cursor.execute(query, params)
            return await cursor.fetchall()

    async def _write(self, what: str, query: str, params: Any) -> int:
        """Run one repeatable write, retried through a lost connection; return rowcount."""

        async def attempt() -> int:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return cursor.rowcount

        return await self._backoff.run(attempt, what=what)

    async def _write_returning(self, what: str, query: str, params: Any) -> Execution | None:
        return await self._backoff.run(lambda: self._one(query, params), what=what)

    async def _json(self, query: str, params: Any) -> bytes | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(query, params)
            row = await cursor.fetchone()
        return None if row is None else row[0].encode()

    # -- the one place an execution is born ---------------------------------------------

    async def create_execution(
        self,
        *,
        flow_id: int | None,
        call_name: str,
        agent: str,
        prompts: list[str],
        trigger: str = "api",
        status: str = "queued",
        flow_run_id: UUID | None = None,
        retry_of: int | None = None,
        idempotency_key: str | None = None,
        scheduled_prompt_id: int | None = None,
    ) -> tuple[Execution, bool]:
        """Start tracking a run; return `(execution, created)`.

        Every execution is created here: a run from the API or the CLI, a run Prefect
        started on its own (a schedule, the Prefect UI), a retry. The prompts, agent and
        name are copied in, so editing the task flow later changes neither this run nor its
        history. With `retry_of`, the results that succeeded in that execution are copied
        over in the same transaction and the new one starts at its first unfinished prompt.
        With an `idempotency_key` already used for this task flow, the existing execution
        comes back with `created=False`.
        """
        if not prompts:
            # Only a task flow adopted from the old system can be empty (ours need prompts).
            raise ConflictError(
                f"Task flow {call_name!r} has no prompts; add at least one before running it."
            )
        async with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=_as_execution)
            await cursor.execute(
                f"""
                INSERT INTO flow_executions
                    (flow_id, status, total_prompts, call_name, agent, prompts, trigger,
                     flow_run_id, retry_of, idempotency_key, current_prompt_index,
                     scheduled_prompt_id)
                VALUES (%(flow_id)s, %(status)s, %(total)s, %(call_name)s, %(agent)s,
                        %(prompts)s, %(trigger)s, %(flow_run_id)s, %(retry_of)s,
                        %(key)s,
                        (SELECT count(*) FROM execution_results
                         WHERE execution_id = %(retry_of)s AND success),
                        %(scheduled_prompt_id)s)
                ON CONFLICT (flow_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO NOTHING
                RETURNING {_COLUMNS}
                """,
                {
                    "flow_id": flow_id,
                    "status": status,
                    "total": len(prompts),
                    "call_name": call_name,
                    "agent": agent,
                    "prompts": Jsonb(prompts),
                    "trigger": trigger,
                    "flow_run_id": flow_run_id,
                    "retry_of": retry_of,
                    "key": idempotency_key,
                    "scheduled_prompt_id": scheduled_prompt_id,
                },
            )
            created = await cursor.fetchone()
            if created is not None:
                if retry_of is not None:
                    await conn.execute(
                        """
                        INSERT INTO execution_results
                            (execution_id, prompt_index, success, started_at, item)
                        SELECT %s, prompt_index, success, started_at, item
                        FROM execution_results WHERE execution_id = %s AND success
                        ORDER BY prompt_index, id
                        """,
                        (created.id, retry_of),
                    )
                return created, True
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM flow_executions"
                " WHERE flow_id = %s AND idempotency_key = %s",
                (flow_id, idempotency_key),
            )
            existing = await cursor.fetchone()
            assert existing is not None, "an insert that conflicted must find its twin"
            return existing, False

    # -- reads ----------------------------------------------------------------------------

    async def get_execution(self, execution_id: int) -> Execution | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM flow_executions WHERE id = %s", (execution_id,)
        )

    async def get_execution_by_flow_run(self, flow_run_id: UUID) -> Execution | None:
        return await self._one(
            f"SELECT {_COLUMNS} FROM flow_executions WHERE flow_run_id = %s", (flow_run_id,)
        )

    async def list_results(self, execution_id: int) -> list[dict[str, Any]]:
        """The execution's `prompt_results`: one item per ended attempt, in prompt order."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(
                "SELECT item FROM execution_results WHERE execution_id = %s"
                " ORDER BY prompt_index, id",
                (execution_id,),
            )
            return [row[0] for row in await cursor.fetchall()]

    async def list_active_executions(self) -> list[Execution]:
        """Queued and running executions, oldest first (the order they were started)."""
        return await self._all(
            f"SELECT {_COLUMNS} FROM flow_executions"
            " WHERE status IN ('queued', 'running') ORDER BY id"
        )

    async def list_recent_executions(
        self, limit: int = 20, *, before_id: int | None = None
    ) -> list[Execution]:
        """The newest executions first; `before_id` pages further back."""
        return await self._all(
            f"""
            SELECT {_COLUMNS} FROM flow_executions
            WHERE %(before)s::bigint IS NULL OR id < %(before)s::bigint
            ORDER BY id DESC LIMIT %(limit)s
            """,
            {"before": before_id, "limit": limit},
        )

    async def list_expired_leases(self, expiry_s: float) -> list[Execution]:
        """Running executions whose worker has not renewed the lease within `expiry_s`."""
        return await self._all(
            f"""
            SELECT {_COLUMNS} FROM flow_executions
            WHERE status = 'running'
              AND COALESCE(heartbeat_at, started_at) < now() - make_interval(secs => %s)
            ORDER BY id
            """,
            (expiry_s,),
        )

    # -- the API's answers, as JSON built by PostgreSQL ----------------------------------

    async def active_json(self, *, prefect_ui_url: str) -> bytes:
        """`GET /api/executions/active`: a JSON array of full executions, oldest first."""
        body = await self._json(
            f"""
            SELECT COALESCE(json_agg({_FULL_OBJECT} ORDER BY e.id), '[]'::json)::text
            FROM flow_executions AS e WHERE e.status IN ('queued', 'running')
            """,
            {"ui": prefect_ui_url},
        )
        assert body is not None
        return body

    async def recent_json(
        self,
        *,
        prefect_ui_url: str,
        limit: int = 20,
        before_id: int | None = None,
        results: bool = True,
    ) -> bytes:
        """`GET /api/executions/recent`: the newest first, full or as summaries."""
        body = await self._json(
            f"""
            SELECT COALESCE(json_agg({_FULL_OBJECT if results else _SUMMARY_OBJECT}
                                     ORDER BY e.id DESC), '[]'::json)::text
            FROM (SELECT {_COLUMNS} FROM flow_executions
                  WHERE %(before)s::bigint IS NULL OR id < %(before)s::bigint
                  ORDER BY id DESC LIMIT %(limit)s) AS e
            """,
            {
                "ui": prefect_ui_url,
                "before": before_id,
                "limit": limit,
                "preview": PREVIEW_CHARS,
            },
        )
        assert body is not None
        return body

    async def summaries(
        self, ids: Iterable[int], *, with_active: bool, prefect_ui_url: str
    ) -> list[SummaryRow]:
        """The summaries of the executions `ids` (and of every active one with
        `with_active`), oldest first: what the live stream sends. One query for any number."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=_as_summary_row)
            await cursor.execute(
                f"""
                SELECT e.id, e.status,
                       (SELECT count(*) FROM execution_results AS r
                        WHERE r.execution_id = e.id)::int AS results_count,
                       {_SUMMARY_OBJECT}::text AS json
                FROM flow_executions AS e
                WHERE e.id = ANY(%(ids)s)
                   OR (%(with_active)s AND e.status IN ('queued', 'running'))
                ORDER BY e.id
                """,
                {
                    "ids": sorted(set(ids)),
                    "with_active": with_active,
                    "ui": prefect_ui_url,
                    "preview": PREVIEW_CHARS,
                },
            )
            return await cursor.fetchall()

    async def refresh_json(self, *, prefect_ui_url: str, recent: int = 20) -> bytes:
        """`GET /api/executions/refresh` (the old UI's poll): `{"active": [...], "recent":
        [...]}`, the active executions oldest first and the `recent` newest others, full.
        One statement, so one snapshot: no execution is in both lists or in neither."""
        body = await self._json(
            f"""
            SELECT json_build_object(
                'active', (SELECT COALESCE(json_agg({_FULL_OBJECT} ORDER BY e.id), '[]'::json)
                           FROM flow_executions AS e
                           WHERE e.status IN ('queued', 'running')),
                'recent', (SELECT COALESCE(json_agg({_FULL_OBJECT} ORDER BY e.id DESC),
                                           '[]'::json)
                           FROM (SELECT {_COLUMNS} FROM flow_executions
                                 WHERE status NOT IN ('queued', 'running')
                                 ORDER BY id DESC LIMIT %(limit)s) AS e)
            )::text
            """,
            {"ui": prefect_ui_url, "limit": recent},
        )
        assert body is not None
        return body

    async def execution_json(
        self, execution_id: int, *, prefect_ui_url: str
    ) -> tuple[bytes, str] | None:
        """`GET /api/executions/{id}`: the execution object and its status; None if unknown."""
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(
                f"SELECT {_FULL_OBJECT}::text, e.status FROM flow_executions AS e"
                " WHERE e.id = %(id)s",
                {"ui": prefect_ui_url, "id": execution_id},
            )
            row = await cursor.fetchone()
        return None if row is None else (row[0].encode(), row[1])

    # -- the life cycle -------------------------------------------------------------------

    async def set_flow_run(self, execution_id: int, flow_run_id: UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE flow_executions SET flow_run_id = %s, updated_at = now() WHERE id = %s",
                (flow_run_id, execution_id),
            )

    async def claim_queued(
        self, flow_run_id: UUID, *, worker_name: str, lease_expiry_s: float
    ) -> Claim:
        """Take the queued execution of `flow_run_id` for `worker_name`, before its flow run
        starts; the answer says whether this worker got it.

        The claim is the row's `worker_name` and `heartbeat_at` (no `updated_at`: nothing a
        user sees changed, so no NOTIFY). A claim whose holder went quiet for longer than
        `lease_expiry_s` (it died between claiming and starting) can be taken over.
        Concurrent claims queue on the row lock and re-check the condition, so exactly one
        worker gets it.
        """
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(
                """
                WITH claimed AS (
                    UPDATE flow_executions
                    SET worker_name = %(worker)s, heartbeat_at = now()
                    WHERE flow_run_id = %(flow_run_id)s AND status = 'queued'
                      AND (worker_name IS NULL OR worker_name = %(worker)s
                           OR heartbeat_at IS NULL
                           OR heartbeat_at < now() - make_interval(secs => %(expiry)s))
                    RETURNING id
                )
                SELECT EXISTS (SELECT FROM claimed),
                       EXISTS (SELECT FROM flow_executions
                               WHERE flow_run_id = %(flow_run_id)s AND status = 'queued')
                """,
                {"flow_run_id": flow_run_id, "worker": worker_name, "expiry": lease_expiry_s},
            )
            row = await cursor.fetchone()
        claimed, queued = row if row is not None else (False, False)
        if claimed:
            return Claim.CLAIMED
        return Claim.TAKEN if queued else Claim.NO_QUEUED_EXECUTION

    async def start_execution(
        self, execution_id: int, *, flow_run_id: UUID | None, worker_name: str | None
    ) -> Execution | None:
        """Move an execution to running and take its lease; None when it must not run.

        A queued execution starts. A failed or cancelled one is resumed in place (Prefect's
        "Retry" on its flow run): the failed prompts' results are dropped, the successful
        ones stay and are not sent again. A completed one never runs twice.
        """
        return await self._write_returning(
            "start execution",
            f"""
            WITH target AS (
                SELECT id, status FROM flow_executions
                WHERE id = %(id)s AND status IN ('queued', 'failed', 'cancelled')
                FOR UPDATE
            ), dropped AS (
                DELETE FROM execution_results AS r USING target AS t
                WHERE r.execution_id = t.id AND t.status <> 'queued' AND NOT r.success
            )
            UPDATE flow_executions AS e
            SET status = 'running', started_at = now(), updated_at = now(),
                completed_at = NULL, error = NULL, attempts = e.attempts + 1,
                flow_run_id = COALESCE(e.flow_run_id, %(flow_run_id)s),
                worker_name = %(worker)s, heartbeat_at = now(),
                current_prompt_index = CASE WHEN t.status = 'queued' THEN e.current_prompt_index
                    ELSE (SELECT count(*) FROM execution_results AS r
                          WHERE r.execution_id = e.id AND r.success)
                    END
            FROM target AS t
            WHERE e.id = t.id
            RETURNING {_E_COLUMNS}
            """,
            {"id": execution_id, "flow_run_id": flow_run_id, "worker": worker_name},
        )

    async def renew_leases(self, execution_ids: list[int], worker_name: str) -> None:
        """Tell the reconciler these executions' worker is alive (no NOTIFY: see 002)."""
        if not execution_ids:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                """
                UPDATE flow_executions SET heartbeat_at = now()
                WHERE id = ANY(%s) AND status = 'running' AND worker_name = %s
                """,
                (execution_ids, worker_name),
            )

    async def update_execution_progress(
        self, execution_id: int, prompt_index: int, prompt_result: dict[str, Any]
    ) -> bool:
        """Store one prompt's result and move the progress index, in ONE statement.

        The result is a row of its own (the write costs the same whatever came before);
        the execution's index and `updated_at` move in the same transaction, and its
        trigger's NOTIFY goes out when both are visible. After prompt k is attempted the
        index is k+1, whether it succeeded or failed (the prompts attempted, as the old
        runner counted them); what succeeded is read from the results. Returns False when
        the execution is no longer running.
        """
        next_index = prompt_index + 1
        # Repeating this write (after a lost connection) must not store the result twice:
        # the same prompt attempt is recognised by its index and start time.
        rowcount = await self._write(
            "store prompt result",
            STORE_PROMPT_RESULT,
            {
                "id": execution_id,
                "next": next_index,
                "index": prompt_index,
                "success": bool(prompt_result.get("success")),
                "started_at": prompt_result.get("started_at"),
                "result": Jsonb(prompt_result),
            },
        )
        return rowcount == 1

    async def complete_execution(
        self, execution_id: int, status: str, error: str | None = None
    ) -> bool:
        """Mark an active execution completed, failed or cancelled; False if it had ended."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        rowcount = await self._write(
            "complete execution",
            """
            UPDATE flow_executions
            SET status = %s, error = %s, completed_at = now(), updated_at = now()
            WHERE id = %s AND status IN ('queued', 'running')
            """,
            (status, error, execution_id),
        )
        return rowcount == 1
