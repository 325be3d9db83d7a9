"""`GET /healthz`: is everything a run needs ready? The database, Prefect, a worker.

200 only when all three are; otherwise 503 with the same keys, each saying "ok" or what
is wrong, and `status` ("ok" or "degraded", the key the old system's UI reads). Every
check is bounded, so a hung dependency makes the answer "not ready" in about two seconds
instead of hanging the probe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from prefect.client.schemas.objects import WorkerStatus
from prefect.exceptions import ObjectNotFound

from api.deps import PoolDep, PrefectDep, SettingsDep
from api.schemas import HealthOut

router = APIRouter(tags=["health"])
logger = logging.getLogger("taskflows.api")

CHECK_TIMEOUT_S = 2.0
OK = "ok"


async def _bounded(check: Awaitable[str], part: str, failed: str) -> str:
    """Run one check for at most CHECK_TIMEOUT_S; any failure becomes the sentence `failed`."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return await check
    except TimeoutError:
        return f"{part} did not answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # a health check reports, never raises
        logger.info("Health check of %s failed: %r", part, exc)
        return failed


@router.get("/healthz", responses={503: {"model": HealthOut}})
async def health(pool: PoolDep, prefect: PrefectDep, settings: SettingsDep) -> JSONResponse:
    async def database() -> str:
        async with pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
        return OK

    async def prefect_api() -> str:
        error = await prefect.api_healthcheck()  # returns the exception instead of raising
        if error is not None:
            logger.info("Prefect health check failed: %r", error)
            return "the Prefect API is unreachable"
        return OK

    async def worker() -> str:
        try:
            workers = await prefect.read_workers_for_work_pool(work_pool_name=settings.work_pool)
        except ObjectNotFound:
            return f"the work pool {settings.work_pool!r} does not exist yet"
        if any(w.status == WorkerStatus.ONLINE for w in workers):
            return OK
        return f"no worker of the work pool {settings.work_pool!r} is online"

    db, api, wk = await asyncio.gather(
        _bounded(database(), "the database", "the database is unavailable"),
        _bounded(prefect_api(), "the Prefect API", "the Prefect API is unreachable"),
        _bounded(worker(), "the Prefect API", "unknown: the Prefect API could not be asked"),
    )
    ready = (db, api, wk) == (OK, OK, OK)
    report = HealthOut(
        status="ok" if ready else "degraded", ok=ready, database=db, prefect=api, worker=wk
    )
    return JSONResponse(report.model_dump(), status_code=200 if report.ok else 503)
