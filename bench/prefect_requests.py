"""The Prefect server's CPU per request a run makes: the floor under taskflows' CPU per run.

Every API-started run costs the Prefect server at least: creating the flow run from its
deployment (the API), two state proposals, Running and Completed (the worker's engine), and
the results table artifact; on top of these come two task-run events per prompt, digested
by the server's events route, task-run recorder and triggers. This group sends each request
`calls` times, one after the other, on an otherwise idle system, and divides the CPU the
Prefect processes spent by the calls. Creating the flow run with `POST /flow_runs/` (the
deployment's ids passed by hand; not what taskflows does, see README "Performance") is
measured for comparison.

The flow runs are made on a deployment of their own in a work pool no worker serves, so the
worker never picks them up; they are deleted afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Running, Scheduled, to_state_create

from bench.stats import Row
from bench.system import CpuMeter, System, api_client, create_flow, settle
from deployments.launch import create_from_deployment
from deployments.sync import ensure_work_pool

# A pool of its own: the worker serves `WORK_POOL` only, so these runs stay Scheduled.
POOL = "bench-requests"


def _prefect_cpu_s(meter: CpuMeter) -> float:
    """CPU seconds every Prefect server process (one, or API + services) spent since the
    meter started."""
    spent, _ = meter.measure()
    return sum(seconds for name, seconds in spent.items() if name.startswith("prefect"))


async def _deployment_like_ours(prefect: PrefectClient, template_id: UUID) -> UUID:
    """A copy of a task flow's deployment (same flow, parameters, schema, tags) in POOL."""
    template = await prefect.read_deployment(template_id)
    await ensure_work_pool(prefect, POOL)
    return await prefect.create_deployment(
        flow_id=template.flow_id,
        name=f"bench-requests-{uuid.uuid4().hex[:6]}",
        work_pool_name=POOL,
        entrypoint=template.entrypoint,
        path=template.path,
        parameters=template.parameters,
        parameter_openapi_schema=template.parameter_openapi_schema,
        tags=template.tags,
    )


async def measure(system: System, *, calls: int) -> list[Row]:
    async with api_client(system) as client:
        flow_id = await create_flow(client, "requests", ["one prompt"])
        task_flow = (await client.get(f"/api/task_flows/{flow_id}")).json()
    rows: list[Row] = []
    with temporary_settings(updates={PREFECT_API_URL: system.prefect_api_url}):
        async with get_client() as prefect:
            deployment_id = await _deployment_like_ours(prefect, UUID(task_flow["deployment_id"]))
            deployment = await prefect.read_deployment(deployment_id)
            created: list[UUID] = []

            async def per_call(
                what: str, request: Callable[[int], Awaitable[Any]], note: str
            ) -> None:
                await request(0)  # warm: the first call of a kind prepares its statements
                await settle()
                meter, started = CpuMeter(system).start(), time.monotonic()
                for index in range(1, calls + 1):
                    await request(index)
                cpu = _prefect_cpu_s(meter) / calls
                wall = (time.monotonic() - started) / calls
                rows.append(
                    Row(
                        f"Prefect server CPU per request: {what}",
                        "-",
                        f"{cpu * 1000:.1f} ms",
                        "-",
                        None,
                        f"{calls} calls one after the other, {wall * 1000:.1f} ms each; {note}",
                    )
                )

            parameters = {"flow_id": flow_id, "execution_id": 0}

            async def from_deployment(_: int) -> None:
                run = await create_from_deployment(
                    prefect, deployment_id, parameters=parameters, name="bench", tags=[]
                )
                created.append(run.id)

            async def direct(_: int) -> None:
                response = await prefect.request(
                    "POST",
                    "/flow_runs/",
                    json={
                        "flow_id": str(deployment.flow_id),
                        "deployment_id": str(deployment_id),
                        "work_pool_name": POOL,
                        "work_queue_name": deployment.work_queue_name,
                        "parameters": parameters,
                        "name": "bench",
                        "state": to_state_create(Scheduled()).model_dump(mode="json"),
                    },
                )
                created.append(UUID(response.json()["id"]))

            async def running(index: int) -> None:
                await prefect.set_flow_run_state(created[index], Running())

            async def completed(index: int) -> None:
                await prefect.set_flow_run_state(created[index], Completed())

            async def artifact(index: int) -> None:
                await prefect.create_artifact(
                    ArtifactCreate(
                        key="bench-requests",
                        type="table",
                        data=[{"prompt": "one prompt", "status": "completed"}],
                        flow_run_id=created[index],
                    )
                )

            try:
                await per_call(
                    "create_flow_run from the deployment",
                    from_deployment,
                    "what the API sends per run",
                )
                await per_call("set_state Running", running, "the worker's engine, per run")
                await per_call("set_state Completed", completed, "the worker's engine, per run")
                await per_call(
                    "results table artifact", artifact, "the flow body, at the end of a run"
                )
                await per_call(
                    "POST /flow_runs/ with the deployment's ids",
                    direct,
                    "for comparison: not what taskflows sends (README 'Performance')",
                )
            finally:
                for flow_run_id in created:
                    await prefect.delete_flow_run(flow_run_id)
                await prefect.delete_deployment(deployment_id)
    return rows
