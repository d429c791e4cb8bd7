"""Live chat turns and staff edits exclude each other, across processes.

Two locks per conversation, kept next to the data so they hold across server processes:

- the **branch lock** of (session, branch): exclusive. A chat turn holds it for its whole run,
  so two turns never interleave on one branch; a staff edit of that branch takes it too.
- the **session lock** of a session: shared or exclusive. A chat turn holds it shared (turns
  on different branches run side by side); an edit of the whole session (delete, clear, an
  edit of a message that several branches share) takes it exclusive, so it waits for the
  turns on every branch. A branch edit takes it shared and then the branch lock.

Chat turns only *try* (:func:`turn_guard`, async, never waits: the client is told ``busy``).
Staff edits *wait* a bounded time (:func:`staff_exclusion`, sync, ``FORKVIEW_STAFF_TURN_WAIT``
seconds, default 5) and then raise :class:`TurnRunning`; the services turn that into a
``ServiceError`` the admin shows. Nothing here reads or writes the SDK's tables; the commit
of a turn re-checks, under the writer lock, that its branch still exists (``DjangoSession``),
so even a lock lost to a crash can never recreate a deleted session or branch.

Where the locks live (``FORKVIEW_TURN_LOCK``: ``auto`` or ``database`` = the database;
``redis``). The default keeps them in the database every turn needs anyway: a Redis outage
then costs only the live updates, never the chat, and a killed worker's locks go with its
connection at once instead of after a lease (the failure drills, ``tests/test_drills.py``).

- Redis: leases. Exclusive: ``SET key token NX PX ttl``; shared: a sorted set of holder
  tokens scored by expiry (Lua scripts, Redis server time), renewed every ``ttl/3`` while held.
  A crashed holder's lease expires after ``ttl`` (30 s).
- PostgreSQL: session-level advisory locks (``pg_try_advisory_lock[_shared]``) on a dedicated
  connection; closing it releases them, so a crashed process never leaves one behind.
- SQLite: ``flock`` (``LOCK_SH``/``LOCK_EX``) on lock files beside the database file; the
  kernel drops them when the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections

__all__ = [
    "TurnRunning",
    "lock_backend",
    "staff_exclusion",
    "staff_wait_seconds",
    "turn_guard",
]

LEASE_MS = 30_000
_POLL_SECONDS = 0.02
_DEFAULT_STAFF_WAIT = 5.0

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: readers (zset), writer (string). ARGV: token, ttl ms.
_SHARED_ACQUIRE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('exists', KEYS[2]) == 1 then return 0 end
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
"""
_SHARED_RENEW = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zadd', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
"""
_SHARED_RELEASE = "return redis.call('zrem', KEYS[1], ARGV[1])"
_EXCLUSIVE_ACQUIRE = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) > 0 then return 0 end
if redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class TurnRunning(Exception):
    """A chat turn kept the lock a staff edit needs for longer than the bounded wait."""

    def __init__(self, session_id: str, branch_id: str | None, waited: float) -> None:
        self.session_id = session_id
        self.branch_id = branch_id
        self.waited = waited
        where = (
            f"session '{session_id}'"
            if branch_id is None
            else f"branch '{branch_id}' of session '{session_id}'"
        )
        super().__init__(
            f"A live chat turn is running on {where}; this edit waited {waited:g} s for it "
            "to finish. Try again in a moment."
        )


# ---- Keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lock:
    """One lock to take: its digest and whether it is taken shared."""

    digest: bytes
    shared: bool

    @property
    def pg_key(self) -> int:
        return int.from_bytes(self.digest[:8], "big", signed=True)

    @property
    def name(self) -> str:
        return self.digest.hex()[:40]


def _branch_digest(session_id: str, branch_id: str, using: str) -> bytes:
    return hashlib.sha256(f"{using}\0{session_id}\0{branch_id}".encode()).digest()


def _session_digest(session_id: str, using: str) -> bytes:
    # "\0\1" cannot end a branch digest's input of the same session (a branch id is text).
    return hashlib.sha256(f"{using}\0{session_id}\0\1session".encode()).digest()


def _encodable(text: str) -> str:
    """Ids with lone surrogates still get a key (they cannot be stored anyway)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _turn_locks(session_id: str, branch_id: str, using: str) -> list[_Lock]:
    session_id, branch_id = _encodable(session_id), _encodable(branch_id)
    return [
        _Lock(_session_digest(session_id, using), shared=True),
        _Lock(_branch_digest(session_id, branch_id, using), shared=False),
    ]


def _staff_locks(session_id: str, branch_ids: Iterable[str] | None, using: str) -> list[_Lock]:
    session_id = _encodable(session_id)
    if branch_ids is None:
        return [_Lock(_session_digest(session_id, using), shared=False)]
    branches = sorted({_encodable(b) for b in branch_ids})  # one order: no lock-order cycles
    return [
        _Lock(_session_digest(session_id, using), shared=True),
        *(_Lock(_branch_digest(session_id, b, using), shared=False) for b in branches),
    ]


