"""The one definition of the commands that run the API, the worker and the demo agent, used
by `make up`, the tests and the bench alike."""

from __future__ import annotations

import sys


def api_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves the API (and page) on `host:port`."""
    return [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port)]


def worker_argv() -> list[str]:
    """The command that runs a taskflows worker."""
    return [sys.executable, "-m", "worker"]


def demo_agent_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves the bundled demo agent on `host:port`."""
    return [sys.executable, "-m", "stack.demo_agent", "--host", host, "--port", str(port)]
