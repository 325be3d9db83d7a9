"""The one definition of the commands that run the API, the worker and the demo agent, used
by `make up`, the tests and the bench alike."""

from __future__ import annotations

import sys


def api_argv(port: int, host: str = "127.0.0.1", *, workers: int | None = None) -> list[str]:
    """The command that serves the API (and page) on `host:port`.

    uvloop and httptools by name (uvicorn's "auto" would quietly fall back to the slower
    pure-Python ones); no access log (a line per request costs more than a small answer);
    `workers` processes (default `API_WORKERS`), each with its own pool, LISTEN and
    reconciler, which are all safe to run side by side.
    """
    from flows.settings import get_settings

    workers = workers or get_settings().api_workers
    argv = [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    return argv + (["--workers", str(workers)] if workers > 1 else [])


def worker_argv() -> list[str]:
    """The command that runs a taskflows worker."""
    return [sys.executable, "-m", "worker"]


def demo_agent_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """The command that serves the bundled demo agent on `host:port`."""
    return [sys.executable, "-m", "stack.demo_agent", "--host", host, "--port", str(port)]
