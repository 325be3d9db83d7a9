"""Keep a task flow's Prefect deployment in step after a write, without failing the write.

The database is the source of truth: when Prefect is slow or down, the write still
succeeds, a warning is logged, and the worker's start-up resync (or the next run, which
re-creates a missing deployment) repairs the deployment.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from prefect.client.orchestration import PrefectClient

from deployments.sync import remove_deployment, sync_deployment
from flows.task_flow_store import TaskFlow, TaskFlowStore

logger = logging.getLogger("taskflows.api")

# Prefect's client backs off for up to a minute when its server is down; a user waiting
# on a save should not.
SYNC_TIMEOUT_S = 10.0

# The fields a deployment is built from (its name, description and agent tag).
DEPLOYMENT_FIELDS = ("call_name", "description", "agent")


def deployment_outdated(before: TaskFlow, after: TaskFlow) -> bool:
    """True when an update changed what the deployment shows, or it has none yet."""
    return after.deployment_id is None or any(
        getattr(before, field) != getattr(after, field) for field in DEPLOYMENT_FIELDS
    )


async def sync_quietly(
    prefect: PrefectClient, task_flows: TaskFlowStore, task_flow: TaskFlow
) -> TaskFlow:
    """Create or update the deployment; return the task flow with its `deployment_id`."""
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            deployment_id = await sync_deployment(prefect, task_flows, task_flow)
    except Exception as exc:  # any failure here must not fail the save
        logger.warning(
            "Saved task flow %s but could not sync its Prefect deployment (%r); "
            "the worker's resync will repair it.",
            task_flow.id,
            exc,
        )
        return task_flow
    return replace(task_flow, deployment_id=deployment_id)


async def remove_quietly(prefect: PrefectClient, task_flow: TaskFlow) -> None:
    """Delete the deployment of a deleted task flow; log, don't raise, on failure."""
    try:
        async with asyncio.timeout(SYNC_TIMEOUT_S):
            await remove_deployment(prefect, task_flow)
    except Exception as exc:  # the task flow is already deleted
        logger.warning(
            "Deleted task flow %s but could not delete its Prefect deployment (%r); "
            "the worker's resync will remove it.",
            task_flow.id,
            exc,
        )
