"""Refuse requests a browser was tricked into sending: wrong Host, or a cross-site write.

Two attacks need no token at all while the API runs without one on loopback:

- DNS rebinding: a web page on `evil.example` makes its name resolve to 127.0.0.1 and then
  reads and writes the API as if it were its own site. Its requests carry
  `Host: evil.example`, so only the names the API serves on are answered.
- Cross-site writes: a bodiless `POST .../run` is a "simple" request a browser sends from any
  page without asking (no CORS preflight). Browsers send `Origin` with every write, so a
  write whose origin is neither this API's own nor one of `TASKFLOWS_CORS_ORIGINS` is refused.

Clients that are not browsers (curl, the CLI) send no `Origin` and are unaffected.

And without `TASKFLOWS_API_TOKEN` (unless `TASKFLOWS_ALLOW_NO_TOKEN`), only this machine is
answered, whatever address the server was told to listen on: the API refuses a
non-loopback `API_HOST` at start (`flows.settings.check_exposure`), and this covers
`uvicorn --host 0.0.0.0` run by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response
from flows.settings import LOOPBACK_NAMES

WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})


def served_host_names(api_host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """The Host names to answer: loopback, API_HOST, TASKFLOWS_ALLOWED_HOSTS.

    None (no check) when "*" is allowed explicitly, or when the API listens on every
    interface and no names are given: it is then reached by names this process cannot
    know, and `check_exposure` has required a token for that exposure.
    """
    names = {name.strip().lower() for name in extra if name.strip()}
    if "*" in names or (api_host in WILDCARD_BINDS and not names):
        return None
    if api_host not in WILDCARD_BINDS:
        names.add(api_host.lower().strip("[]"))
    return frozenset(names | LOOPBACK_NAMES)


def host_name(host_header: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class HostOriginGuard:
    """ASGI middleware: 400 for an unknown Host, 403 for a write from a foreign origin."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: frozenset[str] | None,
        cors_origins: Iterable[str],
        local_clients_only: bool = False,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.local_clients_only = local_clients_only
        self.cors_origins = frozenset(origin.rstrip("/").lower() for origin in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        if self.local_clients_only and client and not _is_local_client(client[0]):
            response = error_response(
                403,
                "This API has no TASKFLOWS_API_TOKEN, so it answers this machine only. "
                "Set TASKFLOWS_API_TOKEN to use it from elsewhere.",
            )
            await response(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.hosts is not None and not self._known_host(host):
            shown = host_name(host)[:100] or "(none)"
            response = error_response(
                400,
                f"This API does not answer to the host name {shown!r}. To serve it under "
                "that name, add it to TASKFLOWS_ALLOWED_HOSTS.",
            )
            await response(scope, receive, send)
            return
        origin = headers.get("origin")
        method = scope.get("method", "GET")
        foreign = origin is not None and not self._allowed_origin(origin, host)
        if foreign and method not in _SAFE_METHODS:
            response = error_response(
                403,
                f"A page from {str(origin)[:100]} may not change data here (a cross-site "
                "request). To allow that site, add its origin to TASKFLOWS_CORS_ORIGINS.",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _known_host(self, host: str) -> bool:
        assert self.hosts is not None
        name = host_name(host)
        return name in self.hosts or _is_loopback_address(name)

    def _allowed_origin(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        # Same origin: the page this API serves, posting back to the host it came from. The
        # scheme is not compared: a TLS-terminating proxy changes it, the Host stays.
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


def _is_local_client(address: str) -> bool:
    # A unix socket (a local proxy) has no IP address: it is on this machine. The two usual
    # loopback addresses are known by name: parsing an address costs more than a hot read.
    return (
        not address
        or address in _LOOPBACK_ADDRESSES
        or address.startswith("/")
        or _is_loopback_address(address)
    )


def _is_loopback_address(name: str) -> bool:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