def lock_backend(using: str = "default") -> str:
    """``redis``, ``postgresql`` or ``sqlite``: where the locks for ``using`` live."""
    choice = getattr(settings, "FORKVIEW_TURN_LOCK", "auto")
    if choice == "redis":
        if not getattr(settings, "REDIS_URL", ""):
            raise RuntimeError("FORKVIEW_TURN_LOCK=redis needs REDIS_URL")
        return "redis"
    vendor = connections[using].vendor
    if vendor not in ("postgresql", "sqlite"):
        raise RuntimeError(f"No turn guard for database vendor {vendor!r}")
    return vendor


def staff_wait_seconds() -> float:
    """How long a staff edit waits for a running turn (``FORKVIEW_STAFF_TURN_WAIT``)."""
    return max(0.0, float(getattr(settings, "FORKVIEW_STAFF_TURN_WAIT", _DEFAULT_STAFF_WAIT)))


# ---- The chat side (async, try only) -------------------------------------------------------


@contextlib.asynccontextmanager
async def turn_guard(
    session_id: str, branch_id: str, *, using: str = "default"
) -> AsyncIterator[bool]:
    """Try to take (session shared, branch exclusive) for a turn; yield whether we got both.

    Never waits: ``False`` means another turn runs on the branch, or a staff edit holds the
    session or the branch.
    """
    backend = lock_backend(using)
    locks = _turn_locks(session_id, branch_id, using)
    guard = {"redis": _redis_guard, "postgresql": _pg_guard, "sqlite": _file_guard}[backend]
    async with guard(locks, using) as acquired:
        yield acquired


class _RedisScripts:
    """The calls one lock needs, for a sync or an async client (``call`` is ``eval``)."""

    def __init__(self, lock: _Lock, token: str, session_level: bool) -> None:
        self.lock = lock
        self.token = token
        if lock.shared or session_level:
            # readers (a sorted set of holder tokens) and the writer's lease
            prefix = f"forkview:turnsession:{lock.name}"
            self.keys = [f"{prefix}:r", f"{prefix}:w"]
        else:
            self.keys = [f"forkview:turn:{lock.name}"]
        self.session_level = session_level

    def acquire(self) -> tuple[str, int, list[Any]]:
        if self.lock.shared:
            return _SHARED_ACQUIRE, 2, [*self.keys, self.token, LEASE_MS]
        if self.session_level:
            return _EXCLUSIVE_ACQUIRE, 2, [*self.keys, self.token, LEASE_MS]
        return "", 0, []  # plain SET NX (see callers)

    def renew(self) -> tuple[str, int, list[Any]]:
        if self.lock.shared:
            return _SHARED_RENEW, 1, [self.keys[0], self.token, LEASE_MS]
        return _RENEW, 1, [self.keys[-1], self.token, LEASE_MS]

    def release(self) -> tuple[str, int, list[Any]]:
        if self.lock.shared:
            return _SHARED_RELEASE, 1, [self.keys[0], self.token]
        return _RELEASE, 1, [self.keys[-1], self.token]


def _scripts(locks: list[_Lock], session_level_exclusive: bool) -> list[_RedisScripts]:
    token = secrets.token_hex(16)
    out = []
    for index, lock in enumerate(locks):
        session_level = lock.shared or (index == 0 and session_level_exclusive)
        out.append(_RedisScripts(lock, token, session_level))
    return out


@contextlib.asynccontextmanager
async def _redis_guard(locks: list[_Lock], using: str) -> AsyncIterator[bool]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    held: list[_RedisScripts] = []
    try:
        for script in _scripts(locks, session_level_exclusive=False):
            sql, nkeys, args = script.acquire()
            if sql:
                ok = bool(await client.eval(sql, nkeys, *args))
            else:
                ok = bool(await client.set(script.keys[0], script.token, nx=True, px=LEASE_MS))
            if not ok:
                break
            held.append(script)
        if len(held) < len(locks):
            yield False
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_MS / 3000)
                for script in held:
                    await client.eval(*_flat(script.renew()))

        renewer = asyncio.ensure_future(renew())
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
    finally:
        for script in reversed(held):
            with contextlib.suppress(Exception):
                await asyncio.shield(client.eval(*_flat(script.release())))
        await asyncio.shield(client.aclose())


def _flat(call: tuple[str, int, list[Any]]) -> tuple[Any, ...]:
    sql, nkeys, args = call
    return (sql, nkeys, *args)


def _pg_conninfo(using: str) -> dict[str, object]:
    params = connections[using].get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    params["autocommit"] = True
    return params


def _pg_try_sql(lock: _Lock) -> str:
    return (
        "SELECT pg_try_advisory_lock_shared(%s)"
        if lock.shared
        else "SELECT pg_try_advisory_lock(%s)"
    )


