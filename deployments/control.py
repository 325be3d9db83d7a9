"""Cancel and retry an execution, wherever its run is.

Cancel ends the execution at once and tells Prefect: a run not started yet is Cancelled
there directly; a running one is set Cancelling, and the worker running it (told by the
execution's NOTIFY, or by polling Prefect) abandons the agent call in flight.

Retry starts a new execution (`retry_of` the old one) that resumes at the first unfinished
prompt: the prompts that succeeded are copied over and not sent again.
"""

from __future__ import annotations

import logging

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Cancelling

from deployments.launch import launch_execution
from flows.database import Pool
from flows.errors import ConflictError
from flows.execution_store import FINAL_STATUSES, Execution, ExecutionStore
from flows.task_flow_store import TaskFlowStore

logger = logging.getLogger(__name__)

CANCEL_REASON = "Cancelled by request."
_NOT_STARTED = {StateType.SCHEDULED, StateType.PENDING, StateType.PAUSED}


async def cancel_execution(
    *, pool: Pool, prefect: PrefectClient, execution: Execution
) -> Execution:
    executions = ExecutionStore(pool)
    if execution.status in FINAL_STATUSES:
        raise ConflictError(
            f"Execution {execution.id} already ended ({execution.status}); "
            "there is nothing to cancel."
        )
    if not await executions.complete_execution(execution.id, "cancelled", CANCEL_REASON):
        current = await executions.get_execution(execution.id)
        assert current is not None
        raise ConflictError(
            f"Execution {execution.id} ended ({current.status}) before it could be cancelled."
        )
    if execution.flow_run_id:
        await _cancel_flow_run(prefect, execution)
    cancelled = await executions.get_execution(execution.id)
    assert cancelled is not None
    return cancelled


async def _cancel_flow_run(prefect: PrefectClient, execution: Execution) -> None:
    # The execution is already cancelled; Prefect's side is best effort (the worker also
    # stops the run from the execution's NOTIFY, and the reconciler settles leftovers).
    if execution.flow_run_id is None:
        return
    try:
        flow_run = await prefect.read_flow_run(execution.flow_run_id)
        if flow_run.state is None or flow_run.state.is_final():
            return
        if flow_run.state.type in _NOT_STARTED:
            await prefect.set_flow_run_state(
                flow_run.id, Cancelled(message=CANCEL_REASON), force=True
            )
        else:
            await prefect.set_flow_run_state(flow_run.id, Cancelling(message=CANCEL_REASON))
    except Exception as exc:
        logger.warning("Could not cancel flow run of execution %s: %r", execution.id, exc)


async def retry_execution(
    *,
    pool: Pool,
    prefect: PrefectClient,
    execution: Execution,
    idempotency_key: str | None = None,
) -> tuple[Execution, bool]:
    """Queue a new execution resuming `execution`; return `(new execution, created)`."""
    if execution.status not in ("failed", "cancelled"):
        raise ConflictError(
            f"Execution {execution.id} is {execution.status}; only failed or "
            "cancelled executions can be retried."
        )
    if execution.flow_id is None:  # a scheduled prompt's run: it has no task flow
        raise ConflictError(
            f"Execution {execution.id} ran a scheduled prompt, which runs again at its "
            "next time; to repeat this run now, use Retry on its flow run in the Prefect UI."
        )
    task_flows = TaskFlowStore(pool)
    task_flow = await task_flows.find_task_flow(execution.flow_id)
    if task_flow is None:
        raise ConflictError(
            f"The task flow of execution {execution.id} was deleted; its history is kept "
            "but it can no longer run."
        )
    retry, created = await ExecutionStore(pool).create_execution(
        flow_id=execution.flow_id,
        call_name=execution.call_name,
        agent=execution.agent,
        prompts=execution.prompts,
        trigger="retry",
        retry_of=execution.id,
        idempotency_key=idempotency_key,
    )
    if not created:
        return retry, False
    return await launch_execution(
        pool=pool, prefect=prefect, task_flow=task_flow, execution=retry
    ), True
