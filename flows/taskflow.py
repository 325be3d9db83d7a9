"""The Prefect flow that runs one task flow: one Prefect task per prompt, in order.

Every prompt's result is mirrored into `flow_executions` the moment it is known, so the
API and the page see progress at once. A run started with an `execution_id` (the API, the
CLI) fills that execution; a run started without one (a schedule, "Run" in the Prefect UI)
creates its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.flows import Flow
from prefect.states import State

from flows.errors import AgentError
from flows.execution_store import Execution
from flows.runtime import Runtime, get_runtime

FLOW_NAME = "taskflow"


def flow_run_name(call_name: str, execution_id: int) -> str:
    return f"{call_name} #{execution_id}"


def _now() -> datetime:
    return datetime.now(UTC)


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
) -> dict[str, Any]:
    """Send one prompt to the agent and mirror its result into the execution at once."""
    runtime = await get_runtime()
    started_at = _now()
    clock = time.perf_counter()
    answer = await runtime.agent.chat(agent=agent, prompt=prompt, memories=memories)
    result = {
        "index": index,
        "prompt": prompt,
        "success": True,
        "response": answer.content,
        "error": None,
        "started_at": started_at.isoformat(),
        "finished_at": _now().isoformat(),
        "duration_ms": round((time.perf_counter() - clock) * 1000, 1),
        "attempts": 1,
        "usage": answer.usage,
    }
    await runtime.executions.update_execution_progress(execution_id, index, result)
    return result


def _failed_result(
    index: int, prompt: str, error: str, started_at: datetime, clock: float
) -> dict[str, Any]:
    return {
        "index": index,
        "prompt": prompt,
        "success": False,
        "response": None,
        "error": error,
        "started_at": started_at.isoformat(),
        "finished_at": _now().isoformat(),
        "duration_ms": round((time.perf_counter() - clock) * 1000, 1),
        "attempts": 1,
        "usage": None,
    }


def _trigger_of(flow_run: FlowRun) -> str:
    return "schedule" if flow_run.auto_scheduled else "prefect-ui"


async def _execution_for(
    runtime: Runtime, flow_id: int, execution_id: int | None, flow_run: FlowRun
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
    task_flow = await runtime.task_flows.get_task_flow(flow_id)
    execution, _ = await runtime.executions.create_execution(
        flow_id=flow_id,
        call_name=task_flow["call_name"],
        agent=task_flow["agent"],
        prompts=list(task_flow["prompts"]),
        trigger=_trigger_of(flow_run),
        flow_run_id=flow_run.id,
    )
    async with get_client() as client:
        await client.update_flow_run(
            flow_run.id, name=flow_run_name(task_flow["call_name"], execution["id"])
        )
    return execution


async def _mark_ended(flow_run: FlowRun, status: str, error: str | None) -> None:
    runtime = await get_runtime()
    execution = await runtime.executions.get_execution_by_flow_run(flow_run.id)
    if execution is not None:
        await runtime.executions.complete_execution(execution["id"], status, error)


async def _on_cancellation(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    await _mark_ended(flow_run, "cancelled", state.message or "The run was cancelled.")


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
    log_prints=False,
    on_failure=[_on_failure],
    on_cancellation=[_on_cancellation],
    on_crashed=[_on_crashed],
)
async def run_task_flow(flow_id: int, execution_id: int | None = None) -> dict[str, Any]:
    """Run task flow `flow_id`, filling execution `execution_id` (or a new one)."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    flow_run = context.flow_run
    logger = get_run_logger()
    runtime = await get_runtime()

    execution = await _execution_for(runtime, flow_id, execution_id, flow_run)
    running = await runtime.executions.mark_running(execution["id"], flow_run.id)
    if running is None:
        logger.info(
            "Execution %s already ended (%s); nothing to run.", execution["id"], execution["status"]
        )
        return {"execution_id": execution["id"], "status": execution["status"]}

    prompts: list[str] = list(running["prompts"])
    total = len(prompts)
    memories = await runtime.memories.memory_contents()
    for index in range(running["current_prompt_index"], total):
        prompt = prompts[index]
        started_at, clock = _now(), time.perf_counter()
        try:
            await run_prompt(
                execution_id=running["id"],
                index=index,
                number=index + 1,
                total=total,
                prompt=prompt,
                agent=running["agent"],
                memories=memories,
            )
        except AgentError as exc:
            error = f"Prompt {index + 1} of {total} failed: {exc}"
            await runtime.executions.update_execution_progress(
                running["id"], index, _failed_result(index, prompt, str(exc), started_at, clock)
            )
            await runtime.executions.complete_execution(running["id"], "failed", error)
            raise
    await runtime.executions.complete_execution(running["id"], "completed")
    return {"execution_id": running["id"], "status": "completed"}
