"""The Prefect flow that runs one task flow: one Prefect task per prompt, in order.

Every prompt's result is mirrored into `flow_executions` the moment it is known, so the
API and the page see progress at once. A run started with an `execution_id` (the API, the
CLI) fills that execution; a run started without one (a schedule, "Run" in the Prefect UI)
creates its own. Prefect's "Retry" on a failed or cancelled flow run resumes its execution
at the first unfinished prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import UTC, datetime
from functools import cache
from typing import Any

from prefect import Task, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.flows import Flow
from prefect.settings import get_current_settings
from prefect.states import Cancelled, State

from flows import run_control
from flows.agent_limits import agent_slot
from flows.artifacts import RunArtifacts
from flows.errors import AgentError
from flows.execution_store import Execution
from flows.partials import PartialPublisher
from flows.runtime import Runtime, get_runtime
from flows.scheduled_prompt_store import ScheduledPromptStore
from flows.settings import get_settings

FLOW_NAME = "taskflow"


def flow_run_name(call_name: str, execution_id: int) -> str:
    return f"{call_name} #{execution_id}"


def scheduled_prompt_name(scheduled_prompt_id: int) -> str:
    """The `call_name` of a scheduled prompt's executions (it has no task flow)."""
    return f"scheduled prompt {scheduled_prompt_id}"


def _now() -> datetime:
    return datetime.now(UTC)


def _attempt() -> int:
    """Which attempt of the current prompt task this is (1 for the first)."""
    context = TaskRunContext.get()
    return max(1, context.task_run.run_count) if context else 1


@task(
    name="prompt",
    task_run_name="prompt {number}/{total}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def run_prompt(
    *,
    execution_id: int,
    index: int,
    number: int,
    total: int,
    prompt: str,
    agent: str,
    memories: list[str],
    started_at: datetime,
) -> dict[str, Any]:
    """Send one prompt to the agent and mirror its result into the execution at once."""
    runtime = await get_runtime()
    partials = PartialPublisher(
        runtime.pool,
        execution_id=execution_id,
        index=index,
        attempt=_attempt(),
        interval_s=runtime.settings.partial_interval_s,
    )
    try:
        async with agent_slot(runtime.agent_limits, agent, hold_s=runtime.agent.timeout_s):
            answer = await runtime.agent.chat(
                agent=agent, prompt=prompt, memories=memories, on_text=partials.add
            )
    except AgentError as exc:
        exc.attempts = _attempt()
        raise
    finally:
        await partials.close()
    finished_at = _now()
    result = {
        "index": index,
        "prompt": prompt,
        "success": True,
        "response": answer.content,
        "error": None,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_ms": round((finished_at - started_at).total_seconds() * 1000, 1),
        "attempts": _attempt(),
        "usage": answer.usage,
    }
    await runtime.executions.update_execution_progress(execution_id, index, result)
    return result


async def _retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    # `await state.aresult()`: in an async condition, `state.result()` would hand back an
    # un-awaited coroutine, which is truthy, and silently retry nothing or everything.
    error = await state.aresult(raise_on_failure=False)
    return isinstance(error, AgentError) and error.transient


@cache
def prompt_task() -> Task[..., Coroutine[Any, Any, dict[str, Any]]]:
    """`run_prompt` with the retry policy from the settings (built once per process)."""
    settings = get_settings()
    delays = [settings.agent_retry_delay_s * 2**n for n in range(max(1, settings.agent_retries))]
    configured = run_prompt.with_options(
        retries=settings.agent_retries,
        retry_delay_seconds=delays,
        retry_condition_fn=_retry_if_transient,
    )
    if settings.agent_retry_delay_s > 0:  # jitter on a zero delay would be meaningless
        configured = configured.with_options(retry_jitter_factor=0.5)
    return configured


def _failed_result(
    index: int, prompt: str, error: AgentError, started_at: datetime
) -> dict[str, Any]:
    finished_at = _now()
    return {
        "index": index,
        "prompt": prompt,
        "success": False,
        "response": None,
        "error": str(error),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_ms": round((finished_at - started_at).total_seconds() * 1000, 1),
        "attempts": getattr(error, "attempts", 1),
        "usage": None,
    }


