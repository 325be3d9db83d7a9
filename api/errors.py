"""Every error the API answers with is JSON: `{"ok": false, "error": "<sentence>", "detail": []}`.

Handlers map the stores' exceptions (`flows.errors`) and the framework's to one status
each. Anything unexpected is logged with its traceback here, on the server, and answered
with a generic sentence: no stack trace, SQL, file path or secret ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prefect.exceptions import PrefectHTTPStatusError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from api.validation_messages import describe_error, summarize
from flows.errors import ConflictError, NotFoundError, OrchestratorUnavailable, TaskflowsError

logger = logging.getLogger("taskflows.api")

DATABASE_UNAVAILABLE = "The database is unavailable; try again in a moment."
PREFECT_UNAVAILABLE = "The Prefect API is unreachable; try again in a moment."
INTERNAL_ERROR = "Something went wrong on the server; the error has been logged."
# The largest request body the API reads (api/body_limit.py refuses more with 413).
MAX_BODY_BYTES = 1024 * 1024

_STATUS_OF: dict[type[TaskflowsError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    OrchestratorUnavailable: 503,
}


class Unauthorized(HTTPException):
    """A write without the configured bearer token (401)."""

    def __init__(self, sentence: str) -> None:
        super().__init__(401, sentence, headers={"WWW-Authenticate": "Bearer"})


class BodyTooLarge(HTTPException):
    """A request body over `MAX_BODY_BYTES` (413)."""

    def __init__(self) -> None:
        super().__init__(413, f"The request body is larger than {_size(MAX_BODY_BYTES)}.")


class InvalidRequest(HTTPException):
    """Input that is well formed but cannot be used, found outside pydantic (422)."""

    def __init__(self, sentence: str) -> None:
        super().__init__(422, sentence)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n % (1024 * 1024) == 0 else f"{n} bytes"


def error_response(
    status: int,
    sentence: str,
    detail: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error body."""
    body = {"ok": False, "error": sentence, "detail": detail or []}
    return JSONResponse(body, status_code=status, headers=headers)


async def _taskflows_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in _STATUS_OF.items() if isinstance(exc, cls)), 400)
    return error_response(status, str(exc) or "The request could not be completed.")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[Mapping[str, Any]] = list(exc.errors())
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "it cannot be parsed")
            position = error.get("loc", ("body", "?"))[-1]
            return error_response(
                400, f"The request body is not valid JSON: {reason} at character {position}."
            )
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors) and isinstance(exc.body, bytes):
        # FastAPI hands over raw bytes when the body was not declared as JSON.
        return error_response(
            415, "Send the request body as JSON, with `Content-Type: application/json`."
        )
    details = [describe_error(error) for error in errors]
    return error_response(422, summarize(details), details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and exc.detail == "Not Found":
        path = request.url.path if len(request.url.path) <= 200 else "this path"
        sentence = f"There is nothing at {path}; see /docs for the endpoints."
    elif exc.status_code == 405:
        allowed = headers.get("Allow", headers.get("allow", ""))
        sentence = f"{request.method} is not allowed here" + (
            f"; use {allowed}." if allowed else "."
        )
    else:
        sentence = str(exc.detail)
    return error_response(exc.status_code, sentence, headers=headers)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("Database unavailable during %s %s: %r", request.method, request.url.path, exc)
    return error_response(503, DATABASE_UNAVAILABLE, headers={"Retry-After": "5"})


async def _prefect_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code < 500:
        return await _unexpected_error(request, exc)
    logger.warning(
        "Prefect API unavailable during %s %s: %r", request.method, request.url.path, exc
    )
    return error_response(503, PREFECT_UNAVAILABLE, headers={"Retry-After": "5"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("Unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskflowsError, _taskflows_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(psycopg.OperationalError, _database_error)
    # The Prefect client raises httpx's errors when its server cannot be reached.
    app.add_exception_handler(httpx.TransportError, _prefect_error)
    app.add_exception_handler(PrefectHTTPStatusError, _prefect_error)
    app.add_exception_handler(Exception, _unexpected_error)
