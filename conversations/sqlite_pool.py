"""A per-process pool of SQLite connections, so a request does not start from a cold connection.

Why: under ASGI Django runs every request's sync code in a context of its own
(``ThreadSensitiveContext``: a fresh thread and fresh connection storage per request), so
``CONN_MAX_AGE`` never reuses a connection there; each request opened a new SQLite connection
(file open, schema parse, Django's functions and PRAGMAs) and threw away its page cache at
the end. Persistent connections would only leak one connection per request until garbage
collection. PostgreSQL has Django's psycopg pool for this; SQLite has nothing built in.

How: Django passes ``DATABASES[...]["OPTIONS"]`` to ``sqlite3.connect``, whose ``factory``
builds the connection object. :class:`SQLiteConnectionPool` is that factory: it hands out an
idle connection to the same file if one is kept, else opens one; Django's ``close()`` at the
end of a request (``CONN_MAX_AGE = 0``) gives it back (:meth:`PooledSQLiteConnection.close`).
Django still runs its own set-up on every hand-out (``register_functions``, ``PRAGMA
foreign_keys = ON``, ``init_command``, the ``connection_created`` signal: ~25 µs against
~500 µs for a new connection), so a handed-out connection is configured exactly as a new one.

What is reset on give-back: an open transaction is rolled back, cursors Django opened and
left open are closed (an unfinished SELECT would otherwise pin its snapshot for the next
user), tracers, progress handlers, authorizers and row factories are removed. A connection
whose reset fails is closed, not kept. A connection is kept only for the very file it was
opened on (device and inode checked on hand-out: a file replaced or recreated, as a test
database is, gets new connections), never across ``fork`` (a child forgets the parent's
idle connections without closing them), and never for in-memory databases (Django keeps
those open itself). At most ``max_idle`` connections are kept per file; a request beyond
that opens its own, as before, and it is closed when given back.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from typing import Any
from urllib.parse import unquote

__all__ = ["PooledSQLiteConnection", "SQLiteConnectionPool"]

#: Every pool of this process, so a forked child can empty them all.
_POOLS: weakref.WeakSet[SQLiteConnectionPool] = weakref.WeakSet()


def _in_memory(database: str, uri: bool) -> bool:
    if uri and database.startswith("file:"):
        return "mode=memory" in database or database.split("?", 1)[0] in ("file:", "file::memory:")
    return database in (":memory:", "")


def _file_identity(database: str, uri: bool) -> tuple[int, int] | None:
    """(device, inode) of the database file, or ``None`` if it cannot be known."""
    path = database
    if uri and database.startswith("file:"):  # else a plain file name, even with uri=True
        path = unquote(database.removeprefix("file:").split("?", 1)[0].split("#", 1)[0])
        if path.startswith("//"):  # file://host/path: only an empty host or localhost
            host, _, rest = path[2:].partition("/")
            if host not in ("", "localhost"):
                return None
            path = "/" + rest
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    return stat.st_dev, stat.st_ino


class PooledSQLiteConnection(sqlite3.Connection):
    """A ``sqlite3.Connection`` that goes back to its pool when closed."""

    _pool: SQLiteConnectionPool | None = None
    _pool_key: tuple[Any, ...] = ()
    _identity: tuple[int, int] | None = None
    _pid: int = 0
    _out = False
    _cursors: weakref.WeakSet[sqlite3.Cursor]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors = weakref.WeakSet()

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        """Every cursor Django opens (``create_cursor``) is tracked, to be closed on give-back."""
        cursor = super().cursor(*args, **kwargs)
        self._cursors.add(cursor)
        return cursor

    def close(self) -> None:
        """Back to the pool (Django calls this at the end of each request); closed for real if
        the pool does not keep it."""
        pool = self._pool
        if pool is None:
            super().close()
            return
        if not self._out:
            return  # given back already (Django may close twice after an error in atomic)
        self._out = False
        if not pool._give_back(self):
            self.close_for_real()

    def close_for_real(self) -> None:
        self._pool = None
        super().close()

    def _reset(self) -> bool:
        """Ready for the next user; ``False`` if it cannot be made so."""
        try:
            for cursor in list(self._cursors):
                cursor.close()
            self._cursors = weakref.WeakSet()
            if self.in_transaction:
                self.rollback()
            self.set_trace_callback(None)
            self.set_progress_handler(None, 0)
            self.set_authorizer(None)
            self.row_factory = None
            self.text_factory = str
        except sqlite3.Error:
            return False
        return not self.in_transaction


class SQLiteConnectionPool:
    """The ``factory`` of ``sqlite3.connect``: hands out kept connections (module docstring).

    Args:
        max_idle: Connections kept per database file (``0``: none, every connect is new).
    """

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        self._idle: dict[tuple[Any, ...], list[PooledSQLiteConnection]] = {}
        self._pid = os.getpid()
        _POOLS.add(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_idle={self.max_idle})"

    # Settings are copied (test database clones) and pickled (spawned test workers): a copy
    # is this same pool, a pickle a new empty one of the same size.
    def __copy__(self) -> SQLiteConnectionPool:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SQLiteConnectionPool:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.max_idle,))

    def __call__(self, database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.pop("factory", None)
        uri = bool(kwargs.get("uri", False))
        name = os.fspath(database) if not isinstance(database, bytes) else database.decode()
        if self.max_idle <= 0 or _in_memory(name, uri):
            return sqlite3.Connection(database, *args, **kwargs)
        self._forget_if_forked()
        key = (name, args, tuple(sorted(kwargs.items())))
        identity = _file_identity(name, uri)
        while True:
            with self._lock:
                stack = self._idle.get(key)
                kept = stack.pop() if stack else None
            if kept is None:
                break
            if identity is not None and kept._identity == identity:
                kept._out = True
                return kept
            kept.close_for_real()  # the file was replaced or removed since
        connection = PooledSQLiteConnection(database, *args, **kwargs)
        connection._pool, connection._pool_key = self, key
        connection._identity = _file_identity(name, uri)
        connection._pid = os.getpid()
        connection._out = True
        return connection

    def idle(self) -> int:
        """Connections kept right now (all files)."""
        with self._lock:
            return sum(len(stack) for stack in self._idle.values())

    def clear(self) -> None:
        """Close every kept connection (they reopen on demand)."""
        with self._lock:
            kept = [c for stack in self._idle.values() for c in stack]
            self._idle = {}
        for connection in kept:
            connection.close_for_real()

    def _give_back(self, connection: PooledSQLiteConnection) -> bool:
        if connection._pid != os.getpid() or connection._identity is None:
            return False
        if not connection._reset():
            return False
        with self._lock:
            stack = self._idle.setdefault(connection._pool_key, [])
            if len(stack) >= self.max_idle:
                return False
            stack.append(connection)  # a stack: the next request gets the warmest cache
        return True

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():
            _forget_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._idle = {}  # the parent's; never closed here (sqlite forbids using them)
        self._pid = os.getpid()


def _forget_after_fork(pool: SQLiteConnectionPool | None = None) -> None:
    for each in [pool] if pool is not None else list(_POOLS):
        each._after_fork()


os.register_at_fork(after_in_child=_forget_after_fork)
