"""The per-(session, branch) "turn in progress" guard of the live chat.

Two tabs (or two server processes) sending on one branch at once must not interleave turns:
the second sender gets ``busy``. The guard is non-blocking (try, never wait) and must hold
across processes, so it lives next to the data:

- ``REDIS_URL`` set (and ``FORKVIEW_TURN_LOCK`` not ``database``): a Redis lease,
  ``SET key token NX PX ttl``, renewed every ``ttl/3`` while the turn runs and released with a
  compare-and-delete script. A crashed process's lease expires after ``ttl`` (30 s).
- PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock(key)``, taken on a
  dedicated connection held for the turn. The server drops it when that connection closes,
  so a crashed process never leaves it behind.
- SQLite: an exclusive ``flock`` on a lock file beside the database file (``<db>.turnlocks/``).
  SQLite is one file on one host; the kernel drops the lock when the process dies.

``FORKVIEW_TURN_LOCK`` = ``auto`` (default: Redis if configured, else the database),
``redis`` or ``database``. Usage::

    async with turn_guard(session_id, branch_id) as acquired:
        if not acquired:
            ...  # busy
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from django.conf import settings
from django.db import connections

__all__ = ["lock_backend", "turn_guard"]

LEASE_MS = 30_000
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def _digest(session_id: str, branch_id: str, using: str) -> bytes:
    return hashlib.sha256(f"{using}\0{session_id}\0{branch_id}".encode()).digest()


def lock_backend(using: str = "default") -> str:
    """``redis``, ``postgresql`` or ``sqlite``: where the guard for ``using`` lives."""
    choice = getattr(settings, "FORKVIEW_TURN_LOCK", "auto")
    redis_url = getattr(settings, "REDIS_URL", "")
    if choice == "redis" or (choice == "auto" and redis_url):
        if not redis_url:
            raise RuntimeError("FORKVIEW_TURN_LOCK=redis needs REDIS_URL")
        return "redis"
    vendor = connections[using].vendor
    if vendor not in ("postgresql", "sqlite"):
        raise RuntimeError(f"No turn guard for database vendor {vendor!r}")
    return vendor


@contextlib.asynccontextmanager
async def turn_guard(
    session_id: str, branch_id: str, *, using: str = "default"
) -> AsyncIterator[bool]:
    """Try to take the guard of (session, branch); yield whether we got it."""
    backend = lock_backend(using)
    digest = _digest(session_id, branch_id, using)
    guard = {"redis": _redis_guard, "postgresql": _pg_guard, "sqlite": _file_guard}[backend]
    async with guard(digest, using) as acquired:
        yield acquired


# ---- Redis ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _redis_guard(digest: bytes, using: str) -> AsyncIterator[bool]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"forkview:turn:{digest.hex()[:40]}"
    token = secrets.token_hex(16)
    try:
        acquired = bool(await client.set(key, token, nx=True, px=LEASE_MS))
        if not acquired:
            yield False
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_MS / 3000)
                await client.eval(_RENEW, 1, key, token, LEASE_MS)

        renewer = asyncio.ensure_future(renew())
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            await asyncio.shield(client.eval(_RELEASE, 1, key, token))
    finally:
        await asyncio.shield(client.aclose())


# ---- PostgreSQL ----------------------------------------------------------------------------


def _pg_conninfo(using: str) -> dict[str, object]:
    params = connections[using].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    params.pop("server_side_binding", None)
    params["autocommit"] = True
    return params


@contextlib.asynccontextmanager
async def _pg_guard(digest: bytes, using: str) -> AsyncIterator[bool]:
    import psycopg

    key = int.from_bytes(digest[:8], "big", signed=True)
    conn = await psycopg.AsyncConnection.connect(**_pg_conninfo(using))  # type: ignore[arg-type]
    try:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", [key])
        row = await cursor.fetchone()
        acquired = bool(row and row[0])
        yield acquired
        # Closing the connection releases the lock; no explicit unlock round trip needed.
    finally:
        await asyncio.shield(conn.close())


# ---- SQLite --------------------------------------------------------------------------------


def _lock_dir(using: str) -> Path:
    name = str(connections[using].settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        base = Path(settings.BASE_DIR) / ".forkview-turnlocks"
    else:
        base = Path(name).with_name(Path(name).name + ".turnlocks")
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextlib.asynccontextmanager
async def _file_guard(digest: bytes, using: str) -> AsyncIterator[bool]:
    path = _lock_dir(using) / f"{digest.hex()[:40]}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