class _CancelRequested(Exception):
    pass


async def _unless_cancelled(call: Coroutine[Any, Any, Any], run: run_control.InFlightRun) -> Any:
    """Await `call`, abandoning it the moment the run's cancellation is requested."""
    if run.cancel_requested.is_set():
        call.close()
        raise _CancelRequested
    work = asyncio.ensure_future(call)
    cancelled = asyncio.ensure_future(run.cancel_requested.wait())
    try:
        await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled.cancel()
    if work.done():
        return work.result()
    work.cancel()
    with contextlib.suppress(BaseException):
        await work
    raise _CancelRequested


def _trigger_of(flow_run: FlowRun) -> str:
    return "schedule" if flow_run.auto_scheduled else "prefect-ui"


async def _execution_for(
    runtime: Runtime,
    flow_id: int | None,
    execution_id: int | None,
    flow_run: FlowRun,
    scheduled_prompt_id: int | None = None,
) -> Execution:
    """The execution this flow run fills: the one it was given, or a new one of its own."""
    if execution_id is not None:
        execution = await runtime.executions.get_execution(execution_id)
        if execution is None:
            raise ValueError(f"Execution {execution_id} does not exist.")
        return execution
    existing = await runtime.executions.get_execution_by_flow_run(flow_run.id)
    if existing is not None:  # Prefect retried a run that had already created its row
        return existing
    if scheduled_prompt_id is not None:  # one prompt, run like a task flow of one
        scheduled = await ScheduledPromptStore(runtime.pool).get_scheduled_prompt(
            scheduled_prompt_id
        )
        if not scheduled.prompt:  # a row taken over from the old system may have none
            raise ValueError(f"Scheduled prompt {scheduled_prompt_id} has no prompt to send.")
        call_name = scheduled_prompt_name(scheduled_prompt_id)
        agent = scheduled.agent or runtime.settings.default_agent
        prompts = [scheduled.prompt]
    elif flow_id is not None:
        task_flow = await runtime.task_flows.get_task_flow(flow_id)
        call_name, agent = task_flow.call_name, task_flow.agent
        prompts = list(task_flow.prompts)
    else:
        raise ValueError("A run needs a flow_id or a scheduled_prompt_id parameter.")
    execution, _ = await runtime.executions.create_execution(
        flow_id=flow_id if scheduled_prompt_id is None else None,
        call_name=call_name,
        agent=agent,
        prompts=prompts,
        trigger=_trigger_of(flow_run),
        flow_run_id=flow_run.id,
        scheduled_prompt_id=scheduled_prompt_id,
    )
    async with get_client() as client:
        await client.update_flow_run(flow_run.id, name=flow_run_name(call_name, execution.id))
    return execution


async def _mark_ended(flow_run: FlowRun, status: str, error: str | None) -> None:
    runtime = await get_runtime()
    execution = await runtime.executions.get_execution_by_flow_run(flow_run.id)
    if execution is not None:
        await runtime.executions.complete_execution(execution.id, status, error)