@contextlib.asynccontextmanager
async def _pg_guard(locks: list[_Lock], using: str) -> AsyncIterator[bool]:
    import psycopg

    # Driver errors as Django's (OperationalError when PostgreSQL is down), like every query.
    wrap = connections[using].wrap_database_errors
    with wrap:
        conn = await psycopg.AsyncConnection.connect(**_pg_conninfo(using))  # type: ignore[arg-type]
    try:
        acquired = True
        with wrap:
            for lock in locks:
                cursor = await conn.execute(_pg_try_sql(lock), [lock.pg_key])
                row = await cursor.fetchone()
                if not (row and row[0]):
                    acquired = False
                    break
        yield acquired
        # Closing the connection releases every lock it holds: no unlock round trips.
    finally:
        await asyncio.shield(conn.close())


def _lock_dir(using: str) -> Path:
    name = str(connections[using].settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        base = Path(settings.DATA_DIR) / ".forkview-turnlocks"
    else:
        base = Path(name).with_name(Path(name).name + ".turnlocks")
    base.mkdir(parents=True, exist_ok=True)
    return base


def _flock_try(fd: int, lock: _Lock) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if lock.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _open_lock_files(locks: list[_Lock], using: str) -> Iterator[list[int]]:
    directory = _lock_dir(using)
    fds: list[int] = []
    try:
        for lock in locks:
            fds.append(os.open(directory / f"{lock.name}.lock", os.O_RDWR | os.O_CREAT, 0o600))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)  # closing drops the flock


@contextlib.asynccontextmanager
async def _file_guard(locks: list[_Lock], using: str) -> AsyncIterator[bool]:
    with _open_lock_files(locks, using) as fds:
        yield all(_flock_try(fd, lock) for fd, lock in zip(fds, locks, strict=True))


# ---- The staff side (sync, bounded wait) ---------------------------------------------------


@contextlib.contextmanager
def staff_exclusion(
    session_id: str,
    branch_ids: Iterable[str] | None = None,
    *,
    using: str = "default",
    wait: float | None = None,
) -> Iterator[None]:
    """Hold off chat turns while a staff edit runs; wait for running ones (bounded).

    Args:
        session_id: The session edited.
        branch_ids: The branches edited (their turns are waited for); ``None``: the whole
            session (every branch's turns are waited for).
        using: The database alias.
        wait: Seconds to wait; ``FORKVIEW_STAFF_TURN_WAIT`` if ``None``.

    Raises:
        TurnRunning: A turn still held a needed lock when the wait ran out.
    """
    seconds = staff_wait_seconds() if wait is None else wait
    session_level = branch_ids is None
    branches = None if branch_ids is None else list(branch_ids)
    locks = _staff_locks(session_id, branches, using)
    blocked_branch = None if session_level or not branches else ",".join(sorted(set(branches)))
    deadline = time.monotonic() + seconds
    backend = lock_backend(using)
    holder = {"redis": _redis_hold, "postgresql": _pg_hold, "sqlite": _file_hold}[backend]
    with holder(locks, using, deadline, session_level) as acquired:
        if not acquired:
            raise TurnRunning(session_id, blocked_branch, seconds)
        yield


def _poll(attempt: Any, deadline: float) -> bool:
    """Call ``attempt()`` until it returns True or the deadline passes."""
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


@contextlib.contextmanager
def _file_hold(
    locks: list[_Lock], using: str, deadline: float, session_level: bool
) -> Iterator[bool]:
    with _open_lock_files(locks, using) as fds:
        acquired = all(
            _poll(lambda fd=fd, lock=lock: _flock_try(fd, lock), deadline)
            for fd, lock in zip(fds, locks, strict=True)
        )
        yield acquired


@contextlib.contextmanager
def _pg_hold(
    locks: list[_Lock], using: str, deadline: float, session_level: bool
) -> Iterator[bool]:
    import psycopg

    conn = psycopg.connect(**_pg_conninfo(using))  # type: ignore[arg-type]
    try:

        def attempt(lock: _Lock) -> bool:
            row = conn.execute(_pg_try_sql(lock), [lock.pg_key]).fetchone()
            return bool(row and row[0])

        yield all(_poll(lambda lock=lock: attempt(lock), deadline) for lock in locks)
    finally:
        conn.close()


@contextlib.contextmanager
def _redis_hold(
    locks: list[_Lock], using: str, deadline: float, session_level: bool
) -> Iterator[bool]:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    held: list[_RedisScripts] = []
    stop = threading.Event()
    try:
        for script in _scripts(locks, session_level_exclusive=session_level):
            sql, nkeys, args = script.acquire()

            def attempt(script: _RedisScripts = script, sql: str = sql, nkeys: int = nkeys,
                        args: list[Any] = args) -> bool:  # fmt: skip
                if sql:
                    return bool(client.eval(sql, nkeys, *args))
                return bool(client.set(script.keys[0], script.token, nx=True, px=LEASE_MS))

            if not _poll(attempt, deadline):
                break
            held.append(script)
        if len(held) < len(locks):
            yield False
            return

        def renew() -> None:
            while not stop.wait(LEASE_MS / 3000):
                for script in held:
                    with contextlib.suppress(Exception):
                        client.eval(*_flat(script.renew()))

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            yield True
        finally:
            stop.set()
            renewer.join()
    finally:
        for script in reversed(held):
            with contextlib.suppress(Exception):
                client.eval(*_flat(script.release()))
        client.close()
