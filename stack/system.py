"""Start all of taskflows on this machine, and stop it again: the one start-up shared by
`make up` (stack/up.py), the tests (tests/conftest.py) and the bench (bench/system.py).

In order: the ports are checked; PostgreSQL (the configured server, or an embedded one in
`work_dir/pg`); the `taskflows` and `prefect` databases and the schema migrations; the demo
agent (when no agent URL is given); the Prefect server (unless an existing Prefect API is
given); the worker; the API. `start_system` returns a `System` that says where each part is;
`System.stop()` stops exactly what was started, the last started first. Example::

    options = SystemOptions(work_dir=tmp, fresh_databases="test", agent_url=agent_url)
    with start_system(options) as system:
        httpx.get(f"{system.api_url}/healthz")

A start that fails half way stops what it had started before it raises.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flows.errors import EmbeddedPostgresError, StartError
from flows.settings import PROJECT_ROOT
from stack.commands import api_argv, demo_agent_argv, worker_argv
from stack.embedded_postgres import EmbeddedPostgres, ensure_databases, prefect_database_url
from stack.ports import free_port, port_is_free
from stack.prefect_server import prefect_env, start_prefect_server
from stack.supervisor import Child, Supervisor, wait_ready

APP_DATABASE = "taskflows"
PREFECT_DATABASE = "prefect"


def _silent(message: str) -> None:
    pass


@dataclass(frozen=True, kw_only=True)
class SystemOptions:
    """What to start and where. The defaults suit a throwaway system; `make up` sets more."""

    # prefect-home/ lives here, and pg/ when PostgreSQL is embedded.
    work_dir: Path
    # One log per child; `work_dir/logs` by default.
    log_dir: Path | None = None
    # A configured database. Without `fresh_databases` it is the taskflows database itself
    # (created if missing); with it, only its server is used. None: an embedded PostgreSQL.
    database_url: str | None = None
    # A label such as "test": fresh databases `taskflows_test_<id>` and `prefect_test_<id>`,
    # dropped by `stop()`. None: the databases `taskflows` and `prefect`, kept.
    fresh_databases: str | None = None
    # An existing Prefect API to use; None starts a Prefect server on `prefect_port`.
    prefect_api_url: str | None = None
    # Ports: None picks a free one.
    prefect_port: int | None = None
    # The agent the worker talks to; None starts the bundled demo agent on `demo_agent_port`
    # (on a free port instead when that one is taken).
    agent_url: str | None = None
    demo_agent_port: int | None = None
    api_host: str = "127.0.0.1"
    api_port: int | None = None
    # Added to the environment of the worker and the API (tests shorten timeouts here).
    env: Mapping[str, str] = field(default_factory=dict)
    # More environment for one child, given its name and environment (the bench's trace hook).
    child_env: Callable[[str, Mapping[str, str]], Mapping[str, str]] | None = None
    # Start the worker again when it dies (`make up`); the tests kill workers on purpose.
    restart_worker: bool = False
    # A stand-in for the worker's command (`up --worker-command`, for tests of `up` itself).
    worker_command: Sequence[str] | None = None
    api_ready_timeout: float = 60.0
    prefect_ready_timeout: float = 120.0
    # Called with one line per step ("starting the API").
    progress: Callable[[str], None] = _silent


@dataclass
class System:
    """Where each part of a running system is, and how to stop it."""

    database_url: str  # the taskflows database
    admin_url: str  # a URL on the same server that may create databases
    prefect_api_url: str
    agent_url: str
    api_url: str
    # The environment the worker and the API run with (a new worker gets the same).
    env: dict[str, str]
    supervisor: Supervisor
    api: Child
    # What this system runs itself; None where it uses what it was given.
    embedded_postgres: EmbeddedPostgres | None
    prefect_server: Child | None
    demo_agent: Child | None
    # The port the demo agent was meant for when something else held it.
    demo_agent_port_taken: int | None
    _started: _Started = field(repr=False)

    def worker(self) -> Child:
        """The worker serving now: the last started that runs, else the last started."""
        workers = [c for c in self.supervisor.children if c.name == "worker"]
        running = [c for c in workers if c.running()]
        return (running or workers)[-1]

    def start_worker(self) -> Child:
        """Start another worker process (a replacement after a kill, or a second one)."""
        return self.supervisor.start("worker", worker_argv(), env=self.env, cwd=PROJECT_ROOT)

    def stop(self) -> None:
        """Stop what was started, the last started first; a second call does nothing."""
        self._started.stop()

    def __enter__(self) -> System:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_system(options: SystemOptions) -> System:
    """Start everything `options` asks for; see the module docstring."""
    log_dir = options.log_dir or options.work_dir / "logs"
    started = _Started(Supervisor(log_dir), options.progress)
    try:
        return _start(options, started)
    except BaseException:
        started.stop()
        raise


class _Started:
    """What has been started so far, so that a failed start stops exactly that too."""

    def __init__(self, supervisor: Supervisor, progress: Callable[[str], None]) -> None:
        self.supervisor = supervisor
        self.progress = progress
        self.postgres: EmbeddedPostgres | None = None
        self.fresh_databases: list[str] = []
        self.admin_url = ""
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        interrupted = False
        for step in (self.supervisor.stop_all, self._drop_fresh_databases, self._stop_postgres):
            # A Ctrl-C while stopping must not leave processes or databases behind: each
            # step is finished (they are idempotent), then the interrupt goes on.
            while True:
                try:
                    step()
                    break
                except KeyboardInterrupt:
                    interrupted = True
        self._stopped = True
        if interrupted:
            raise KeyboardInterrupt

    def _drop_fresh_databases(self) -> None:
        if not self.fresh_databases:
            return
        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10) as conn:
                for name in self.fresh_databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            # An embedded server's directory is thrown away anyway.
            if self.postgres is None:
                self.progress(f"could not drop the databases {self.fresh_databases}: {exc}")
        self.fresh_databases = []

    def _stop_postgres(self) -> None:
        if self.postgres is not None:
            try:
                self.postgres.stop()
            except EmbeddedPostgresError as exc:
                self.progress(str(exc))
            self.postgres = None


def _start(options: SystemOptions, started: _Started) -> System:
    progress, supervisor = options.progress, started.supervisor
    start_prefect, start_agent = options.prefect_api_url is None, options.agent_url is None
    prefect_port = options.prefect_port or free_port()
    agent_port = options.demo_agent_port or free_port()
    api_port = options.api_port or free_port()
    # Check every port first: better to refuse at once than after the database is up.
    if start_prefect:
        _require_free("127.0.0.1", prefect_port, "the Prefect server", "set PREFECT_API_URL")
    demo_agent_port_taken = None
    if start_agent and not port_is_free("127.0.0.1", agent_port):
        # Nothing was configured, so nothing expects the demo agent on that port: any free
        # one will do, and every child is told where it is.
        demo_agent_port_taken, agent_port = agent_port, free_port()
        progress(
            f"127.0.0.1:{demo_agent_port_taken} is in use; "
            f"the demo agent starts on port {agent_port}"
        )
    _require_free(options.api_host, api_port, "the API", "use --port or API_PORT")

    database_url, admin_url, prefect_database = _databases(options, started)
    progress("applying migrations")
    _migrate(database_url, progress)

    prefect_api_url = (options.prefect_api_url or f"http://127.0.0.1:{prefect_port}/api").rstrip(
        "/"
    )
    agent_url = options.agent_url or f"http://127.0.0.1:{agent_port}"
    home = options.work_dir / "prefect-home"
    env = {
        **prefect_env(prefect_api_url, home=home),
        "DATABASE_URL": database_url,
        "AGENT_API_URL": agent_url,
        "API_HOST": options.api_host,
        "API_PORT": str(api_port),
        **options.env,
    }

    def child_env(name: str) -> dict[str, str]:
        return {**env, **(options.child_env(name, env) if options.child_env else {})}

    demo_agent = None
    if start_agent:
        progress("starting the demo agent")
        # Not waited for yet: it gets ready while the Prefect server starts.
        demo_agent = supervisor.start(
            "demo-agent", demo_agent_argv(agent_port), env=child_env("demo-agent"), cwd=PROJECT_ROOT
        )
    prefect_server = None
    if start_prefect:
        ensure_databases(admin_url, [prefect_database], {prefect_database: ["pg_trgm"]})
        progress("starting the Prefect server (the first start migrates its database)")
        prefect_server = start_prefect_server(
            prefect_port,
            prefect_database_url(admin_url, prefect_database),
            home=home,
            log_dir=supervisor.log_dir,
            supervisor=supervisor,
            timeout=options.prefect_ready_timeout,
        )
    else:
        _check_prefect(prefect_api_url, progress)
    if demo_agent is not None:
        wait_ready(demo_agent, f"{agent_url}/v1/models")

    progress("starting the worker")
    supervisor.start(
        "worker",
        options.worker_command or worker_argv(),
        env=child_env("worker"),
        restart=options.restart_worker,
        cwd=PROJECT_ROOT,
    )
    api_url = f"http://{_url_host(options.api_host)}:{api_port}"
    progress("starting the API")
    api = supervisor.start(
        "api",
        api_argv(api_port, options.api_host),
        env=child_env("api"),
        ready_url=f"{api_url}/healthz",  # 200 once the worker is online too
        ready_timeout=options.api_ready_timeout,
        cwd=PROJECT_ROOT,
    )
    return System(
        database_url=database_url,
        admin_url=admin_url,
        prefect_api_url=prefect_api_url,
        agent_url=agent_url,
        api_url=api_url,
        env=env,
        supervisor=supervisor,
        api=api,
        embedded_postgres=started.postgres,
        prefect_server=prefect_server,
        demo_agent=demo_agent,
        demo_agent_port_taken=demo_agent_port_taken,
        _started=started,
    )


def _databases(options: SystemOptions, started: _Started) -> tuple[str, str, str]:
    """(taskflows database URL, a URL that may create databases, the Prefect database name)."""
    if options.database_url is not None:
        admin_url = _with_database(options.database_url, "postgres")
        if options.fresh_databases is None:
            _create_configured_database(options.database_url, admin_url)
            return options.database_url, options.database_url, PREFECT_DATABASE
    else:
        options.progress("starting the embedded PostgreSQL")
        started.postgres = EmbeddedPostgres(options.work_dir / "pg")
        admin_url = started.postgres.start()
        if options.fresh_databases is None:
            ensure_databases(admin_url, [APP_DATABASE])
            return _with_database(admin_url, APP_DATABASE), admin_url, PREFECT_DATABASE
    suffix = f"{options.fresh_databases}_{uuid.uuid4().hex[:8]}"
    app_db, prefect_db = f"{APP_DATABASE}_{suffix}", f"{PREFECT_DATABASE}_{suffix}"
    # Noted before creating them, so a failure half way still drops what was made.
    started.admin_url, started.fresh_databases = admin_url, [app_db, prefect_db]
    ensure_databases(admin_url, [app_db, prefect_db], {prefect_db: ["pg_trgm"]})
    return _with_database(admin_url, app_db), admin_url, prefect_db


def _create_configured_database(database_url: str, maintenance_url: str) -> None:
    # A fresh server (e.g. DB_HOST=... DB_NAME=taskflows) may not have the database yet.
    # Without access to the maintenance database it must exist already; the first real
    # connection (the migrations) reports the problem then.
    name = str(conninfo_to_dict(database_url).get("dbname") or "")
    with suppress(psycopg.Error):
        ensure_databases(maintenance_url, [name])


def _with_database(url: str, database: str) -> str:
    """`url` pointed at another database on the same server, in the form it was given."""
    if "://" in url:
        return urlunsplit(urlsplit(url)._replace(path="/" + database))
    return make_conninfo(url, dbname=database)


def _migrate(database_url: str, progress: Callable[[str], None]) -> None:
    # Imported here: the flows package is only needed once a database is up.
    from flows.database import apply_migrations

    applied = asyncio.run(apply_migrations(database_url))
    if applied:
        progress("applied " + ", ".join(applied))


def _check_prefect(api_url: str, progress: Callable[[str], None]) -> None:
    """Refuse to start against a configured Prefect API that does not answer (the worker
    would otherwise die and restart in a loop)."""
    progress(f"checking the Prefect API at {api_url}")
    # Imported here: only this path needs the Prefect client.
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def healthcheck() -> Exception | None:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            async with get_client() as client:
                return await client.api_healthcheck()

    error = asyncio.run(healthcheck())
    if error is not None:
        raise StartError(
            f"The Prefect API at {api_url} does not answer ({type(error).__name__}); "
            "start that server, or unset PREFECT_API_URL to let `up` run one."
        )


def _require_free(host: str, port: int, what: str, hint: str) -> None:
    if not port_is_free(host, port):
        raise StartError(
            f"{host}:{port} is already in use, so {what} cannot start there; "
            f"stop whatever listens there or {hint}."
        )


def _url_host(host: str) -> str:
    # A wildcard bind is reached on loopback; an IPv6 literal needs brackets in a URL.
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
