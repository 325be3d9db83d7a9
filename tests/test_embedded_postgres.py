"""The embedded PostgreSQL `make up` runs: it listens on TCP, needs a password on every
connection, keeps its data across restarts, and hands Prefect a URL it accepts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from stack.embedded_postgres import (
    EmbeddedPostgres,
    EmbeddedPostgresError,
    ensure_databases,
    prefect_database_url,
    redacted_url,
)


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A fresh folder outside pytest's: as root the server runs as another user, who must
    traverse every parent, and other pytest sessions reset theirs to 0700 at any time."""
    folder = Path(tempfile.mkdtemp(prefix="taskflows-pg-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_data_survives_a_restart_on_the_same_directory(work_dir: Path) -> None:
    pg = EmbeddedPostgres(work_dir / "pg")
    try:
        admin_url = pg.start()
        password = pg.password_file.read_text().strip()
        assert admin_url == f"postgresql://postgres:{password}@127.0.0.1:{pg.port}/postgres"
        for _ in range(2):  # the second call finds everything in place
            ensure_databases(admin_url, ["probe"], {"probe": ["pg_trgm"]})
        with psycopg.connect(pg.url("probe"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (name text)")
            conn.execute("INSERT INTO kept VALUES ('taskflows')")
            similar = conn.execute("SELECT similarity('taskflows', 'taskflow') > 0.5").fetchone()
            assert similar == (True,)

        # A second manager on the same directory reuses the running server.
        assert EmbeddedPostgres(work_dir / "pg").start() == admin_url

        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url("probe"), connect_timeout=2)

        restarted = EmbeddedPostgres(work_dir / "pg")
        assert restarted.start() == admin_url  # the remembered port
        with psycopg.connect(restarted.url("probe")) as conn:
            assert conn.execute("SELECT name FROM kept").fetchall() == [("taskflows",)]
            extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
            assert ("pg_trgm",) in extensions
    finally:
        pg.stop()


def test_a_taken_port_moves_the_server_to_a_free_one(work_dir: Path) -> None:
    pg = EmbeddedPostgres(work_dir / "pg")
    try:
        pg.start()
        first_port = pg.port
        assert first_port is not None
        pg.stop()
        with socket.socket() as squatter:
            # The stopped server's socket may linger in TIME_WAIT; take the port anyway.
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", first_port))
            squatter.listen()
            pg.start()
            assert pg.port != first_port
            with psycopg.connect(pg.url("postgres")) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()


def _connect_without_password(port: int, host: str = "127.0.0.1") -> None:
    psycopg.connect(
        host=host, port=port, user="postgres", dbname="postgres", connect_timeout=5
    ).close()


def test_every_connection_needs_the_generated_password(work_dir: Path) -> None:
    pg = EmbeddedPostgres(work_dir / "pg")
    try:
        admin_url = pg.start()
        assert pg.port is not None
        # The password lives beside the cluster, readable by this user only.
        mode = stat.S_IMODE(pg.password_file.stat().st_mode)
        assert mode == 0o600, oct(mode)
        assert pg.password_file.parent == work_dir
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect_without_password(pg.port)
        # Over the unix socket too (any local user can reach it otherwise).
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect_without_password(pg.port, host=str(pg.data_dir))
        wrong = admin_url.replace(f":{urlsplit(admin_url).password}@", ":guessed@")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong, connect_timeout=5).close()
        with psycopg.connect(admin_url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        hba = (pg.data_dir / "pg_hba.conf").read_text()
        assert not re.search(r"^\s*(local|host)\S*\s.*\strust\b", hba, re.MULTILINE), hba
    finally:
        pg.stop()


def _make_it_trust_as_before(pg: EmbeddedPostgres) -> None:
    """Turn a cluster into what older versions made: trust auth, no password file."""
    hba = pg.data_dir / "pg_hba.conf"
    hba.write_text(re.sub(r"scram-sha-256", "trust", hba.read_text()))
    pg.password_file.unlink()


def test_a_cluster_made_with_trust_auth_is_migrated_on_start(work_dir: Path) -> None:
    pg = EmbeddedPostgres(work_dir / "pg")
    try:
        admin_url = pg.start()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE kept")
        pg.stop()
        _make_it_trust_as_before(pg)

        upgraded = EmbeddedPostgres(work_dir / "pg")
        new_url = upgraded.start()
        assert new_url != admin_url  # a new password was generated and set
        assert stat.S_IMODE(upgraded.password_file.stat().st_mode) == 0o600
        with psycopg.connect(upgraded.url("kept")) as conn:  # the data is still there
            assert conn.execute("SELECT current_database()").fetchone() == ("kept",)
        assert upgraded.port is not None
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect_without_password(upgraded.port)

        # A trust-auth server still running from the old version is migrated in place.
        with psycopg.connect(new_url, autocommit=True) as conn:
            _make_it_trust_as_before(upgraded)
            conn.execute("SELECT pg_reload_conf()")
        running = EmbeddedPostgres(work_dir / "pg")
        running.start()
        assert running.port == upgraded.port
        with pytest.raises(psycopg.OperationalError, match="password"):
            _connect_without_password(upgraded.port)
        with psycopg.connect(running.url("kept")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.stop()


def test_a_lost_password_file_is_explained(work_dir: Path) -> None:
    pg = EmbeddedPostgres(work_dir / "pg")
    try:
        pg.start()
        pg.password_file.unlink()
        with pytest.raises(EmbeddedPostgresError, match="is missing: restore that file"):
            EmbeddedPostgres(work_dir / "pg").start()
    finally:
        pg.stop()


def test_a_socket_directory_others_can_enter_is_refused(work_dir: Path) -> None:
    # A checkout deep enough that the socket must go to the shared temporary folder.
    deep = work_dir / ("d" * 60) / ("e" * 60) / "pg"
    digest = hashlib.sha256(str(deep.resolve()).encode()).hexdigest()[:12]
    planted = Path(tempfile.gettempdir()) / f"taskflows-pg-{digest}"
    planted.mkdir()
    try:
        planted.chmod(0o777)  # made first by someone else, open to all
        with pytest.raises(EmbeddedPostgresError, match="not a private directory"):
            EmbeddedPostgres(deep).start()
        assert not (deep / "postmaster.pid").exists()  # nothing was started
        os.chmod(planted, 0o700)
        if os.geteuid() != 0:  # as root the server runs as its own user, who must own it
            pg = EmbeddedPostgres(deep)
            try:
                pg.start()
                assert any(planted.iterdir())  # the socket is there
            finally:
                pg.stop()
    finally:
        shutil.rmtree(planted, ignore_errors=True)


@pytest.mark.parametrize(
    ("libpq_url", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:54329/postgres",
            "postgresql+asyncpg://postgres@127.0.0.1:54329/prefect",
        ),
        (
            "postgres://u:p%40ss@db.example:5433/taskflows?sslmode=require&connect_timeout=5",
            "postgresql+asyncpg://u:p%40ss@db.example:5433/prefect?ssl=require",
        ),
        (
            "host=db user=u password='p w' dbname=taskflows application_name=x",
            "postgresql+asyncpg://u:p%20w@db/prefect",
        ),
        (
            "postgresql://u@/taskflows?host=/run/postgresql",
            "postgresql+asyncpg://u@/prefect?host=%2Frun%2Fpostgresql",
        ),
    ],
)
def test_prefect_database_url_rewrites_libpq_urls(libpq_url: str, expected: str) -> None:
    assert prefect_database_url(libpq_url) == expected


def test_prefect_database_url_can_name_another_database() -> None:
    url = prefect_database_url("postgresql://postgres@127.0.0.1:5432/postgres", "prefect_ci")
    assert url == "postgresql+asyncpg://postgres@127.0.0.1:5432/prefect_ci"


def test_redacted_url_never_shows_the_password() -> None:
    shown = redacted_url("postgresql://u:s3cret@db:5433/taskflows")
    assert shown == "postgresql://u@db:5433/taskflows"
