"""Who may reach the API: the start-up check of its exposure, and the page's session cookie.

Safe by default: the API listens on loopback. Listening beyond it without
`TASKFLOWS_API_TOKEN` would hand every prompt, answer and memory (and the agent's bill) to
anyone on the network, so it is refused at start unless `TASKFLOWS_ALLOW_NO_TOKEN` says it is
meant (e.g. behind a proxy that authenticates).

With a token, every endpoint but `/healthz` and the page shell needs it. A browser's
`EventSource` cannot send an `Authorization` header, so `POST /api/session` (with the token)
sets a cookie the stream and other reads accept instead. The cookie holds a value derived from
the token, not the token, is HttpOnly and SameSite=Strict, and never authorises a write.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from pydantic import SecretStr

from api.host_origin import LOOPBACK_NAMES

SESSION_COOKIE = "taskflows_session"


class UnsafeExposure(ValueError):
    """The API would listen beyond loopback without a token."""


def check_exposure(api_host: str, api_token: SecretStr | None, *, allow_no_token: bool) -> None:
    """Refuse to serve `api_host` beyond loopback without a token, unless explicitly allowed."""
    if api_token is not None or allow_no_token or is_loopback(api_host):
        return
    raise UnsafeExposure(
        f"API_HOST={api_host} makes the API reachable from other machines, and without "
        "TASKFLOWS_API_TOKEN anyone there could read every run and start new ones. Set "
        "TASKFLOWS_API_TOKEN to a long random secret (or TASKFLOWS_ALLOW_NO_TOKEN=true if "
        "something else in front of the API authenticates its users)."
    )


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(api_token: SecretStr) -> str:
    """The session cookie's value: derived from the token, useless as a bearer token."""
    key = api_token.get_secret_value().encode()
    return hmac.new(key, b"taskflows page session", hashlib.sha256).hexdigest()
