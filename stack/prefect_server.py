"""The Prefect server process: its environment, its housekeeping settings and its start."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flows.settings import get_settings
from stack.supervisor import Child, Supervisor


def prefect_env(api_url: str, *, home: Path | None = None) -> dict[str, str]:
    """The environment every taskflows process needs to talk to the Prefect server."""
    return {
        "PREFECT_API_URL": api_url,
        # Without an API URL Prefect silently starts a private SQLite server per process.
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(home or get_settings().data_dir / "prefect-home"),
    }


def prefect_housekeeping_env(retention_days: int) -> dict[str, str]:
    """What keeps a long-lived Prefect server's database from growing without bound.

    Prefect's db_vacuum service (hourly) deletes finished flow runs, with their task runs,
    logs and artifacts, and events older than `retention_days` (`PREFECT_RETENTION_DAYS`).
    A Prefect variable the user set themselves wins over the value derived here.
    """
    period = f"P{retention_days}D"  # ISO 8601: Prefect's events setting refuses bare seconds
    wanted = {
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": period,
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": period,
    }
    return {name: value for name, value in wanted.items() if name not in os.environ}


def start_prefect_server(
    port: int,
    database_url_asyncpg: str,
    *,
    home: Path,
    log_dir: Path,
    supervisor: Supervisor | None = None,
    timeout: float = 120.0,
) -> Child:
    """Run `prefect server start` on 127.0.0.1:`port` and return once /api/health is 200.

    A fresh database is migrated on the first start, which is the slow part.
    """
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **prefect_env(api_url, home=home),
        **prefect_housekeeping_env(get_settings().prefect_retention_days),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url_asyncpg,
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "true",
        "PREFECT_UI_API_URL": api_url,
    }
    # The console script beside the interpreter is what `pip install prefect` gives users;
    # `-m prefect` is the same code when a venv has no scripts directory.
    script = Path(sys.executable).with_name("prefect")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]
    supervisor = supervisor or Supervisor(log_dir)
    return supervisor.start(
        "prefect-server",
        [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        ready_url=f"{api_url}/health",
        ready_timeout=timeout,
    )
