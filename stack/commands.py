"""The one definition of the commands that run the API and the worker, used by `make up`,
the tests and the bench alike."""

from __future__ import annotations

import sys


def api_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves the API (and page) on `host:port`."""
    return [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port)]


def worker_argv() -> list[str]:
    """The command that runs a taskflows worker."""
    return [sys.executable, "-m", "worker"]
