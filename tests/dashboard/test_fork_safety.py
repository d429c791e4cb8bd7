"""A forked child never uses its parent's pooled database connections (dashboard/apps.py).

PostgreSQL only: the pool (``FORKVIEW_DB_POOL_SIZE``) exists there. Before the fix the
forked daphne of the browser tests took the parent's idle connection from the inherited pool
and the parent's next query hung on the shared socket.
"""

from __future__ import annotations

import multiprocessing

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the pool is PostgreSQL's"),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(_backend_pid())
    connection.close()


def _backends() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return {int(row[0]) for row in cursor.fetchall()}


def test_a_forked_child_opens_its_own_connection():
    assert connection.pool is not None  # the suite runs on the production pool settings
    _backend_pid()
    existing = _backends()  # the parent's connections, pooled ones included
    connection.close()  # back to the pool: idle, ready for whoever asks next
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child_pid = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert child_pid not in existing  # a connection of its own, not an inherited socket
    assert _backend_pid() in existing  # and the parent's pool still answers, on its own
