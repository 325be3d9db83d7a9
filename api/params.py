"""Path and header parameters shared by the route modules, and the error responses they
document in OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Path
from pydantic.json_schema import SkipJsonSchema

from api.errors import InvalidRequest
from api.schemas import MAX_ID, ErrorOut
from flows.errors import ConflictError

FlowId = Annotated[int, Path(ge=1, le=MAX_ID, description="The task flow's id")]
MemoryId = Annotated[int, Path(ge=1, le=MAX_ID, description="The memory's id")]
ExecutionId = Annotated[int, Path(ge=1, le=MAX_ID, description="The execution's id")]
_IF_MATCH = r'^\s*(\*|(W/)?"?[1-9][0-9]{0,8}"?)\s*$'
IfMatch = Annotated[
    str | SkipJsonSchema[None],
    Header(
        alias="If-Match",
        max_length=100,
        pattern=_IF_MATCH,
        # FastAPI leaves `pattern` out of the spec for an optional header; say it there too.
        json_schema_extra={"pattern": _IF_MATCH},
        description='The ETag (`"<version>"`) the change is based on; a stale one gives 409.',
    ),
]

_MAX_VERSION = 2**31 - 1


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries saying that these statuses answer with an `ErrorOut` body."""
    return {code: {"model": ErrorOut} for code in codes}


def expected_version(body_version: int | None, if_match: str | None) -> int | None:
    """The version a write is based on, from the body's `version` or `If-Match`.

    `If-Match: *` (or no precondition at all) means "whatever is stored".
    """
    header_version: int | None = None
    if if_match is not None and if_match.strip() != "*":
        text = if_match.strip().removeprefix("W/").strip('"')
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAX_VERSION:
            raise InvalidRequest(
                'The If-Match header must be the ETag of the task flow, such as "3".'
            )
        header_version = int(text)
    if None not in (body_version, header_version) and body_version != header_version:
        # Two preconditions that disagree cannot both hold: a conflict, like a stale one.
        raise ConflictError(
            f"The body says version {body_version} but If-Match says {header_version}; "
            "send one of them."
        )
    return body_version if body_version is not None else header_version