async def _on_cancellation(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    await _mark_ended(flow_run, "cancelled", state.message or run_control.DEFAULT_CANCEL_REASON)


async def _on_crashed(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    reason = state.message or "no reason given"
    await _mark_ended(flow_run, "failed", f"The run crashed: {reason}")


async def _on_failure(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    # A prompt failure already ended its execution with a precise error; this catches
    # everything else (the database or the task flow gone mid-run) so no row stays running.
    await _mark_ended(flow_run, "failed", state.message or "The run failed.")


@flow(
    name=FLOW_NAME,
    persist_result=False,
    # Nothing is persisted, but Prefect resolves a result storage at the start of every run:
    # without one named here it asks the server for its default (a blocking HTTP request on
    # the worker's event loop). Prefect's own local default, named explicitly, costs nothing.
    result_storage=get_current_settings().results.local_storage_path,
    log_prints=False,
    # The parameters come from Prefect, which checks them against the deployment's schema
    # when the run is created; Prefect's own check here builds a pydantic model per run
    # (about 4 % of the worker's CPU per run in `python -m bench --profile`).
    validate_parameters=False,
    on_failure=[_on_failure],
    on_cancellation=[_on_cancellation],
    on_crashed=[_on_crashed],
)
async def run_task_flow(
    flow_id: int | None = None,
    execution_id: int | None = None,
    scheduled_prompt_id: int | None = None,
) -> Any:
    """Run task flow `flow_id`, filling execution `execution_id` (or a new one); or, with
    `scheduled_prompt_id`, that scheduled prompt's one prompt (deployments/scheduled_prompts.py)."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    flow_run = context.flow_run
    run = run_control.track(flow_run.id)
    try:
        return await _run(flow_id, execution_id, flow_run, run, scheduled_prompt_id)
    finally:
        run_control.forget(flow_run.id)


async def _run(
    flow_id: int | None,
    execution_id: int | None,
    flow_run: FlowRun,
    run: run_control.InFlightRun,
    scheduled_prompt_id: int | None = None,
) -> Any:
    logger = get_run_logger()
    runtime = await get_runtime()
    execution = await _execution_for(runtime, flow_id, execution_id, flow_run, scheduled_prompt_id)
    run.execution_id = execution.id
    # Only Prefect's "Retry" (a second run of this flow run) may reopen an ended execution.
    may_resume = flow_run.run_count > 1
    if execution.status != "queued" and not may_resume:
        logger.info("Execution %s is already %s; nothing to run.", execution.id, execution.status)
        if execution.status == "cancelled":
            return Cancelled(message=execution.error or run_control.DEFAULT_CANCEL_REASON)
        return {"execution_id": execution.id, "status": execution.status}
    running = await runtime.executions.start_execution(
        execution.id, flow_run_id=flow_run.id, worker_name=run_control.worker_name()
    )
    if running is None:
        logger.info("Execution %s already ended; nothing to run.", execution.id)
        return {"execution_id": execution.id, "status": "ended"}

    artifacts = RunArtifacts(
        call_name=running.call_name,
        total=len(running.prompts),
        progress_every_s=runtime.settings.progress_interval_s,
    )
    lease = (
        asyncio.create_task(_renew_lease(runtime, running.id))
        if run_control.renews_leases_itself()
        else None
    )
    try:
        return await _run_prompts(runtime, running, run, artifacts)
    finally:
        if lease is not None:
            lease.cancel()
        await artifacts.finish(await runtime.executions.list_results(running.id))


async def _renew_lease(runtime: Runtime, execution_id: int) -> None:
    """Keep this run's lease fresh when no taskflows worker does it for us."""
    while True:
        await asyncio.sleep(runtime.settings.lease_renew_s)
        try:
            await runtime.executions.renew_leases([execution_id], run_control.worker_name())
        except Exception as exc:  # the next renewal may succeed; expiry takes a while
            get_run_logger().warning("Could not renew the lease: %r", exc)


async def _run_prompts(
    runtime: Runtime, running: Execution, run: run_control.InFlightRun, artifacts: RunArtifacts
) -> Any:
    prompts: list[str] = list(running.prompts)
    total = len(prompts)
    memories = await runtime.memories.memory_contents()
    artifacts.progress(running.current_prompt_index)
    for index in range(running.current_prompt_index, total):
        prompt, started_at = prompts[index], _now()
        call = prompt_task()(
            execution_id=running.id,
            index=index,
            number=index + 1,
            total=total,
            prompt=prompt,
            agent=running.agent,
            memories=memories,
            started_at=started_at,
        )
        try:
            await _unless_cancelled(call, run)
        except _CancelRequested:
            await runtime.executions.complete_execution(running.id, "cancelled", run.cancel_reason)
            return Cancelled(message=run.cancel_reason)
        except AgentError as exc:
            await runtime.executions.update_execution_progress(
                running.id, index, _failed_result(index, prompt, exc, started_at)
            )
            error = f"Prompt {index + 1} of {total} failed: {exc}"
            await runtime.executions.complete_execution(running.id, "failed", error)
            raise
        artifacts.progress(index + 1)
    await runtime.executions.complete_execution(running.id, "completed")
    return {"execution_id": running.id, "status": "completed"}
