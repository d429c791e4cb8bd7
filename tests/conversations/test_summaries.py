"""The session summaries stay exact whoever writes: ``DjangoSession``, the staff services, the
SDK's own ``AdvancedSQLiteSession`` on the same file, and plain SQL.

After every operation the summary tables are compared with a recomputation from the SDK's
tables (``summaries.kept`` against ``summaries.recomputed``); a trigger that missed a case shows
as a difference naming the table and rows.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from asgiref.sync import sync_to_async
from django.db import connection, transaction

from conversations import services, summaries
from conversations.session import DjangoSession
from tests.support.sdk_harness import (
    assistant,
    function_call,
    function_output,
    run_result,
    usage,
    user,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

ON_SQLITE = connection.vendor == "sqlite"
sqlite_only = pytest.mark.skipif(not ON_SQLITE, reason="the SDK's class writes SQLite files")

TOOLS = ("lookup_order", "get_weather", "escalate_to_human")


def assert_exact() -> None:
    kept, recomputed = summaries.kept(connection), summaries.recomputed(connection)
    for table in summaries.TABLES:
        assert kept[table] == recomputed[table], table


async def check() -> None:
    await sync_to_async(assert_exact)()


def _database_file() -> str:
    return str(Path(connection.settings_dict["NAME"]).resolve())


def turn_items(rng: random.Random, n: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [user(f"question {n}: {rng.choice(['refund', 'café', 'x'])}")]
    for k in range(rng.choice((0, 0, 1, 2))):
        name, call = rng.choice(TOOLS), f"call_{n}_{k}_{rng.random()}"
        items += [function_call(name, call), function_output(call, "ok")]
    items.append(assistant(f"answer {n}"))
    return items


async def random_ops(session: Any, rng: random.Random, steps: int, *, sdk: bool) -> None:
    """Random turns, usage, forks, pops and branch deletes on ``session``; check after each."""
    turn = 0
    for _ in range(steps):
        op = rng.random()
        if op < 0.45 or turn == 0:
            turn += 1
            await session.add_items(turn_items(rng, turn))
            tokens = rng.randint(1, 500)
            if sdk:
                await session.store_run_usage(run_result(usage(total=tokens)))
            else:
                await session.store_usage(usage(total=tokens))
        elif op < 0.6:
            await session.pop_item()
        elif op < 0.75:
            turns = await session.get_conversation_turns()
            if turns:
                pick = rng.choice(turns)["turn"]
                await session.create_branch_from_turn(pick, f"b{rng.randint(0, 9999)}")
        elif op < 0.85:
            branches = [b["branch_id"] for b in await session.list_branches()]
            others = [b for b in branches if b != "main"]
            if others:
                victim = rng.choice(others)
                await session.switch_to_branch("main")
                await session.delete_branch(victim, force=True)
        elif op < 0.9 and sdk is False:
            await session.clear_session()
            turn = 0
        else:
            await session.add_items([assistant(f"extra {rng.random()}")])
        await check()


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_djangosession_writes_keep_the_summaries_exact(seed):
    rng = random.Random(seed)
    for k in range(3):
        session = DjangoSession(session_id=f"s{seed}-{k}")
        await random_ops(session, rng, 25, sdk=False)


@pytest.mark.asyncio
@sqlite_only
@pytest.mark.parametrize("seed", [4, 5])
async def test_the_sdks_own_session_on_the_same_file_keeps_the_summaries_exact(seed):
    path = _database_file()
    rng = random.Random(seed)
    for k in range(2):
        session = AdvancedSQLiteSession(session_id=f"sdk{seed}-{k}", db_path=path)
        try:
            await random_ops(session, rng, 25, sdk=True)
        finally:
            session.close()


@pytest.mark.asyncio
async def test_staff_operations_keep_the_summaries_exact():
    session = DjangoSession(session_id="staff")
    for n in range(1, 5):
        await session.add_items(turn_items(random.Random(n), n))
        await session.store_usage(usage(total=10 * n))
    await session.create_branch_from_turn(2, "alt")
    await session.add_items(turn_items(random.Random(9), 9))
    await check()

    def staff() -> None:
        services.branch_rename(session_id="staff", old="alt", new="alt2")
        assert_exact()
        services.session_duplicate(session_id="staff", new_session_id="staff-copy")
        assert_exact()
        services.branch_delete(session_id="staff-copy", branch_id="alt2")
        assert_exact()
        services.session_delete(session_id="staff-copy")
        assert_exact()

    await sync_to_async(staff)()


def _plain_sql(statements: list[tuple[str, list[Any]]]) -> None:
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def test_plain_sql_writes_keep_the_summaries_exact():
    ts = "'2025-01-02 03:04:05'"
    _plain_sql([(f"INSERT INTO agent_sessions (session_id, updated_at) VALUES ('p', {ts})", [])])
    assert_exact()
    message = '{"role": "user", "content": "first question"}'
    call = '{"type": "function_call", "name": "lookup_order", "call_id": "c", "arguments": "{}"}'
    for i, (data, mtype, tool) in enumerate(
        [(message, "user", None), (call, "function_call", "lookup_order")], start=1
    ):
        _plain_sql(
            [
                (
                    "INSERT INTO agent_messages (id, session_id, message_data) "
                    "VALUES (%s, 'p', %s)",
                    [1000 + i, data],
                ),
                (
                    "INSERT INTO message_structure (session_id, message_id, branch_id, "
                    "message_type, sequence_number, user_turn_number, branch_turn_number, "
                    "tool_name) VALUES ('p', %s, %s, %s, %s, 1, 1, %s)",
                    [1000 + i, "main", mtype, i, tool],
                ),
            ]
        )
        assert_exact()
    # A second branch sharing the user message, then usage on both, replaced, then deleted.
    _plain_sql(
        [
            (
                "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
                "sequence_number, user_turn_number, branch_turn_number) "
                "VALUES ('p', 1001, 'other', 'user', 3, 1, 1)",
                [],
            ),
            (
                "INSERT INTO turn_usage (session_id, branch_id, user_turn_number, total_tokens) "
                "VALUES ('p', 'main', 1, 40), ('p', 'other', 1, 2)",
                [],
            ),
            ("UPDATE turn_usage SET total_tokens = 7 WHERE branch_id = 'other'", []),
        ]
    )
    assert_exact()
    # The title follows an edit of the first user message; the day follows updated_at.
    _plain_sql(
        [
            (
                "UPDATE agent_messages SET message_data = %s WHERE id = 1001",
                ['{"role": "user", "content": "edited"}'],
            ),
            (
                "UPDATE agent_sessions SET updated_at = '2025-03-04 00:00:00' "
                "WHERE session_id = 'p'",
                [],
            ),
        ]
    )
    assert_exact()
    _plain_sql(
        [("UPDATE message_structure SET tool_name = 'get_weather' WHERE message_id = 1002", [])]
    )
    assert_exact()
    _plain_sql(
        [("UPDATE message_structure SET branch_id = 'renamed' WHERE branch_id = 'other'", [])]
    )
    assert_exact()
    _plain_sql(
        [
            ("DELETE FROM message_structure WHERE message_id = 1002", []),
            ("DELETE FROM message_structure WHERE branch_id = 'main' AND session_id = 'p'", []),
            ("DELETE FROM turn_usage WHERE branch_id = 'main'", []),
        ]
    )
    assert_exact()
    _plain_sql([("DELETE FROM agent_sessions WHERE session_id = 'p'", [])])
    assert_exact()
    assert summaries.kept(connection)[summaries.SUMMARIES] == []


@sqlite_only
@pytest.mark.parametrize("recursive", [False, True])
def test_insert_or_replace_counts_once_with_or_without_recursive_triggers(recursive):
    path = _database_file()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA recursive_triggers = {'ON' if recursive else 'OFF'}")
        conn.execute("INSERT INTO agent_sessions (session_id) VALUES ('r')")
        for total in (100, 30, 55):
            conn.execute(
                "INSERT OR REPLACE INTO turn_usage (session_id, branch_id, user_turn_number, "
                "total_tokens) VALUES ('r', 'main', 1, ?)",
                (total,),
            )
    finally:
        conn.close()
    assert_exact()
    (row,) = [r for r in summaries.kept(connection)[summaries.SUMMARIES] if r[0] == "r"]
    assert row[7] == 55


@pytest.mark.skipif(not ON_SQLITE, reason="jsonb cannot hold invalid JSON")
def test_a_row_that_is_not_json_never_fails_a_write():
    _plain_sql(
        [
            ("INSERT INTO agent_sessions (session_id) VALUES ('bad')", []),
            (
                "INSERT INTO agent_messages (id, session_id, message_data) VALUES (77, 'bad', %s)",
                ["{not json"],
            ),
            (
                "INSERT INTO message_structure (session_id, message_id, message_type, "
                "sequence_number, user_turn_number) VALUES ('bad', 77, 'user', 1, 1)",
                [],
            ),
        ]
    )
    assert_exact()
    (row,) = [r for r in summaries.kept(connection)[summaries.SUMMARIES] if r[0] == "bad"]
    assert row[1:5] == (77, 1, "", 1)


def test_the_migration_summarises_what_was_stored_before_it():
    """Rows written while no trigger existed (an SDK file before ``migrate``) are summarised
    by what migration 0006 runs."""
    with transaction.atomic():
        summaries.drop_costs(connection)
        summaries.drop(connection)
    try:
        _plain_sql(
            [
                ("INSERT INTO agent_sessions (session_id) VALUES ('old')", []),
                (
                    "INSERT INTO agent_messages (id, session_id, message_data) "
                    "VALUES (5, 'old', %s)",
                    ['{"role": "user", "content": "from before"}'],
                ),
                (
                    "INSERT INTO message_structure (session_id, message_id, message_type, "
                    "sequence_number, user_turn_number, tool_name) "
                    "VALUES ('old', 5, 'user', 1, 1, NULL)",
                    [],
                ),
                (
                    "INSERT INTO turn_usage (session_id, user_turn_number, total_tokens) "
                    "VALUES ('old', 1, 12)",
                    [],
                ),
            ]
        )
    finally:
        with transaction.atomic():
            summaries.create(connection)
            summaries.create_costs(connection)
    assert_exact()
    (row,) = summaries.kept(connection)[summaries.SUMMARIES]
    assert row[3:8] == ("from before", 1, 1, 0, 12)


@pytest.mark.skipif(ON_SQLITE, reason="SQLite has no TRUNCATE (its DELETE fires the triggers)")
def test_truncate_starts_the_summaries_over():
    _plain_sql(
        [
            ("INSERT INTO agent_sessions (session_id) VALUES ('t1'), ('t2')", []),
            (
                "INSERT INTO turn_usage (session_id, user_turn_number, total_tokens) "
                "VALUES ('t1', 1, 5), ('t2', 1, 6)",
                [],
            ),
        ]
    )
    _plain_sql([("TRUNCATE turn_usage", [])])
    assert_exact()
    assert [r[7] for r in summaries.kept(connection)[summaries.SUMMARIES]] == [0, 0]
    from conversations.models import AgentSpan, AgentTrace

    AgentTrace.objects.create(trace_id="tt", session_id="t1")
    AgentSpan.objects.create(span_id="ts", trace_id="tt", kind="response", model="gpt-4o")
    assert_exact()
    _plain_sql([("TRUNCATE forkview_spans", [])])
    assert_exact()
    AgentSpan.objects.create(span_id="ts", trace_id="tt", kind="response", model="gpt-4o")
    _plain_sql([("TRUNCATE forkview_traces", [])])
    assert_exact()
    _plain_sql([("TRUNCATE agent_sessions CASCADE", [])])
    assert_exact()
    assert summaries.kept(connection)[summaries.SUMMARIES] == []


def _costs(session_id: str) -> tuple[Any, ...] | None:
    for row in summaries.kept(connection)[summaries.SUMMARIES]:
        if row[0] == session_id:
            return tuple(row[9:12])  # cost_nanos, model_calls, unpriced_calls
    return None


def test_traces_and_spans_keep_the_recorded_costs_exact():
    """Every way a trace or span comes, moves or goes keeps the sessions' recorded costs
    (``cost_nanos``, model calls, unpriced calls) equal to a recomputation."""
    from django.utils import timezone

    from conversations.models import AgentSpan, AgentTrace

    now = timezone.now()

    def span(
        span_id: str,
        trace_id: str,
        kind: str = "response",
        model: str | None = None,
        tokens: int = 1000,
    ) -> AgentSpan:
        return AgentSpan(
            span_id=span_id,
            trace_id=trace_id,
            kind=kind,
            model=model,
            input_tokens=tokens,
            output_tokens=tokens // 10,
            started_at=now,
        )

    _plain_sql([("INSERT INTO agent_sessions (session_id) VALUES ('c1'), ('c2')", [])])
    assert _costs("c1") == (None, 0, 0)
    AgentTrace.objects.create(trace_id="t1", session_id="c1", started_at=now)
    assert_exact()
    AgentSpan.objects.bulk_create(
        [
            span("s1", "t1", model="gpt-4o"),
            span("s2", "t1", "generation", "acme-llm-7"),
            span("s3", "t1", "function"),
        ]
    )
    assert_exact()
    priced = AgentSpan.objects.get(span_id="s1").cost_nanos
    assert priced and _costs("c1") == (priced, 2, 1)
    # A span before its trace; a trace before its session.
    AgentSpan.objects.bulk_create([span("s4", "t2", model="gpt-4o", tokens=500)])
    assert_exact()
    AgentTrace.objects.create(trace_id="t2", session_id="c1", started_at=now)
    assert_exact()
    AgentTrace.objects.create(trace_id="t3", session_id="c3", started_at=now)
    AgentSpan.objects.bulk_create([span("s5", "t3", model="forkview-offline-demo")])
    assert_exact()
    _plain_sql([("INSERT INTO agent_sessions (session_id) VALUES ('c3')", [])])
    assert_exact()
    assert _costs("c3") == (0, 1, 0)
    # A trace moves to another session; a span is repriced, changes kind, goes.
    AgentTrace.objects.filter(trace_id="t2").update(session_id="c2")
    assert_exact()
    assert _costs("c1") == (priced, 2, 1) and _costs("c2")[1:] == (1, 0)
    AgentSpan.objects.filter(span_id="s2").update(cost_nanos=7)
    assert_exact()
    assert _costs("c1") == (priced + 7, 2, 0)
    AgentSpan.objects.filter(span_id="s1").update(kind="function")
    assert_exact()
    AgentSpan.objects.filter(span_id="s2").delete()
    assert_exact()
    assert _costs("c1") == (None, 0, 0)
    # A trace goes before its spans, or after them; a session goes and comes back.
    AgentSpan.objects.filter(span_id="s1").update(kind="response")
    AgentTrace.objects.filter(trace_id="t1").delete()
    assert_exact()
    AgentSpan.objects.filter(trace_id="t1").delete()
    AgentSpan.objects.filter(trace_id="t2").delete()
    assert_exact()
    assert _costs("c2") == (None, 0, 0)
    _plain_sql([("DELETE FROM agent_sessions WHERE session_id = 'c3'", [])])
    assert_exact()
    _plain_sql([("INSERT INTO agent_sessions (session_id) VALUES ('c3')", [])])
    assert_exact()
    assert _costs("c3") == (0, 1, 0)


@pytest.mark.asyncio
async def test_staff_operations_keep_the_recorded_costs_exact():
    """Traces follow their session through the staff operations (copy, rename, delete)."""
    from conversations.models import AgentSpan, AgentTrace

    session = DjangoSession(session_id="traced")
    for n in range(1, 4):
        await session.add_items(turn_items(random.Random(n), n))
    await session.create_branch_from_turn(2, "alt")
    await session.add_items(turn_items(random.Random(7), 7))

    def staff() -> None:
        for n, branch in ((1, "main"), (2, "alt")):
            AgentTrace.objects.create(
                trace_id=f"tr{n}", session_id="traced", branch_id=branch, turn=n
            )
            AgentSpan.objects.bulk_create(
                [
                    AgentSpan(
                        span_id=f"sp{n}",
                        trace_id=f"tr{n}",
                        kind="response",
                        model="gpt-4o",
                        input_tokens=100 * n,
                        output_tokens=n,
                    )
                ]
            )
        assert_exact()
        services.session_duplicate(session_id="traced", new_session_id="traced-copy")
        assert_exact()
        assert _costs("traced-copy") == _costs("traced") and _costs("traced")[1] == 2
        services.branch_rename(session_id="traced-copy", old="alt", new="alt2")
        assert_exact()
        services.branch_delete(session_id="traced-copy", branch_id="alt2")
        assert_exact()
        services.session_delete(session_id="traced-copy")
        assert_exact()
        assert _costs("traced-copy") is None

    await sync_to_async(staff)()
