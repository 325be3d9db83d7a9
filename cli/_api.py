"""The CLI's client of the taskflows REST API: where it is, the token, errors as sentences.

`TASKFLOWS_API_URL` (default `http://127.0.0.1:$API_PORT`, port 8000) and
`TASKFLOWS_API_TOKEN` (sent as a bearer token when set), read with the one `Settings` afresh
for every command. Every failure becomes an `ApiError` whose message is one sentence for
people: the API's own `error` sentence, or why the API could not be reached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from cli import sse
from flows.errors import ApiError
from flows.settings import Settings, settings_problems

TIMEOUT_S = 30.0
# The event stream sends a heartbeat every 15 s; silence for longer means it is stuck.
STREAM_READ_TIMEOUT_S = 40.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ApiClient:
    """Thin, synchronous: every method returns the decoded JSON body or raises `ApiError`."""

    def __init__(self, settings: Settings | None = None) -> None:
        settings = settings or _read_settings()
        self.base_url = settings.resolved_api_url()
        headers = {"User-Agent": "taskflows-cli"}
        if settings.api_token is not None:
            headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
        # A proxy from the environment must not intercept a loopback API.
        loopback = (urlsplit(self.base_url).hostname or "") in LOOPBACK
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=TIMEOUT_S, trust_env=not loopback
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers)

    def put(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.request("PUT", path, json=body, headers=headers)

    def patch(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.request("PATCH", path, json=body, headers=headers)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise self._error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                f"The API at {self.base_url} answered {method} {path} with something that is "
                "not JSON; is TASKFLOWS_API_URL the taskflows API?",
                response.status_code,
            ) from None

    def events(self, path: str, **params: Any) -> Iterator[tuple[str, Any]]:
        """Server-Sent Events from `path` as `(event, data)`, data decoded from JSON.

        Ends when the server closes the stream; raises `ApiError` when it cannot be opened
        or goes silent for longer than its heartbeat allows.
        """
        timeout = httpx.Timeout(TIMEOUT_S, read=STREAM_READ_TIMEOUT_S)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response)
                for event in sse.events(response.iter_lines()):
                    yield event.event, _json_or_text(event.data)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: httpx.HTTPError) -> ApiError:
        if isinstance(exc, httpx.TimeoutException):
            reason = "it did not answer in time"
        elif isinstance(exc, httpx.ConnectError):
            reason = "nothing answers there"
        else:
            reason = type(exc).__name__
        return ApiError(
            f"Cannot reach the taskflows API at {self.base_url} ({reason}); start it with "
            "`taskflows up`, or point TASKFLOWS_API_URL at it."
        )

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            sentence = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            sentence = (
                f"The API at {self.base_url} answered HTTP {response.status_code} "
                "without saying why."
            )
        if response.status_code == 401:
            sentence += " Set TASKFLOWS_API_TOKEN to the API's token."
        return ApiError(sentence, response.status_code)


def _read_settings() -> Settings:
    # Afresh, not the cached process-wide settings: tests change the environment between
    # commands run in one process.
    try:
        return Settings()
    except ValidationError as exc:
        raise ApiError("\n".join(settings_problems(exc))) from None


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
