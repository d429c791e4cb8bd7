"""Connections are kept between requests (issue 14, item 6).

Under ASGI Django gives every request a context of its own, so ``CONN_MAX_AGE`` never reuses a
connection; on SQLite ``conversations.sqlite_pool`` keeps them (PostgreSQL has psycopg's pool,
configured in ``dashboard.settings``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.backends.signals import connection_created

from conversations.sqlite_pool import PooledSQLiteConnection, SQLiteConnectionPool


def _asgi_get(app: Any, path: str) -> int:
    statuses = []

    async def go() -> None:
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver")],
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
        }
        await app(scope, receive, send)

    asyncio.run(go())
    return statuses[0]


@pytest.mark.django_db(transaction=True)
def test_sqlite_connection_is_reused_across_asgi_requests(settings):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's pool (PostgreSQL has psycopg's)")
    from django.core.asgi import get_asgi_application

    settings.ALLOWED_HOSTS = ["testserver"]
    app = get_asgi_application()
    opened: list[Any] = []

    def record(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection.connection)  # the object itself: an id could be recycled

    connection_created.connect(record, weak=False)
    try:
        assert _asgi_get(app, "/healthz") == 200
        assert _asgi_get(app, "/healthz") == 200
    finally:
        connection_created.disconnect(record)
    # Django sets each request's connection up anew (functions, PRAGMAs, signal), on the
    # same SQLite connection: same file handle, same page cache.
    assert len(opened) == 2
    assert opened[0] is opened[1]
    assert isinstance(opened[0], PooledSQLiteConnection)


def _connect(path: Path, pool: SQLiteConnectionPool) -> sqlite3.Connection:
    return sqlite3.connect(
        str(path), factory=pool, uri=True, check_same_thread=False, isolation_level=None
    )


@pytest.fixture
def db_file(tmp_path):
    path = tmp_path / "pool.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER)")
        setup.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    return path


def test_pool_hands_back_the_connection_it_was_given(db_file):
    pool = SQLiteConnectionPool(max_idle=2)
    first = _connect(db_file, pool)
    first.close()
    assert pool.idle() == 1
    again = _connect(db_file, pool)
    assert again is first
    assert pool.idle() == 0
    again.close()
    pool.clear()


def test_pool_resets_a_connection_before_the_next_user(db_file):
    pool = SQLiteConnectionPool(max_idle=2)
    conn = _connect(db_file, pool)
    left_open = conn.cursor()
    left_open.execute("SELECT x FROM t")
    left_open.fetchone()  # an unfinished SELECT pins its snapshot while it lives
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (100)")
    conn.close()  # given back: the insert is rolled back, the cursor closed
    with sqlite3.connect(db_file) as other:
        other.execute("INSERT INTO t VALUES (200)")
    again = _connect(db_file, pool)
    assert again is conn
    assert not again.in_transaction
    values = {x for (x,) in again.execute("SELECT x FROM t")}
    assert 100 not in values and 200 in values  # a fresh snapshot, not the pinned one
    again.close()
    pool.clear()


def test_pool_opens_anew_when_the_file_was_replaced(db_file):
    pool = SQLiteConnectionPool(max_idle=2)
    first = _connect(db_file, pool)
    first.close()
    for extra in ("", "-wal", "-shm"):
        Path(f"{db_file}{extra}").unlink(missing_ok=True)
    with sqlite3.connect(db_file) as setup:
        setup.execute("CREATE TABLE fresh (y INTEGER)")
    second = _connect(db_file, pool)
    assert second is not first
    assert second.execute("SELECT name FROM sqlite_master").fetchall() == [("fresh",)]
    second.close()
    pool.clear()


def test_pool_keeps_at_most_max_idle(db_file):
    pool = SQLiteConnectionPool(max_idle=1)
    a, b = _connect(db_file, pool), _connect(db_file, pool)
    a.close()
    b.close()  # no room: really closed
    assert pool.idle() == 1
    with pytest.raises(sqlite3.ProgrammingError):
        b.execute("SELECT 1")
    pool.clear()


def test_pool_never_keeps_in_memory_databases():
    pool = SQLiteConnectionPool(max_idle=2)
    conn = sqlite3.connect(":memory:", factory=pool)
    assert not isinstance(conn, PooledSQLiteConnection)
    conn.close()
    assert pool.idle() == 0


def test_a_forked_child_forgets_the_parents_connections(db_file):
    pool = SQLiteConnectionPool(max_idle=2)
    parent = _connect(db_file, pool)
    parent.close()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must open its own connection
        child = _connect(db_file, pool)
        os.write(write, b"1" if child is not parent else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert _connect(db_file, pool) is parent  # the parent's is still kept for the parent
    pool.clear()
