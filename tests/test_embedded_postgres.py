"""The embedded PostgreSQL `make up` runs: it listens on TCP, keeps its data across restarts,
and hands Prefect a URL it accepts."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from stack.embedded_postgres import (
    EmbeddedPostgres,
    ensure_databases,
    prefect_database_url,
    redacted_url,
)


def test_data_survives_a_restart_on_the_same_directory(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    try:
        admin_url = pg.start()
        assert admin_url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        for _ in range(2):  # the second call finds everything in place
            ensure_databases(admin_url, ["probe"], {"probe": ["pg_trgm"]})
        with psycopg.connect(pg.url("probe"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (name text)")
            conn.execute("INSERT INTO kept VALUES ('taskflows')")
            similar = conn.execute("SELECT similarity('taskflows', 'taskflow') > 0.5").fetchone()
            assert similar == (True,)

        # A second manager on the same directory reuses the running server.
        assert EmbeddedPostgres(tmp_path / "pg").start() == admin_url

        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.url("probe"), connect_timeout=2)

        restarted = EmbeddedPostgres(tmp_path / "pg")
        assert restarted.start() == admin_url  # the remembered port
        with psycopg.connect(restarted.url("probe")) as conn:
            assert conn.execute("SELECT name FROM kept").fetchall() == [("taskflows",)]
            extensions = conn.execute("SELECT extname FROM pg_extension").fetchall()
            assert ("pg_trgm",) in extensions
    finally:
        pg.stop()


def test_a_taken_port_moves_the_server_to_a_free_one(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
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
