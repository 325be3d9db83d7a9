"""The execution store: every read and write of `flow_executions`, in one place.

The seed's six functions (`create_execution`, `get_execution`, `list_active_executions`,
`list_recent_executions`, `update_execution_progress`, `complete_execution`) plus the few the
Prefect life cycle needs. Each write is one statement, so progress is never lost or
duplicated by a read-modify-write race.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from flows.database import Pool
from flows.retrying import Backoff

Execution = dict[str, Any]

ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("completed", "failed", "cancelled")


class ExecutionStore:
    """Reads and writes `flow_executions` through a shared connection pool."""

    def __init__(self, pool: Pool, *, backoff: Backoff | None = None) -> None:
        self._pool = pool
        # Writes made by a running flow are repeatable, so they ride out a database restart.
        self._backoff = backoff or Backoff()

    async def _write(self, what: str, query: str, params: Any) -> int:
        """Run one repeatable write, retried through a lost connection; return rowcount."""

        async def attempt() -> int:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return cursor.rowcount

        return await self._backoff.run(attempt, what=what)

    async def _write_returning(self, what: str, query: str, params: Any) -> Execution | None:
        async def attempt() -> Execution | None:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchone()

        return await self._backoff.run(attempt, what=what)

    async def create_execution(
        self,
        *,
        flow_id: int,
        call_name: str,
        agent: str,
        prompts: list[str],
        trigger: str = "api",
        status: str = "queued",
        flow_run_id: UUID | None = None,
        retry_of: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Execution, bool]:
        """Start tracking a run; return `(execution, created)`.

        The prompts, agent and name are copied in, so editing the task flow later changes
        neither this run nor its history. With an `idempotency_key` already used for this
        task flow, the existing execution comes back with `created=False`.
        """
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                """
                INSERT INTO flow_executions
                    (flow_id, status, total_prompts, call_name, agent, prompts, trigger,
                     flow_run_id, retry_of, idempotency_key)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (flow_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO NOTHING
                RETURNING *
                """,
                (
                    flow_id,
                    status,
                    len(prompts),
                    call_name,
                    agent,
                    Jsonb(prompts),
                    trigger,
                    flow_run_id,
                    retry_of,
                    idempotency_key,
                ),
            )
            row = await cursor.fetchone()
            if row is not None:
                return row, True
            cursor = await conn.execute(
                "SELECT * FROM flow_executions WHERE flow_id = %s AND idempotency_key = %s",
                (flow_id, idempotency_key),
            )
            existing = await cursor.fetchone()
            assert existing is not None, "an insert that conflicted must find its twin"
            return existing, False

    async def get_execution(self, execution_id: int) -> Execution | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM flow_executions WHERE id = %s", (execution_id,)
            )
            return await cursor.fetchone()

    async def get_execution_by_flow_run(self, flow_run_id: UUID) -> Execution | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM flow_executions WHERE flow_run_id = %s", (flow_run_id,)
            )
            return await cursor.fetchone()

    async def list_active_executions(self) -> list[Execution]:
        """Queued and running executions, oldest first (the order they were started)."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT * FROM flow_executions WHERE status IN ('queued', 'running') ORDER BY id"
            )
            return await cursor.fetchall()

    async def list_recent_executions(
        self, limit: int = 20, *, before_id: int | None = None
    ) -> list[Execution]:
        """The newest executions first; `before_id` pages further back."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                """
                SELECT * FROM flow_executions
                WHERE %(before)s::bigint IS NULL OR id < %(before)s::bigint
                ORDER BY id DESC LIMIT %(limit)s
                """,
                {"before": before_id, "limit": limit},
            )
            return await cursor.fetchall()

    async def set_flow_run(self, execution_id: int, flow_run_id: UUID) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE flow_executions SET flow_run_id = %s, updated_at = now() WHERE id = %s",
                (flow_run_id, execution_id),
            )

    async def start_execution(
        self, execution_id: int, *, flow_run_id: UUID | None, worker_name: str | None
    ) -> Execution | None:
        """Move an execution to running and take its lease; None when it must not run.

        A queued execution starts. A failed or cancelled one is resumed in place (Prefect's
        "Retry" on its flow run): the failed prompt's result is dropped, the successful ones
        stay and are not sent again. A completed one never runs twice.
        """
        return await self._write_returning(
            "start execution",
            """
            UPDATE flow_executions
            SET status = 'running', started_at = now(), updated_at = now(),
                completed_at = NULL, error = NULL, attempts = attempts + 1,
                flow_run_id = COALESCE(flow_run_id, %(flow_run_id)s),
                worker_name = %(worker)s, heartbeat_at = now(),
                prompt_results = CASE WHEN status = 'queued' THEN prompt_results
                    ELSE jsonb_path_query_array(prompt_results, '$[*] ? (@.success == true)')
                    END,
                current_prompt_index = CASE WHEN status = 'queued' THEN current_prompt_index
                    ELSE jsonb_array_length(
                        jsonb_path_query_array(prompt_results, '$[*] ? (@.success == true)'))
                    END
            WHERE id = %(id)s AND status IN ('queued', 'failed', 'cancelled')
            RETURNING *
            """,
            {"id": execution_id, "flow_run_id": flow_run_id, "worker": worker_name},
        )

    async def create_retry(
        self, failed: Execution, *, idempotency_key: str | None = None
    ) -> tuple[Execution, bool]:
        """A new queued execution resuming `failed` at its first unfinished prompt.

        The successful results are copied over, so those prompts are not sent again.
        """
        succeeded = [r for r in failed["prompt_results"] if r.get("success")]
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                """
                INSERT INTO flow_executions
                    (flow_id, status, total_prompts, call_name, agent, prompts, trigger,
                     retry_of, idempotency_key, prompt_results, current_prompt_index)
                VALUES (%s, 'queued', %s, %s, %s, %s, 'retry', %s, %s, %s, %s)
                ON CONFLICT (flow_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                DO NOTHING
                RETURNING *
                """,
                (
                    failed["flow_id"],
                    failed["total_prompts"],
                    failed["call_name"],
                    failed["agent"],
                    Jsonb(failed["prompts"]),
                    failed["id"],
                    idempotency_key,
                    Jsonb(succeeded),
                    len(succeeded),
                ),
            )
            row = await cursor.fetchone()
            if row is not None:
                return row, True
            cursor = await conn.execute(
                "SELECT * FROM flow_executions WHERE flow_id = %s AND idempotency_key = %s",
                (failed["flow_id"], idempotency_key),
            )
            existing = await cursor.fetchone()
            assert existing is not None
            return existing, False

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

    async def list_expired_leases(self, expiry_s: float) -> list[Execution]:
        """Running executions whose worker has not renewed the lease within `expiry_s`."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                """
                SELECT * FROM flow_executions
                WHERE status = 'running'
                  AND COALESCE(heartbeat_at, started_at) < now() - make_interval(secs => %s)
                ORDER BY id
                """,
                (expiry_s,),
            )
            return await cursor.fetchall()

    async def update_execution_progress(
        self, execution_id: int, prompt_index: int, prompt_result: dict[str, Any]
    ) -> bool:
        """Append one prompt's result and move the progress index, in ONE statement.

        After prompt k succeeds the index is k+1; a failed prompt leaves it at k (the prompt
        that failed). Returns False when the execution is no longer running.
        """
        next_index = prompt_index + 1 if prompt_result.get("success") else prompt_index
        # Repeating this write (after a lost connection) must not append twice: the same
        # prompt attempt is recognised by its index and start time.
        rowcount = await self._write(
            "append prompt result",
            """
            UPDATE flow_executions
            SET prompt_results = prompt_results || jsonb_build_array(%(result)s::jsonb),
                current_prompt_index = GREATEST(current_prompt_index, %(next)s),
                updated_at = now()
            WHERE id = %(id)s AND status = 'running'
              AND NOT prompt_results @> jsonb_build_array(%(attempt)s::jsonb)
            """,
            {
                "result": Jsonb(prompt_result),
                "next": next_index,
                "id": execution_id,
                "attempt": Jsonb(
                    {"index": prompt_index, "started_at": prompt_result.get("started_at")}
                ),
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
