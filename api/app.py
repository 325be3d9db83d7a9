"""The taskflows API: `app = create_app()`, served by `uvicorn api.app:app`.

`create_app` reads the settings (an unsafe value stops it here, at start-up), installs the
error handlers and middleware and the routers; its lifespan opens the shared resources
(`api.resources`) and closes them at shutdown. Imported by uvicorn, a bad setting ends the
process with one sentence per problem on stderr (`taskflows api: ...`), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from uvicorn.config import STARTUP_FAILURE

from api.body_limit import BodySizeLimit
from api.cors import JsonCORSMiddleware
from api.deps import TOKEN_FREE_PATHS, require_token
from api.errors import MAX_BODY_BYTES, install_error_handlers
from api.host_origin import HostOriginGuard, served_host_names
from api.hot_reads import HotReads
from api.resources import open_resources
from api.routes import (
    agents,
    alerts,
    control,
    executions,
    health,
    memories,
    old_ui,
    runs,
    scheduled_prompts,
    schedules,
    session,
    stream,
    task_flows,
)
from api.stream_limits import StreamLimiter
from deployments.reconciler import run_reconciler
from flows.errors import UnsafeExposure
from flows.settings import (
    Settings,
    check_exposure,
    exit_for_settings,
    get_settings,
    settings_or_exit,
)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `settings` default to the environment's."""
    settings = settings or get_settings()
    check_exposure(settings.api_host, settings.api_token, allow_no_token=settings.allow_no_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            # Keeps executions honest when workers die; see deployments/reconciler.py.
            reconciler = asyncio.create_task(
                run_reconciler(resources.pool, resources.prefect, settings), name="reconciler"
            )
            try:
                yield
            finally:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconciler

    app = FastAPI(
        title="taskflows",
        summary="Run task flows (ordered LLM prompts) on Prefect and follow them live.",
        version="0.1.0",
        lifespan=lifespan,
        # Every route, present and future, needs the token when one is configured.
        dependencies=[Depends(require_token)],
    )
    install_error_handlers(app)
    app.state.stream_limiter = StreamLimiter(
        max_streams=settings.max_streams, send_timeout_s=settings.stream_send_timeout_s
    )
    # Innermost: the hot reads are answered after every check below has passed.
    app.add_middleware(HotReads)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
            expose_headers=["ETag", "Location", "Idempotent-Replayed"],
        )
    # Outermost: a request for a foreign Host name or a cross-site write goes no further.
    app.add_middleware(
        HostOriginGuard,
        hosts=served_host_names(settings.api_host, settings.allowed_hosts),
        cors_origins=settings.cors_origins,
        local_clients_only=settings.api_token is None and not settings.allow_no_token,
    )
    # stream and old_ui before executions: /api/executions/{execution_id} would match them.
    for module in (
        task_flows,
        runs,
        schedules,
        alerts,
        memories,
        stream,
        old_ui,
        executions,
        control,
        agents,
        health,
        scheduled_prompts,
    ):
        app.include_router(module.router)
    app.include_router(session.router)

    _document_security(app, token_required=settings.api_token is not None)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _document_security(app: FastAPI, *, token_required: bool) -> None:
    """Make the OpenAPI spec say what `require_token` does: every operation but `/healthz`
    needs the bearer token when `TASKFLOWS_API_TOKEN` is set (otherwise it is optional)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for route, path in schema.get("paths", {}).items():
            for operation in path.values():
                if route in TOKEN_FREE_PATHS:
                    operation.pop("security", None)
                elif not token_required and "security" in operation:
                    operation["security"] = [{}, *operation["security"]]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _app_or_exit() -> FastAPI:
    """The app uvicorn serves, or the end of the process when the settings are bad."""
    # uvicorn's own "failed to start" status: with `--workers`, its parent then stops
    # instead of starting the same doomed process again and again.
    program, code = "taskflows api", STARTUP_FAILURE
    settings = settings_or_exit(program, code=code)
    try:
        return create_app(settings)
    except UnsafeExposure as refused:
        exit_for_settings(program, [str(refused)], code=code)


app = _app_or_exit()
