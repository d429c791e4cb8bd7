"""The SQL the hot paths of ``DjangoSession`` run, statement by statement.

Write paths hold the session's writer lock for as few statements as possible, and reads run a
fixed number of statements whatever the session's size. The captures run on the worker thread
the session's operations use (``sync_to_async``'s thread-sensitive executor), through the
public async API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from conversations.models import SessionClearGeneration
from conversations.session import DjangoSession
from conversations.sql import statements

from .sdk_harness import assistant, function_call, function_output, run_result, usage, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ON_SQLITE = connection.vendor == "sqlite"


@asynccontextmanager
async def captured(alias: str = "default") -> AsyncIterator[list[str]]:
    """The SQL run by session operations inside the block (BEGIN and COMMIT included)."""
    statements: list[str] = []

    def start() -> CaptureQueriesContext:  # connections[alias] is per thread: the worker's
        context = CaptureQueriesContext(connections[alias])
        context.__enter__()
        return context

    context = await sync_to_async(start)()
    try:
        yield statements
    finally:
        await sync_to_async(context.__exit__)(None, None, None)
        statements += [query["sql"] for query in context.captured_queries]


def verbs(statements: list[str]) -> list[str]:
    return [
        " ".join(sql.split()[:3]) if sql.startswith("INSERT") else sql.split()[0]
        for sql in statements
    ]


def touches_generation_row(statements: list[str]) -> list[str]:
    return [
        sql
        for sql in statements
        if sql.startswith("INSERT OR IGNORE INTO") and "session_clear_generations" in sql
    ]


async def seeded(session_id: str = "stmts") -> DjangoSession:
    session = DjangoSession(session_id=session_id)
    await session.add_items(
        [
            user("hi"),
            function_call("lookup", "call_1"),
            function_output("call_1", "42"),
            assistant("hello"),
        ]
    )
    return session


async def test_store_run_usage_is_one_read_and_one_write():
    session = await seeded()
    await session.store_run_usage(run_result(usage(1)))
    async with captured() as statements:
        await session.store_run_usage(run_result(usage(2)))
    if ON_SQLITE:
        # BEGIN IMMEDIATE holds the file's write lock; the generation and the current turn
        # come back together.
        assert verbs(statements) == ["BEGIN", "SELECT", "INSERT OR REPLACE", "COMMIT"]
        assert "session_clear_generations" in statements[1]
        assert statements[0] == "BEGIN IMMEDIATE"
    else:
        # The generation row's upsert locks the session's writers; turn; replace.
        assert verbs(statements) == [
            "BEGIN",
            "INSERT INTO session_clear_generations",
            "SELECT",
            "DELETE",
            "INSERT INTO turn_usage",
            "COMMIT",
        ]
    usage_rows = await session.get_turn_usage()
    assert [(row["user_turn_number"], row["requests"]) for row in usage_rows] == [(1, 2)]


async def test_generation_row_is_created_once_per_instance():
    session = DjangoSession(session_id="gen-row")
    async with captured() as first:
        await session.add_items([user("one")])
    async with captured() as later:
        await session.add_items([assistant("two")])
        await session.store_run_usage(run_result(usage()))
        await session.create_branch_from_turn(1, "alt")
    assert await SessionClearGeneration.objects.filter(session_id="gen-row").acount() == 1
    if ON_SQLITE:
        assert len(touches_generation_row(first)) == 1
        assert touches_generation_row(later) == []
    # A clear bumps the row it relies on; a new instance creates nothing new.
    await session.clear_session()
    fresh = DjangoSession(session_id="gen-row")
    await fresh.add_items([user("after")])
    row = await SessionClearGeneration.objects.aget(session_id="gen-row")
    assert row.generation == 1
    assert await fresh.get_items() == [user("after")]


async def test_a_rolled_back_first_write_still_creates_the_row_later():
    session = DjangoSession(session_id="rollback")
    with pytest.raises(ValueError):
        await session.create_branch_from_turn(1, "nothing-to-fork")  # no turn 1: rolls back
    await session.add_items([user("first row")])
    assert await SessionClearGeneration.objects.filter(session_id="rollback").aexists()


async def test_usage_for_a_stale_instance_after_an_external_clear_is_dropped():
    stale = await seeded("stale")
    await DjangoSession(session_id="stale").clear_session()
    await DjangoSession(session_id="stale").add_items([user("new history")])
    await stale.store_run_usage(run_result(usage(7)))
    assert await stale.get_turn_usage() == []
    assert stale.current_branch_id == "main"


@pytest.mark.parametrize("size", [2, 40])
async def test_reads_run_a_fixed_number_of_statements(size):
    session = DjangoSession(session_id=f"reads-{size}")
    for turn in range(size):
        await session.add_items([user(f"q{turn}"), assistant(f"a{turn}")])
    await session.create_branch_from_turn(2, "alt")  # copies turn 1: "alt" has rows
    async with captured() as statements:
        await session.get_items(limit=20)
        await session.get_items()
        await session.list_branches()
    # Each is one statement (no transaction): the rows carry the session's clear generation.
    assert len(statements) == 3, statements
    assert all("session_clear_generations" in sql for sql in statements), statements


async def test_reading_an_empty_current_branch_also_reads_the_generation():
    session = await seeded("empty-branch")
    await session.create_branch_from_turn(1, "ghost")  # nothing before turn 1: no rows
    async with captured() as statements:
        assert await session.get_items(limit=20) == []
    assert len(statements) == 2, statements  # the empty read, then the generation alone


async def test_a_read_after_an_external_clear_returns_to_main_in_the_same_call():
    session = await seeded("reread")
    await session.create_branch_from_turn(1, "side")
    await session.add_items([user("on side")])
    other = DjangoSession(session_id="reread")
    await other.clear_session()
    await other.add_items([user("new main")])
    async with captured() as statements:
        items = await session.get_items(limit=20)
    assert items == [user("new main")]
    assert session.current_branch_id == "main"
    # "side" (emptied by the clear), the generation alone (no rows carried it), then main
    assert len(statements) == 3, statements


@pytest.mark.skipif(
    not ON_SQLITE,
    reason=(
        "asserts SQLite's query plan; PostgreSQL chooses plans from table statistics, and the "
        "copy's results are compared with the SDK on both databases by the differential suite"
    ),
)
async def test_branch_copy_reads_an_index_range_ending_at_the_fork_turn():
    """The copy must not scan the whole source branch, only the turns it copies."""
    session = DjangoSession(session_id="copy-range")
    for turn in range(50):
        await session.add_items([user(f"q{turn}"), assistant(f"a{turn}")])
    await session.create_branch_from_turn(2, "early")
    assert await session.get_items() == [user("q0"), assistant("a0")]

    @sync_to_async
    def copy_plan() -> str:
        sql = statements("default").copy_prefix
        with connections["default"].cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, ["b", 100, "copy-range", "main", 2, 3])
            return " | ".join(str(row[-1]) for row in cursor.fetchall())

    plan = await copy_plan()
    assert "sequence_number<?" in plan.replace(" ", ""), plan
