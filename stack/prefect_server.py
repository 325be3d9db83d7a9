"""The Prefect server process: its environment, its housekeeping settings and its start."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flows.settings import get_settings
from stack.supervisor import Child, ChildFailed, Supervisor


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


# Prefect server services taskflows does not use, off by default. Each line of the README's
# "Performance" section says how to switch one back on (set the variable to "true").
# The triggers and actions services (automations) stay on: alerts are automations, and an
# alert must work the moment it is set. They cost about 5 % of the Prefect server's CPU per
# run in `python -m bench --only burst` (README "Performance").
UNUSED_SERVICES = {
    # Task flows never pause or suspend.
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    # The event persister copies every event (three state changes per prompt) into the
    # events table, which only the UI's Events page reads. Task runs and their states do
    # not depend on it: the task-run recorder writes them from the same events, and
    # automations (alerts) read events from Prefect's messaging, not from that table.
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
}


# The task-run recorder writes task runs from the engines' events. Prefect's default batch
# is one event: a transaction per event, three per prompt. Batches of up to 50 (flushed at
# least every second) cut the Prefect server's CPU per run by about a third in `make bench`
# and let it keep up with a burst; a task run shows in the Prefect UI up to a second later.
RECORDER_BATCHING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def prefect_services_env() -> dict[str, str]:
    """Which Prefect server services run, and how they batch their writes. A variable the
    user set themselves wins over the values here."""
    wanted = {**UNUSED_SERVICES, **RECORDER_BATCHING}
    return {name: value for name, value in wanted.items() if name not in os.environ}


def redis_messaging_env(redis_url: str) -> dict[str, str]:
    """Prefect's Redis messaging, ordering and lease storage (`prefect-redis`): what lets the
    API and the background services run in separate processes, or on separate machines."""
    return {
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_URL": redis_url,
    }


def api_processes() -> int:
    """`PREFECT_API_PROCESSES`: how many API processes the split topology runs (default 1)."""
    raw = os.environ.get("PREFECT_API_PROCESSES", "1")
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(f"PREFECT_API_PROCESSES must be a whole number, got {raw!r}") from None
    if not 1 <= count <= 32:
        raise ValueError(f"PREFECT_API_PROCESSES must be between 1 and 32, got {count}")
    return count


def _prefect_command() -> list[str]:
    # The console script beside the interpreter is what `pip install prefect` gives users;
    # `-m prefect` is the same code when a venv has no scripts directory.
    script = Path(sys.executable).with_name("prefect")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prefect"]


_FROM_ENVIRONMENT = object()


def start_prefect_server(
    port: int,
    database_url_asyncpg: str,
    *,
    home: Path,
    log_dir: Path,
    supervisor: Supervisor | None = None,
    timeout: float = 120.0,
    redis_url: str | object | None = _FROM_ENVIRONMENT,
    processes: int | None = None,
) -> Child:
    """Run the Prefect server on 127.0.0.1:`port`; return once /api/health is 200.

    One process (`prefect server start`: API and services) by default. With a Redis URL
    (`redis_url`, by default `REDIS_URL` from the environment) the split topology: the
    database is migrated once, then `prefect server services start` (every background
    service, one process) and `prefect server start --no-services` with `processes` API
    processes (default `PREFECT_API_PROCESSES`, 1), over Prefect's Redis messaging.
    Returns the API's child; the services' child is named "prefect-services".

    A fresh database is migrated on the first start, which is the slow part.
    """
    if redis_url is _FROM_ENVIRONMENT:
        redis_url = os.environ.get("REDIS_URL") or None
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **prefect_env(api_url, home=home),
        **prefect_housekeeping_env(get_settings().prefect_retention_days),
        **prefect_services_env(),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url_asyncpg,
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "true",
        "PREFECT_UI_API_URL": api_url,
    }
    supervisor = supervisor or Supervisor(log_dir)
    command = _prefect_command()
    serve = [*command, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    if redis_url is None:
        return supervisor.start(
            "prefect-server", serve, env=env, ready_url=f"{api_url}/health", ready_timeout=timeout
        )
    assert isinstance(redis_url, str)
    env = {
        **env,
        **redis_messaging_env(redis_url),
        "PREFECT_API_DATABASE_MIGRATE_ON_START": "false",
    }
    _migrate(command, env, log_dir, timeout)
    services = supervisor.start(
        "prefect-services", [*command, "server", "services", "start"], env=env
    )
    count = processes or api_processes()
    api = supervisor.start(
        "prefect-server",
        [*serve, "--no-services", *(["--workers", str(count)] if count > 1 else [])],
        env=env,
        ready_url=f"{api_url}/health",
        ready_timeout=timeout,
    )
    if not services.running():
        raise ChildFailed(f"the Prefect services process exited at start\n{services.log_tail()}")
    return api


def _migrate(command: list[str], env: dict[str, str], log_dir: Path, timeout: float) -> None:
    """Bring the Prefect database to the current schema once, before its processes start
    (several API processes migrating at once would race)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "prefect-migrate.log"
    with open(log_path, "wb") as log:
        done = subprocess.run(
            [*command, "server", "database", "upgrade", "-y"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise ChildFailed("migrating the Prefect database failed:\n" + "\n".join(tail))


_CLAIM_KEY = "taskflows:claimed-by"


@contextlib.contextmanager
def private_redis_database(redis_url: str) -> Iterator[str]:
    """A Redis database of its own (1-15 on `redis_url`'s server) for a throwaway Prefect
    server (tests, bench): Prefect's stream names are fixed, so two servers sharing one
    database would consume each other's events. Claimed with a marker key, emptied and
    released on leaving. Yields the URL with that database."""
    import redis

    token = uuid.uuid4().hex
    parts = urlsplit(redis_url)
    for number in range(1, 16):
        url = urlunsplit(parts._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url)
        try:
            if not client.set(_CLAIM_KEY, token, nx=True, ex=86_400):
                continue
            if client.dbsize() != 1:  # someone else's data without our marker: leave it
                client.delete(_CLAIM_KEY)
                continue
            try:
                yield url
            finally:
                if client.get(_CLAIM_KEY) == token.encode():
                    client.flushdb()
            return
        finally:
            client.close()
    raise RuntimeError(f"no free Redis database (1-15) on {parts.hostname}:{parts.port}")
