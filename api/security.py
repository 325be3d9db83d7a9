"""Who may reach the API: the page's session cookie (the start-up check is in flows).

Safe by default: the API listens on loopback. Listening beyond it without
`TASKFLOWS_API_TOKEN` is refused at start unless `TASKFLOWS_ALLOW_NO_TOKEN` says it is meant
(e.g. behind a proxy that authenticates); that rule, `check_exposure`, lives in
`flows.settings` so that `up` can apply it before it starts anything.

With a token, every endpoint but `/healthz` and the page shell needs it. A browser's
`EventSource` cannot send an `Authorization` header, so `POST /api/session` (with the token)
sets a cookie the stream and other reads accept instead. The cookie holds a value derived from
the token, not the token, is HttpOnly and SameSite=Strict, and never authorises a write.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

SESSION_COOKIE = "taskflows_session"


def session_value(api_token: SecretStr) -> str:
    """The session cookie's value: derived from the token, useless as a bearer token."""
    key = api_token.get_secret_value().encode()
    return hmac.new(key, b"taskflows page session", hashlib.sha256).hexdigest()
