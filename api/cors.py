"""CORS for the origins in `TASKFLOWS_CORS_ORIGINS`, with refusals answered in JSON too."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from api.errors import error_response


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, but a refused preflight gets the API's JSON error body."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode(errors="replace") or "Disallowed CORS request"
        kept = {
            key: value
            for key, value in response.headers.items()
            if key.lower() not in ("content-length", "content-type")
        }
        return error_response(
            response.status_code,
            f"{reason} (the allowed origins are set by TASKFLOWS_CORS_ORIGINS).",
            headers=kept,
        )
