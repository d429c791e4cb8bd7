"""The per-(session, branch) turn guard: exclusive, released, and held across processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connection, connections

from dashboard.chat.locks import lock_backend, turn_guard

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]


@pytest_asyncio.fixture(autouse=True)
async def _close_worker_connections():
    yield
    await sync_to_async(connections.close_all)()


def _backends() -> list:
    """Every guard this configuration can run: the database's own, and Redis if configured."""
    params = [pytest.param("database", id=connection.vendor)]
    params.append(
        pytest.param(
            "redis",
            id="redis",
            marks=pytest.mark.skipif(
                not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set (no Redis server)"
            ),
        )
    )
    return params


@pytest.fixture(params=_backends())
def backend(request, settings):
    settings.FORKVIEW_TURN_LOCK = request.param
    return request.param


async def test_guard_is_exclusive_per_branch_and_released(backend):
    async with turn_guard("s", "main") as first:
        assert first
        async with turn_guard("s", "main") as second:
            assert not second
        async with turn_guard("s", "other") as other_branch:
            assert other_branch
        async with turn_guard("s2", "main") as other_session:
            assert other_session
    async with turn_guard("s", "main") as again:
        assert again


async def test_guard_is_released_when_the_holder_is_cancelled(backend):
    entered = asyncio.Event()

    async def hold() -> None:
        async with turn_guard("s-cancel", "main") as acquired:
            assert acquired
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.ensure_future(hold())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with turn_guard("s-cancel", "main") as acquired:
        assert acquired


async def test_auto_keeps_the_locks_in_the_database_even_with_redis(settings):
    settings.FORKVIEW_TURN_LOCK = "auto"
    settings.REDIS_URL = ""
    assert lock_backend() == connection.vendor
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # a Redis outage must not stop the chat
    assert lock_backend() == connection.vendor
    settings.FORKVIEW_TURN_LOCK = "database"
    assert lock_backend() == connection.vendor
    settings.FORKVIEW_TURN_LOCK = "redis"
    assert lock_backend() == "redis"
    settings.REDIS_URL = ""
    with pytest.raises(RuntimeError, match="needs REDIS_URL"):
        lock_backend()


HOLDER = textwrap.dedent(
    """
    import asyncio, os, sys, django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    django.setup()
    from django.conf import settings
    from django.db import connections
    # The test database, as the parent process sees it.
    connections["default"].settings_dict["NAME"] = sys.argv[1]
    settings.FORKVIEW_TURN_LOCK = sys.argv[2]
    from dashboard.chat.locks import turn_guard

    async def main():
        async with turn_guard("s-proc", "main") as acquired:
            print("held" if acquired else "busy", flush=True)
            sys.stdin.readline()

    asyncio.run(main())
    """
)


async def test_guard_holds_across_processes(backend):
    """Another OS process holds the guard: this one sees busy until it lets go."""
    name = str(django_settings.DATABASES["default"]["NAME"])
    child = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant
        [sys.executable, "-c", HOLDER, name, backend],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.strip() == "held"
        async with turn_guard("s-proc", "main") as acquired:
            assert not acquired
        child.stdin.write("\n")
        child.stdin.flush()
        await asyncio.wait_for(asyncio.to_thread(child.wait), 30)
        async with turn_guard("s-proc", "main") as acquired:
            assert acquired
    finally:
        child.kill()
        child.wait()
