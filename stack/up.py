"""`make up`: run all of taskflows on this machine, until Ctrl-C.

In order: the database (the configured one, or the embedded PostgreSQL in `.data/pg`), the
`taskflows` and `prefect` databases and the schema migrations, the Prefect server (unless
`PREFECT_API_URL` points at one), the bundled demo agent (unless an agent is configured;
on port 8080, or on a free port when 8080 is taken), the worker (restarted if it dies) and
the API. Then one banner says where everything is.
Ctrl-C or SIGTERM stops what was started, in reverse order, and exits 0.

The `--*-command` options replace a child's command line (stand-ins for tests); they may use
`{python}`, `{host}` and `{port}`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flows.settings import PROJECT_ROOT, Settings, get_settings
from stack.embedded_postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    ensure_databases,
    prefect_database_url,
    redacted_url,
)
from stack.prefect_server import prefect_env, start_prefect_server
from stack.supervisor import Child, ChildFailed, Supervisor, port_is_free, wait_ready

EMBEDDED_DATABASE = "taskflows"
PREFECT_DATABASE = "prefect"
PREFECT_PORT = 4200
WORKER_COMMAND = "{python} -m worker"
API_COMMAND = "{python} -m uvicorn api.app:app --host {host} --port {port}"
AGENT_COMMAND = "{python} -m stack.demo_agent --host {host} --port {port}"


class UpError(RuntimeError):
    """A start-up problem the user can fix; printed as one sentence, without a traceback."""


@dataclass
class Stack:
    """What `up` started, so that exactly that is stopped again."""

    supervisor: Supervisor
    postgres: EmbeddedPostgres | None = None
    summary: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        self.supervisor.stop_all()
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except EmbeddedPostgresError as exc:
                _progress(str(exc))


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    args = _parse_args(argv, settings)
    stack = Stack(Supervisor(settings.data_dir / "logs"))
    # SIGTERM and a closed terminal stop `up` the way Ctrl-C does. SIGINT is set explicitly:
    # a shell starting `up` in the background hands it SIGINT ignored. A SIGHUP that is
    # ignored (nohup) stays ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)
    code = 0
    try:
        _start(stack, settings, args)
        print(_banner(stack.summary, settings), flush=True)
        _watch(stack.supervisor)
    except KeyboardInterrupt:
        pass
    except (UpError, ChildFailed, EmbeddedPostgresError, psycopg.Error) as exc:
        print(f"up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # A second Ctrl-C must not cut the shutdown short and leave processes behind.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _still_stopping)
        _progress("stopping...")
        stack.stop()
        _progress("stopped")
    return code


def _start(stack: Stack, settings: Settings, args: argparse.Namespace) -> None:
    start_prefect = settings.prefect_api_url is None
    start_agent = not settings.agent_configured
    agent_host, agent_port = "127.0.0.1", settings.agent_api_port
    # Check every port first: better to refuse at once than after the database is up.
    if start_prefect:
        _require_free("127.0.0.1", PREFECT_PORT, "the Prefect server", "set PREFECT_API_URL")
    agent_note = " (bundled demo agent)"
    if start_agent and not port_is_free(agent_host, agent_port):
        # Nothing was configured, so nothing expects the demo agent on that port: any
        # free one will do, and every child is told where it is.
        taken, agent_port = agent_port, _any_free_port(agent_host)
        agent_note = f" (bundled demo agent; port {taken} was taken)"
        _progress(f"{agent_host}:{taken} is in use; the demo agent starts on port {agent_port}")
    _require_free(args.host, args.port, "the API", "use --port or API_PORT")

    database_url, admin_url = _database(stack, settings)
    _progress("applying migrations")
    _migrate(database_url)

    prefect_api_url = settings.resolved_prefect_api_url()
    stack.summary["Prefect UI"] = settings.prefect_ui_url()
    agent_url = (
        f"http://{agent_host}:{agent_port}" if start_agent else settings.resolved_agent_url()
    )
    stack.summary["Agent"] = agent_url + (agent_note if start_agent else "")
    env = {
        **prefect_env(prefect_api_url, home=settings.data_dir / "prefect-home"),
        "DATABASE_URL": database_url,
        "AGENT_API_URL": agent_url,
        "API_HOST": args.host,
        "API_PORT": str(args.port),
    }

    agent = None
    if start_agent:
        _progress("starting the demo agent")
        # Not waited for yet: it gets ready while the Prefect server starts.
        agent = _start_child(stack, "demo-agent", args.agent_command, agent_host, agent_port, env)
    if start_prefect:
        ensure_databases(admin_url, [PREFECT_DATABASE], {PREFECT_DATABASE: ["pg_trgm"]})
        _progress("starting the Prefect server (the first start migrates its database)")
        start_prefect_server(
            PREFECT_PORT,
            prefect_database_url(admin_url, PREFECT_DATABASE),
            home=settings.data_dir / "prefect-home",
            log_dir=stack.supervisor.log_dir,
            supervisor=stack.supervisor,
        )
    else:
        _check_prefect(prefect_api_url)
    if agent is not None:
        wait_ready(agent, f"{agent_url}/v1/models")

    _progress("starting the worker")
    _start_child(stack, "worker", args.worker_command, "", 0, env, restart=True)

    api_url = f"http://{_url_host(args.host)}:{args.port}"
    _progress("starting the API")
    _start_child(
        stack, "api", args.api_command, args.host, args.port, env, ready_url=f"{api_url}/healthz"
    )
    stack.summary["API"] = api_url
    stack.summary["API docs"] = f"{api_url}/docs"


def _check_prefect(api_url: str) -> None:
    """Refuse to start against a configured Prefect API that does not answer (the worker
    would otherwise die and restart in a loop)."""
    _progress(f"checking the Prefect API at {api_url}")
    # Imported here: only this path needs the Prefect client.
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def healthcheck() -> Exception | None:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            async with get_client() as client:
                return await client.api_healthcheck()

    error = asyncio.run(healthcheck())
    if error is not None:
        raise UpError(
            f"The Prefect API at {api_url} does not answer ({type(error).__name__}); "
            "start that server, or unset PREFECT_API_URL to let `up` run one."
        )


def _database(stack: Stack, settings: Settings) -> tuple[str, str]:
    """The taskflows database URL, and a URL on the same server that may create databases."""
    if settings.database_configured:
        database_url = settings.resolved_database_url()
        _create_configured_database(database_url)
        stack.summary["Database"] = redacted_url(database_url)
        return database_url, database_url
    pg_dir = settings.data_dir / "pg"
    stack.postgres = EmbeddedPostgres(pg_dir)
    _progress("starting the embedded PostgreSQL")
    admin_url = stack.postgres.start()
    ensure_databases(admin_url, [EMBEDDED_DATABASE])
    database_url = stack.postgres.url(EMBEDDED_DATABASE)
    stack.summary["Database"] = f"{redacted_url(database_url)} (embedded, {_short(pg_dir)})"
    return database_url, admin_url


def _create_configured_database(database_url: str) -> None:
    # A fresh server (e.g. DB_HOST=... DB_NAME=taskflows) may not have the database yet.
    # Without access to the maintenance database it must exist already; the first real
    # connection (the migrations) reports the problem then.
    name = str(conninfo_to_dict(database_url).get("dbname") or "")
    with suppress(psycopg.Error):
        ensure_databases(make_conninfo(database_url, dbname="postgres"), [name])


def _migrate(database_url: str) -> None:
    # Imported here: the flows package is only needed once a database is up.
    from flows.database import apply_migrations

    applied = asyncio.run(apply_migrations(database_url))
    if applied:
        _progress("applied " + ", ".join(applied))


def _start_child(
    stack: Stack,
    name: str,
    template: str,
    host: str,
    port: int,
    env: dict[str, str],
    *,
    ready_url: str | None = None,
    restart: bool = False,
) -> Child:
    argv = [
        part.format(python=sys.executable, host=host, port=port) for part in shlex.split(template)
    ]
    return stack.supervisor.start(
        name, argv, env=env, ready_url=ready_url, restart=restart, cwd=PROJECT_ROOT
    )


def _watch(supervisor: Supervisor) -> None:
    """Block until a signal arrives; a child that dies for good ends `up` with an error."""
    while True:
        for child in supervisor.failed():
            raise ChildFailed(f"{child.name} stopped unexpectedly; {child.log_tail()}")
        time.sleep(0.5)


def _banner(summary: dict[str, str], settings: Settings) -> str:
    order = ("API", "API docs", "Prefect UI", "Database", "Agent")
    rows: list[tuple[str, str]] = [(key, summary[key]) for key in order if key in summary]
    rows.append(("Logs", _short(settings.data_dir / "logs") + "/"))
    width = max(len(key) for key, _ in rows)
    lines = [f"  {key.ljust(width)}  {value}" for key, value in rows]
    return "\ntaskflows is up\n" + "\n".join(lines) + "\nPress Ctrl-C to stop.\n"


def _parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stack.up",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=settings.api_host, help="API host (API_HOST)")
    parser.add_argument("--port", type=int, default=settings.api_port, help="API port (API_PORT)")
    parser.add_argument("--api-command", default=API_COMMAND)
    parser.add_argument("--worker-command", default=WORKER_COMMAND)
    parser.add_argument("--agent-command", default=AGENT_COMMAND)
    return parser.parse_args(argv)


def _require_free(host: str, port: int, what: str, hint: str) -> None:
    if not port_is_free(host, port):
        raise UpError(
            f"{host}:{port} is already in use, so {what} cannot start there; "
            f"stop whatever listens there or {hint}."
        )


def _any_free_port(host: str) -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _url_host(host: str) -> str:
    # A wildcard bind is reached on loopback; an IPv6 literal needs brackets in a URL.
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _short(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _progress(message: str) -> None:
    print(f"up: {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    print("up: still stopping, please wait", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
