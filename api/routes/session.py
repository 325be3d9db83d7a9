"""`POST /api/session`: the page trades the API token for a session cookie.

A browser's `EventSource` cannot send an `Authorization` header, so the live stream would
be out of reach of the page when a token is set. This call (which needs the token, like every
write) sets an HttpOnly, SameSite=Strict cookie that reads, the stream among them, accept.
See api/security.py.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import ResourcesDep
from api.params import error_responses
from api.security import SESSION_COOKIE, session_value

router = APIRouter(tags=["session"], responses=error_responses(401))


@router.post("/api/session", status_code=204)
async def open_session(request: Request, resources: ResourcesDep) -> Response:
    """Set the session cookie for this browser (nothing to do without a token)."""
    response = Response(status_code=204)
    token = resources.settings.api_token
    if token is not None:
        response.set_cookie(
            SESSION_COOKIE,
            session_value(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
