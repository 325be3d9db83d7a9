"""Deployments as code: run task flows on Prefect's docker or kubernetes work pools.

The `taskflows` worker runs flow runs in-process (fast: no process per run). To run them
in containers instead, as stock Prefect does, this module gives every task flow a second
deployment of its Prefect flow (the flow named after it, running
`flows/taskflow.py:run_task_flow` with parameters `{flow_id}`), named `<call_name>@<pool>`,
on a docker or kubernetes work pool. Its runs use the same PostgreSQL and Prefect server
and are recorded as executions like any other (trigger `prefect-ui`, or `schedule` when a
schedule on that deployment fires). The task flow's own
deployment (pool `taskflows`, used by the API) is left alone. Example::

    prefect work-pool create containers --type docker
    python -m deployments.as_code --work-pool containers --image registry/taskflows:1 \\
        --pass-env DATABASE_URL --pass-env AGENT_API_URL
    prefect worker start --pool containers        # needs `pip install prefect-docker`

Run it again after adding or renaming task flows (`--prune` removes the deployments of
task flows that are gone). Schedules set on these deployments in the Prefect UI survive a
re-run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterTags,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.callables import parameter_schema

from deployments.schedules import schedules_to_keep
from deployments.sync import ENTRYPOINT, WORKER_TYPE, deployment_tags, prefect_flow_name
from flows.database import create_pool
from flows.errors import AsCodeError
from flows.settings import get_settings
from flows.task_flow_store import TaskFlow, TaskFlowStore
from flows.taskflow import run_task_flow

# Where deployments/Dockerfile puts the project inside the image.
DEFAULT_CODE_DIR = "/opt/taskflows"


@dataclass(frozen=True)
class PoolTarget:
    """Where and how the container deployments run."""

    work_pool: str
    image: str | None = None
    code_dir: str = DEFAULT_CODE_DIR
    env: dict[str, str] = field(default_factory=dict)
    # More job variables of the pool's type, e.g. {"namespace": "taskflows"} on kubernetes.
    job_variables: dict[str, Any] = field(default_factory=dict)


def deployment_name(task_flow: TaskFlow, target: PoolTarget) -> str:
    return f"{task_flow.call_name}@{target.work_pool}"


def deployment_spec(task_flow: TaskFlow, target: PoolTarget) -> dict[str, Any]:
    """The arguments of `PrefectClient.create_deployment` for one task flow on the pool."""
    job_variables: dict[str, Any] = dict(target.job_variables)
    if target.image:
        job_variables["image"] = target.image
    if target.env:
        job_variables["env"] = {**job_variables.get("env", {}), **target.env}
    return {
        "name": deployment_name(task_flow, target),
        "work_pool_name": target.work_pool,
        "entrypoint": ENTRYPOINT,
        # The code is in the image: run from its directory, download nothing.
        "pull_steps": [
            {"prefect.deployments.steps.set_working_directory": {"directory": target.code_dir}}
        ],
        "parameters": {"flow_id": task_flow.id},
        "parameter_openapi_schema": parameter_schema(run_task_flow).model_dump_for_openapi(),
        "job_variables": job_variables,
        "tags": [*deployment_tags(task_flow), f"pool:{target.work_pool}"],
        "description": (
            f"Task flow {task_flow.call_name!r} in containers of pool {target.work_pool!r}. "
            + (task_flow.description or "")
        ).strip(),
    }


async def apply(
    prefect: PrefectClient,
    task_flows: TaskFlowStore,
    target: PoolTarget,
    *,
    names: Sequence[str] = (),
    prune: bool = False,
) -> dict[str, UUID]:
    """Create or update the container deployment of each task flow (or of `names`);
    return `{deployment name: id}`. With `prune`, delete this pool's deployments of the
    task flows that belong to no task flow any more."""
    await _check_pool(prefect, target.work_pool)
    selected = await _select(task_flows, names)
    applied: dict[str, UUID] = {}
    for task_flow in selected:
        spec = deployment_spec(task_flow, target)
        flow_name = prefect_flow_name(task_flow)
        existing = await _existing_id(prefect, f"{flow_name}/{spec['name']}")
        applied[spec["name"]] = await prefect.create_deployment(
            flow_id=await prefect.create_flow_from_name(flow_name),
            # The upsert replaces schedules; keep any set on this deployment in the UI.
            schedules=await schedules_to_keep(prefect, existing),
            **spec,
        )
    if prune and not names:
        for deployment in await prefect.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["taskflows"])),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[target.work_pool])),
        ):
            if deployment.id not in applied.values():
                await prefect.delete_deployment(deployment.id)
    return applied


async def _check_pool(prefect: PrefectClient, name: str) -> None:
    try:
        pool = await prefect.read_work_pool(name)
    except ObjectNotFound:
        raise AsCodeError(
            f"The work pool {name!r} does not exist; create it first, e.g. "
            f"`prefect work-pool create {name} --type docker` (or --type kubernetes)."
        ) from None
    if pool.type == WORKER_TYPE:
        raise AsCodeError(
            f"{name!r} is a taskflows pool, served in-process by `python -m worker`; "
            "name a docker or kubernetes pool here."
        )


async def _select(task_flows: TaskFlowStore, names: Sequence[str]) -> list[TaskFlow]:
    every = await task_flows.list_task_flows()
    if not names:
        return every
    by_name = {task_flow.call_name: task_flow for task_flow in every}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise AsCodeError(f"No task flow is called {', '.join(map(repr, unknown))}.")
    return [by_name[name] for name in names]


async def _existing_id(prefect: PrefectClient, full_name: str) -> UUID | None:
    try:
        return (await prefect.read_deployment_by_name(full_name)).id
    except ObjectNotFound:
        return None


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        target = PoolTarget(
            work_pool=args.work_pool,
            image=args.image,
            code_dir=args.code_dir,
            env=_env(args.env, args.pass_env),
            job_variables=dict(_pair(item, "--job-variable", as_json=True) for item in args.var),
        )
        if args.dry_run:
            specs = asyncio.run(_specs(target, args.task_flow))
            print(json.dumps(specs, indent=2, default=str))
            return 0
        applied = asyncio.run(_apply(target, args.task_flow, args.prune))
    except AsCodeError as exc:
        print(f"as_code: {exc}", file=sys.stderr)
        return 1
    for name, deployment_id in applied.items():
        print(f"{name.rsplit('@', 1)[0]}/{name}  {deployment_id}")
    print(f"{len(applied)} deployment(s) on work pool {target.work_pool!r}.")
    return 0


async def _apply(target: PoolTarget, names: list[str], prune: bool) -> dict[str, UUID]:
    pool = create_pool(get_settings().resolved_database_url(), max_size=2, name="as-code")
    await pool.open(wait=True, timeout=15)
    try:
        async with _prefect_client() as prefect:
            return await apply(prefect, TaskFlowStore(pool), target, names=names, prune=prune)
    finally:
        await pool.close()


async def _specs(target: PoolTarget, names: list[str]) -> list[dict[str, Any]]:
    pool = create_pool(get_settings().resolved_database_url(), max_size=2, name="as-code")
    await pool.open(wait=True, timeout=15)
    try:
        return [deployment_spec(t, target) for t in await _select(TaskFlowStore(pool), names)]
    finally:
        await pool.close()


def _prefect_client() -> PrefectClient:
    if PREFECT_API_URL.value():
        return get_client()
    with temporary_settings(updates={PREFECT_API_URL: get_settings().resolved_prefect_api_url()}):
        return get_client()


def _env(pairs: list[str], passed: list[str]) -> dict[str, str]:
    env = dict(_pair(item, "--env") for item in pairs)
    for name in passed:
        if name not in os.environ:
            raise AsCodeError(f"--pass-env {name}: {name} is not set here.")
        env[name] = os.environ[name]
    return env


def _pair(item: str, option: str, *, as_json: bool = False) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise AsCodeError(f"{option} takes KEY=VALUE, not {item!r}.")
    if as_json:
        try:
            return key, json.loads(value)
        except ValueError:
            return key, value
    return key, value


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.as_code",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work-pool", required=True, help="A docker or kubernetes work pool")
    parser.add_argument("--image", help="The image with the project (deployments/Dockerfile)")
    parser.add_argument("--code-dir", default=DEFAULT_CODE_DIR, help="The project in the image")
    parser.add_argument("--task-flow", action="append", default=[], help="Only this one")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the runs")
    parser.add_argument("--pass-env", action="append", default=[], help="Pass KEY from here")
    parser.add_argument(
        "--job-variable", dest="var", action="append", default=[], help="KEY=JSON job variable"
    )
    parser.add_argument("--prune", action="store_true", help="Delete gone task flows' ones")
    parser.add_argument("--dry-run", action="store_true", help="Print, change nothing")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
