"""`make up`: run all of taskflows on this machine, until Ctrl-C.

`stack.system.start_system` starts the database (the configured one, or the embedded
PostgreSQL in `.data/pg`), the `taskflows` and `prefect` databases and the schema migrations,
the Prefect server (unless `PREFECT_API_URL` points at one), the bundled demo agent (unless
an agent is configured; on port 8080, or on a free port when 8080 is taken), the worker
(restarted if it dies) and the API. What is `up`'s own:
the settings it reads (a bad one, or an API_HOST beyond loopback without a token, is refused
in a sentence before anything starts), one banner that says where everything is, and the
signals. Ctrl-C or SIGTERM stops what was started, in reverse order, and exits 0.

`--worker-command` replaces the worker's command line (a stand-in for tests of `up`); it may
use `{python}`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import psycopg

from flows.errors import ChildFailed, TaskflowsError, UnsafeExposure
from flows.settings import Settings, check_exposure, exit_for_settings, settings_or_exit
from stack.embedded_postgres import redacted_url
from stack.supervisor import Supervisor
from stack.system import System, SystemOptions, start_system

PREFECT_PORT = 4200
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    # What the API or the worker would refuse later is refused now, before anything starts.
    settings = settings_or_exit("up")
    args = _parse_args(argv, settings)
    try:
        check_exposure(args.host, settings.api_token, allow_no_token=settings.allow_no_token)
    except UnsafeExposure as refused:
        exit_for_settings("up", [str(refused)])
    # SIGTERM and a closed terminal stop `up` the way Ctrl-C does. SIGINT is set explicitly:
    # a shell starting `up` in the background hands it SIGINT ignored. A SIGHUP that is
    # ignored (nohup) stays ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)
    system: System | None = None
    code = 0
    try:
        system = start_system(_options(settings, args))
        print(_banner(system, settings), flush=True)
        _watch(system.supervisor)
    except KeyboardInterrupt:
        pass
    except (TaskflowsError, psycopg.Error) as exc:
        print(f"up: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        _ignore_more_signals()
        _progress("stopping...")
        if system is not None:
            system.stop()
        _progress("stopped")
    return code


def _options(settings: Settings, args: argparse.Namespace) -> SystemOptions:
    return SystemOptions(
        work_dir=settings.data_dir,
        log_dir=settings.data_dir / "logs",
        database_url=settings.resolved_database_url() if settings.database_configured else None,
        prefect_api_url=settings.prefect_api_url,
        prefect_port=PREFECT_PORT,
        agent_url=settings.resolved_agent_url() if settings.agent_configured else None,
        demo_agent_port=settings.agent_api_port,
        api_host=args.host,
        api_port=args.port,
        restart_worker=True,
        worker_command=_worker_command(args.worker_command),
        progress=_progress,
    )


def _watch(supervisor: Supervisor) -> None:
    """Block until a signal arrives; a child that dies for good ends `up` with an error."""
    while True:
        for child in supervisor.failed():
            raise ChildFailed(f"{child.name} stopped unexpectedly; {child.log_tail()}")
        time.sleep(0.5)


def _worker_command(template: str | None) -> list[str] | None:
    if template is None:
        return None
    return [part.format(python=sys.executable) for part in shlex.split(template)]


def _banner(system: System, settings: Settings) -> str:
    database = redacted_url(system.database_url)
    if system.embedded_postgres is not None:
        database += f" (embedded, {_short(system.embedded_postgres.data_dir)})"
    agent = system.agent_url
    if system.demo_agent_port_taken is not None:
        agent += f" (bundled demo agent; port {system.demo_agent_port_taken} was taken)"
    elif system.demo_agent is not None:
        agent += " (bundled demo agent)"
    rows = [
        ("API", system.api_url),
        ("API docs", f"{system.api_url}/docs"),
        ("Prefect UI", settings.resolved_prefect_ui_url()),
        ("Database", database),
        ("Agent", agent),
        ("Logs", _short(system.supervisor.log_dir) + "/"),
    ]
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
    parser.add_argument("--worker-command", help="a stand-in for the worker (tests)")
    return parser.parse_args(argv)


def _short(path: Path) -> str:
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def _progress(message: str) -> None:
    print(f"up: {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # From the first signal on, more signals must not cut the stop short.
    _ignore_more_signals()
    raise KeyboardInterrupt


def _ignore_more_signals() -> None:
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _still_stopping)


def _still_stopping(signum: int, frame: FrameType | None) -> None:
    print("up: still stopping, please wait", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
