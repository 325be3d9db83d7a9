"""Connections to the taskflows database and the schema migrations in `sql/`.

Migrations are the numbered files `sql/NNN_*.sql`, applied in order, each once, inside one
transaction that holds an advisory lock, so two processes starting at once (the API and the
worker under `make up`) never apply the same file twice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

import sql

# The migrations are package data (`sql/`), found beside the installed package, not
# through the checkout, so a wheel creates its tables too.
SQL_DIR = Path(next(iter(sql.__path__)))
# Any constant shared by every taskflows process; "taskflow" in ASCII.
_MIGRATION_LOCK_ID = 0x7461736B666C6F77

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The migration files in the order they are applied."""
    return sorted(path for path in sql_dir.glob("[0-9][0-9][0-9]_*.sql"))


async def apply_migrations(database_url: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply every migration not applied yet; return the names of those applied now."""
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=False) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cursor = await conn.execute("SELECT name FROM schema_migrations")
            done = {row[0] for row in await cursor.fetchall()}
            for path in migration_files(sql_dir):
                if path.name in done:
                    continue
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
                applied_now.append(path.name)
    return applied_now


def create_pool(
    database_url: str, *, max_size: int = 10, name: str = "taskflows", timeout: float = 30.0
) -> Pool:
    """A bounded pool of autocommit connections returning rows as dicts (not yet opened).

    Bounded on purpose: the old design opened a connection per runner and exhausted
    PostgreSQL under load. `timeout` bounds the wait for a connection, so a request fails
    fast (503) while the database is down. Callers `await pool.open()` before use.
    """
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        name=name,
        timeout=timeout,
        open=False,
        # A restarted PostgreSQL leaves dead connections in the pool: check before lending
        # (but not one that was just used: see `_check_unless_just_used`).
        check=_check_unless_just_used,
        reset=_note_returned,
        reconnect_timeout=300,
    )


# A connection handed back this recently is taken as alive without a round trip: checking
# every loan cost a round trip per API request (about a third of a small read). After a
# restart of PostgreSQL the pool's connections sit unused for longer than this, so they are
# checked; one that breaks in use anyway is discarded by the pool when it comes back.
_JUST_USED_S = 1.0
_returned_at: WeakKeyDictionary[Any, float] = WeakKeyDictionary()


async def _note_returned(conn: psycopg.AsyncConnection[Any]) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_unless_just_used(conn: psycopg.AsyncConnection[Any]) -> None:
    returned = _returned_at.get(conn)
    if returned is not None and time.monotonic() - returned < _JUST_USED_S:
        return
    await AsyncConnectionPool.check_connection(conn)
