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
from tests.support.sdk_harness import (
    assistant,
    function_call,
    function_output,
    run_result,
    usage,
    user,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ON_SQLITE = connection.vendor == "sqlite"


@asynccontextmanager
async def captured(alias: str = "default") -> AsyncIterator[list[str]]:
    """The SQL run by session operations inside the block (BEGIN and COMMIT included)."""
    statements: list[str] = []

    def start() -> CaptureQueriesContext:  # connections[alias] is per thread: the worker's
        # An earlier test may have filled this thread's bounded query log (9000 entries, e.g.
        # a seed run under DEBUG): a full log would make every capture come back empty.
        connections[alias].queries_log.clear()
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


# ---- SQLite: statements skip Django's cursor unless something observes it ------------------

SQLITE_ONLY = pytest.mark.skipif(
    not ON_SQLITE,
    reason="the DB-API fast path is SQLite's; PostgreSQL always uses Django's cursor",
)


@asynccontextmanager
async def django_cursor_executions() -> AsyncIterator[list[str]]:
    """Statements that went through Django's ``CursorWrapper`` (a spy: the real method runs)."""
    from django.db.backends.utils import CursorWrapper

    seen: list[str] = []
    original = CursorWrapper.execute

    def spy(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    CursorWrapper.execute = spy
    try:
        yield seen
    finally:
        CursorWrapper.execute = original


@SQLITE_ONLY
async def test_unobserved_sqlite_reads_skip_djangos_cursor():
    session = await seeded("fast-reads")
    async with django_cursor_executions() as seen:
        assert len(await session.get_items(limit=2)) == 2
        assert len(await session.list_branches()) == 1
        await session.add_items([user("more")])
    # Only the transaction's BEGIN IMMEDIATE (Django's atomic) went through Django's cursor.
    assert seen == ["BEGIN IMMEDIATE"], seen


@SQLITE_ONLY
async def test_sqlite_fast_path_can_be_turned_off():
    session = await seeded("slow-reads")
    session.sqlite_fast_path = False
    async with django_cursor_executions() as seen:
        await session.get_items(limit=2)
    assert len(seen) == 1 and "agent_messages" in seen[0], seen


@SQLITE_ONLY
async def test_execute_wrappers_see_every_statement():
    """An observer installed with ``connection.execute_wrapper`` (APMs, SQL comments) still
    sees the session's statements: its presence routes them through Django's cursor."""
    session = await seeded("wrapped")
    seen: list[str] = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    def install() -> None:  # on the worker thread, whose connection the session uses
        connections["default"].execute_wrappers.append(wrapper)

    def uninstall() -> None:
        connections["default"].execute_wrappers.remove(wrapper)

    await sync_to_async(install)()
    try:
        assert len(await session.get_items()) == 4
    finally:
        await sync_to_async(uninstall)()
    assert len(seen) == 1 and "agent_messages" in seen[0], seen


@SQLITE_ONLY
async def test_fast_path_errors_are_djangos_database_errors():
    from django.db.utils import OperationalError

    from conversations.session import _db_operation

    class Broken(DjangoSession):
        @_db_operation
        def _bad_sync(self) -> object:
            return self._execute("SELECT no_such_column FROM agent_messages", [])

    session = Broken(session_id="broken")
    with pytest.raises(OperationalError, match="no_such_column"):
        await sync_to_async(session._bad_sync)()
    # The connection is checked (and kept: it is usable) before the next operation.
    assert await session.get_items() == []


# ---- PostgreSQL: one statement per write, prepared statements ------------------------------

POSTGRES_ONLY = pytest.mark.skipif(ON_SQLITE, reason="PostgreSQL's write functions (0007)")


@POSTGRES_ONLY
async def test_postgres_add_items_and_pop_item_are_one_statement_each():
    """Outside a transaction: no BEGIN/COMMIT, one round trip (forkview_append/_pop)."""
    session = await seeded("one-statement")
    async with captured() as statements:
        await session.add_items([user("more"), assistant("sure")])
        assert await session.pop_item() == assistant("sure")
    assert [sql.split("(")[0] for sql in statements] == [
        "SELECT forkview_append",
        "SELECT generation, item FROM forkview_pop",
    ], statements
    items = await session.get_items()
    assert items[-2:] == [assistant("hello"), user("more")]
    turns = await session.get_conversation_turns()
    assert [turn["turn"] for turn in turns] == [1, 2]


@POSTGRES_ONLY
async def test_postgres_write_inside_a_callers_transaction_uses_a_savepoint():
    from django.db import DataError, transaction

    session = await seeded("in-atomic")

    @sync_to_async
    def inside() -> list[str]:
        with transaction.atomic(), CaptureQueriesContext(connection) as context:
            async_items = [user("x"), assistant("y")]
            from asgiref.sync import async_to_sync

            async_to_sync(session.add_items)(async_items)
            # A refused batch writes nothing and leaves the transaction usable.
            with pytest.raises((ValueError, DataError)):
                async_to_sync(session.add_items)([{"role": "user", "content": "bad \x00"}])
            assert len(async_to_sync(session.get_items)()) == 6
        return [q["sql"] for q in context.captured_queries]

    statements = await inside()
    assert any(sql.startswith("SAVEPOINT") for sql in statements), statements
    assert len(await session.get_items()) == 6


@POSTGRES_ONLY
async def test_unobserved_postgres_statements_skip_djangos_cursor_and_are_prepared():
    session = await seeded("pg-fast")
    async with django_cursor_executions() as seen:
        for _ in range(2):
            assert len(await session.get_items(limit=2)) == 2
        await session.add_items([user("more")])
        assert await session.pop_item() == user("more")
    assert seen == [], seen

    @sync_to_async
    def prepared() -> list[str]:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            return [row[0] for row in cursor.fetchall()]

    names = " | ".join(await prepared())
    assert "forkview_append" in names and "forkview_pop" in names, names
    assert "ORDER BY s.branch_id DESC" in names, names


@POSTGRES_ONLY
async def test_postgres_fast_path_can_be_turned_off():
    session = await seeded("pg-slow")
    session.postgres_fast_path = False
    async with django_cursor_executions() as seen:
        await session.get_items(limit=2)
    assert len(seen) == 1 and "agent_messages" in seen[0], seen


@POSTGRES_ONLY
async def test_postgres_fast_path_errors_are_djangos_database_errors():
    from django.db.utils import ProgrammingError

    from conversations.session import _db_operation

    class Broken(DjangoSession):
        @_db_operation
        def _bad_sync(self) -> object:
            return self._execute("SELECT no_such_column FROM agent_messages", [])

    session = Broken(session_id="broken")
    with pytest.raises(ProgrammingError, match="no_such_column"):
        await sync_to_async(session._bad_sync)()
    assert await session.get_items() == []
