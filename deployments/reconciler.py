"""The reconciler: no execution stays active after its run is gone.

Every few seconds it compares active executions with reality:

- a running execution whose worker stopped renewing its lease (the worker was killed,
  even with kill -9, or its machine died) is failed with an error saying the run crashed,
  and its Prefect flow run is marked Crashed; it can be resumed with retry;
- an active execution whose Prefect flow run has ended (cancelled in the Prefect UI before
  it started, crashed, deleted) takes the matching final status;
- a queued execution that never got a flow run is failed.

It is idempotent and safe to run in several processes at once: every write is conditional
on the execution still being active. `make up` runs it inside the API process.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from flows.database import Pool
from flows.execution_store import Execution, ExecutionStore
from flows.settings import Settings

logger = logging.getLogger(__name__)

# Give a fresh execution time to get its flow run and its worker before judging it.
GRACE = timedelta(seconds=30)
_PREFECT_ENDED = {
    StateType.CANCELLED: ("cancelled", "The run was cancelled in Prefect."),
    StateType.CRASHED: ("failed", "The run crashed: {message}"),
    StateType.FAILED: ("failed", "The run failed in Prefect: {message}"),
    StateType.COMPLETED: ("failed", "The flow run completed without finishing the execution."),
}


async def reconcile_once(pool: Pool, prefect: PrefectClient, settings: Settings) -> dict[str, int]:
    """One pass; returns how many executions each rule ended."""
    executions = ExecutionStore(pool)
    counts = {"crashed": 0, "ended_in_prefect": 0, "never_started": 0}

    for execution in await executions.list_expired_leases(settings.lease_expiry_s):
        worker = execution.worker_name or "unknown"
        error = (
            f"The run crashed: its worker ({worker}) stopped responding. "
            "Retry it to resume at the first unfinished prompt."
        )
        if await executions.complete_execution(execution.id, "failed", error):
            counts["crashed"] += 1
            await _crash_flow_run(prefect, execution, error)

    now = datetime.now(UTC)
    settled = [e for e in await executions.list_active_executions() if now - e.queued_at > GRACE]
    with_runs = {e.flow_run_id: e for e in settled if e.flow_run_id is not None}
    if with_runs:
        found = await _read_flow_runs(prefect, list(with_runs))
        for flow_run_id, execution in with_runs.items():
            flow_run = found.get(flow_run_id)
            if flow_run is None:
                status, error = "failed", "The run's Prefect flow run was deleted."
            elif flow_run.state is not None and flow_run.state.type in _PREFECT_ENDED:
                status, template = _PREFECT_ENDED[flow_run.state.type]
                error = template.format(message=flow_run.state.message or "no reason given")
            else:
                continue
            if await executions.complete_execution(execution.id, status, error):
                counts["ended_in_prefect"] += 1
    never_started = [e for e in settled if e.flow_run_id is None and e.status == "queued"]
    for execution in never_started:
        if await executions.complete_execution(
            execution.id, "failed", "The run never reached Prefect; start it again."
        ):
            counts["never_started"] += 1
    return counts


# The Prefect API answers at most this many flow runs per request (PREFECT_API_DEFAULT_LIMIT):
# ask in pages, or every run past the first page would look deleted.
_PAGE = 200


async def _read_flow_runs(prefect: PrefectClient, ids: list[Any]) -> dict[Any, Any]:
    found: dict[Any, Any] = {}
    for start in range(0, len(ids), _PAGE):
        page = ids[start : start + _PAGE]
        flow_runs = await prefect.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)), limit=len(page)
        )
        found.update({flow_run.id: flow_run for flow_run in flow_runs})
    return found


async def _crash_flow_run(prefect: PrefectClient, execution: Execution, message: str) -> None:
    if execution.flow_run_id is None:
        return
    try:
        flow_run = await prefect.read_flow_run(execution.flow_run_id)
        if flow_run.state is None or not flow_run.state.is_final():
            await prefect.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
    except Exception as exc:
        logger.warning("Could not mark flow run of execution %s crashed: %r", execution.id, exc)


# Any constant shared by every taskflows process; "reconcil" in ASCII.
_PASS_LOCK_ID = 0x7265636F6E63696C


async def _reconcile_if_first(
    pool: Pool, prefect: PrefectClient, settings: Settings
) -> dict[str, int]:
    """One pass, unless another process (API_WORKERS > 1, several APIs) is running one now.

    The writes would be safe side by side anyway (each is conditional); the lock saves the
    duplicate reads of Prefect. It is a session lock on a pool connection, so a process that
    dies releases it with its connection.
    """
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_PASS_LOCK_ID,))
        row = await cursor.fetchone()
        if not (row and row["got"]):
            return {}
        try:
            return await reconcile_once(pool, prefect, settings)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_PASS_LOCK_ID,))


async def run_reconciler(pool: Pool, prefect: PrefectClient, settings: Settings) -> None:
    """Reconcile forever, every `settings.reconcile_every_s`; survive outages."""
    while True:
        try:
            counts = await _reconcile_if_first(pool, prefect, settings)
            if any(counts.values()):
                logger.warning("Reconciler ended executions: %s", counts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("Reconcile pass failed (will retry): %r", exc)
        await asyncio.sleep(settings.reconcile_every_s)
