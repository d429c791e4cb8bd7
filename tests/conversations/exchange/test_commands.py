"""import_agents_db / import_session / export_session against files the real SDK wrote."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from agents.memory import SQLiteSession
from django.core.management import CommandError, call_command

from conversations.exchange import tree_export
from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    SessionClearGeneration,
    TurnUsage,
)
from conversations.session import DjangoSession
from tests.support.sdk_harness import (
    OTHER_ITEMS,
    TOOL_ITEMS,
    assistant,
    function_call,
    function_output,
    run_result,
    usage,
    user,
)
from tests.support.trees import call

pytestmark = pytest.mark.django_db

CONVERSATION = [
    {"role": "system", "content": "be brief"},
    user("Weather in Paris?"),
    function_call("get_weather", "c1", '{"city": "Paris"}'),
    function_output("c1", "sunny"),
    assistant("Sunny."),
    user([{"type": "input_text", "text": "And Lyon?"}]),
    *TOOL_ITEMS[2:8],
    assistant("Cloudy.", "msg_2"),
    user("Thanks"),
]


def run(*args: str, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_plain(path: Path, sessions_table="agent_sessions", messages_table="agent_messages"):
    async def go():
        for sid, items in (("plain-1", CONVERSATION), ("plain-2", [user("hi"), assistant("yo")])):
            s = SQLiteSession(
                sid, str(path), sessions_table=sessions_table, messages_table=messages_table
            )
            await s.add_items(items)
            s.close()

    asyncio.run(go())


def write_advanced(path: Path, **tables):
    async def go():
        s = AdvancedSQLiteSession(session_id="adv", db_path=str(path), create_tables=True, **tables)
        await s.add_items(CONVERSATION[:5])
        await s.store_run_usage(run_result(usage(2, 100, 20)))
        await s.add_items(CONVERSATION[5:])
        await s.store_run_usage(run_result(usage(1, 200, 30)))
        await s.create_branch_from_turn(2, "alt")
        await s.add_items([user("Marseille?"), assistant("Windy.", "msg_9")])
        await s.store_run_usage(run_result(usage(1, 120, 9)))
        await s.switch_to_branch("main")
        cleared = AdvancedSQLiteSession(session_id="adv", db_path=str(path), **tables)
        # A second session, cleared once: its generation and reservation must survive.
        other = AdvancedSQLiteSession(session_id="other", db_path=str(path), **tables)
        await other.add_items([user("x")])
        await other.create_branch_from_turn(1, "ghost")
        await other.clear_session()
        await other.add_items([user("after the clear"), *OTHER_ITEMS[:4]])
        for sess in (s, cleared, other):
            sess.close()

    asyncio.run(go())


async def sdk_state(path: Path, session_id: str, **tables) -> dict:
    s = AdvancedSQLiteSession(session_id=session_id, db_path=str(path), **tables)
    state = {}
    for b in await s.list_branches():
        state[b["branch_id"]] = {
            "items": await s.get_items(branch_id=b["branch_id"]),
            "usage": await s.get_turn_usage(branch_id=b["branch_id"]),
            "by_turns": await s.get_conversation_by_turns(branch_id=b["branch_id"]),
            "tools": await s.get_tool_usage(branch_id=b["branch_id"]),
        }
    s.close()
    return state


def django_state(session_id: str) -> dict:
    session = DjangoSession(session_id=session_id)
    state = {}
    for b in call(session, "list_branches"):
        state[b["branch_id"]] = {
            "items": call(session, "get_items", branch_id=b["branch_id"]),
            "usage": call(session, "get_turn_usage", branch_id=b["branch_id"]),
            "by_turns": call(session, "get_conversation_by_turns", branch_id=b["branch_id"]),
            "tools": call(session, "get_tool_usage", branch_id=b["branch_id"]),
        }
    return state


# ---- plain SQLiteSession files ----------------------------------------------------------


@pytest.mark.parametrize("tables", [{}, {"sessions_table": "chats", "messages_table": "lines"}])
def test_import_plain_file_builds_structure_like_add_items(tmp_path, tables):
    path = tmp_path / "plain.db"
    write_plain(path, **tables)
    before = digest(path)
    args = []
    if tables:
        args = ["--sessions-table", "chats", "--messages-table", "lines"]
    output = run("import_agents_db", str(path), *args)
    assert "SQLiteSession tables" in output and "Imported 2 session(s)" in output
    assert digest(path) == before  # opened read-only
    reference = DjangoSession(session_id="reference")
    call(reference, "add_items", CONVERSATION)
    imported = DjangoSession(session_id="plain-1")
    assert call(imported, "get_items") == CONVERSATION
    for method in ("get_conversation_by_turns", "get_tool_usage", "list_branches"):
        got, want = call(imported, method), call(reference, method)
        if method == "list_branches":
            got = [{k: v for k, v in b.items() if k != "created_at"} for b in got]
            want = [{k: v for k, v in b.items() if k != "created_at"} for b in want]
        assert got == want
    assert BranchReservation.objects.filter(session_id="plain-1", branch_id="main").exists()


def test_import_is_idempotent(tmp_path):
    path = tmp_path / "plain.db"
    write_plain(path)
    run("import_agents_db", str(path))
    snapshot = {sid: tree_export(session_id=sid) for sid in ("plain-1", "plain-2")}
    counts = [m.objects.count() for m in (AgentMessage, MessageStructure, TurnUsage)]
    output = run("import_agents_db", str(path))
    assert "Imported 0 session(s)" in output
    assert "Skipped 2 session(s) already present and identical" in output
    assert [m.objects.count() for m in (AgentMessage, MessageStructure, TurnUsage)] == counts
    assert {sid: tree_export(session_id=sid) for sid in snapshot} == snapshot


def test_import_session_filter_and_dry_run(tmp_path):
    path = tmp_path / "plain.db"
    write_plain(path)
    output = run("import_agents_db", str(path), "--session", "plain-2", "--dry-run")
    assert "Would import 1 session(s)" in output
    assert not AgentSession.objects.exists()
    run("import_agents_db", str(path), "--session", "plain-2", "--session", "missing")
    assert list(AgentSession.objects.values_list("pk", flat=True)) == ["plain-2"]


def test_import_reports_a_changed_session_as_conflict(tmp_path):
    path = tmp_path / "plain.db"
    write_plain(path)
    run("import_agents_db", str(path))
    asyncio.run(_append(path))
    output = run("import_agents_db", str(path))
    assert "Skipped session 'plain-2': already present with different content" in output


async def _append(path: Path) -> None:
    s = SQLiteSession("plain-2", str(path))
    await s.add_items([user("one more")])
    s.close()


# ---- AdvancedSQLiteSession files ---------------------------------------------------------


@pytest.mark.parametrize("tables", [{}, {"sessions_table": "conv", "messages_table": "conv_items"}])
def test_import_advanced_file_preserves_everything(tmp_path, tables):
    path = tmp_path / "adv.db"
    write_advanced(path, **tables)
    args = []
    if tables:
        args = ["--sessions-table", "conv", "--messages-table", "conv_items"]
    output = run("import_agents_db", str(path), *args)
    assert "AdvancedSQLiteSession tables" in output and "Imported 2 session(s)" in output
    for sid in ("adv", "other"):
        assert django_state(sid) == asyncio.run(sdk_state(path, sid, **tables))
    src = sqlite3.connect(path)
    for table, column in (("message_structure", "created_at"), ("turn_usage", "created_at")):
        want = sorted(r[0] for r in src.execute(f"SELECT {column} FROM {table}"))
        got = sorted(
            v.strftime("%Y-%m-%d %H:%M:%S")
            for v in (
                MessageStructure if table == "message_structure" else TurnUsage
            ).objects.values_list(column, flat=True)
        )
        assert got == want
    reserved = set(BranchReservation.objects.values_list("session_id", "branch_id"))
    assert set(src.execute("SELECT session_id, branch_id FROM branch_reservations")) == reserved
    generations = set(SessionClearGeneration.objects.values_list("session_id", "generation"))
    assert ("other", 1) in generations
    assert set(src.execute("SELECT * FROM session_clear_generations")) == generations
    details = TurnUsage.objects.get(session_id="adv", branch_id="main", user_turn_number=1)
    assert details.input_tokens_details == {
        "cached_tokens": 2,
        "cache_write_tokens": 3,
        "cache_write_tokens_details": None,
    }
    # Reserved ids survive: the imported session refuses a used branch name like the SDK.
    with pytest.raises(ValueError, match="already been used"):
        call(DjangoSession(session_id="other"), "create_branch_from_turn", 1, "ghost")
    assert "Imported 0 session(s)" in run("import_agents_db", str(path), *args)


def test_import_reports_hostile_and_undecodable_rows(tmp_path):
    path = tmp_path / "adv.db"
    write_advanced(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO agent_messages (session_id, message_data) VALUES ('adv', '{not json')")
    bad_id = db.execute("SELECT max(id) FROM agent_messages").fetchone()[0]
    db.execute(
        "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
        "sequence_number, user_turn_number, branch_turn_number) "
        f"VALUES ('adv', {bad_id}, 'main', 'other', 999, 3, 3)"
    )
    db.execute(
        "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
        "sequence_number, user_turn_number, branch_turn_number) "
        "VALUES ('adv', 424242, 'main', 'user', 1000, 4, 4)"
    )
    db.execute("INSERT INTO agent_messages (session_id, message_data) VALUES ('ghost', '{}')")
    db.execute(
        "UPDATE turn_usage SET output_tokens_details = 'nope' WHERE session_id = 'adv' "
        "AND branch_id = 'alt'"
    )
    db.execute(
        "INSERT INTO agent_messages (session_id, message_data) VALUES "
        '(\'adv\', \'{"role": "user", "content": "Robert\'\'); DROP TABLE x;--"}\')'
    )
    db.commit()
    db.close()
    output = run("import_agents_db", str(path))
    assert f"agent_messages id {bad_id}: undecodable JSON" in output
    assert f"points to message {bad_id}, which is missing" in output
    assert "points to message 424242, which is missing" in output
    assert "1 message row(s) of session 'ghost': orphan (no session row)" in output
    assert "output_tokens_details is undecodable JSON; stored as NULL" in output
    assert "message(s) on no branch" in output
    assert AgentMessage.objects.filter(message_data__content="Robert'); DROP TABLE x;--").exists()
    assert not AgentSession.objects.filter(pk="ghost").exists()


@pytest.mark.parametrize("bad", ["x; DROP TABLE agent_sessions", "missing_table"])
def test_import_refuses_bad_table_names(tmp_path, bad):
    path = tmp_path / "plain.db"
    write_plain(path)
    with pytest.raises(CommandError):
        run("import_agents_db", str(path), "--messages-table", bad)


def test_import_refuses_non_sqlite_file(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(CommandError):
        run("import_agents_db", str(path))


def test_import_progress_bar(tmp_path):
    path = tmp_path / "plain.db"
    write_plain(path)
    err = io.StringIO()
    call_command(
        "import_agents_db", str(path), "--progress", "always", stdout=io.StringIO(), stderr=err
    )
    assert (
        "[" in err.getvalue()
        and f"{len(CONVERSATION) + 2}/{len(CONVERSATION) + 2} messages" in err.getvalue()
    )


# ---- export_session / import_session -----------------------------------------------------


def test_export_then_import_session_round_trip(tmp_path):
    path = tmp_path / "adv.db"
    write_advanced(path)
    run("import_agents_db", str(path))
    out = tmp_path / "adv.json"
    run("export_session", "adv", "--format", "json", "--output", str(out))
    first = out.read_text()
    assert first == run("export_session", "adv")  # stdout, json by default
    for model in (
        TurnUsage,
        MessageStructure,
        AgentMessage,
        AgentSession,
        BranchReservation,
        SessionClearGeneration,
    ):
        model.objects.all().delete()
    assert "Imported session 'adv'" in run("import_session", str(out))
    assert run("export_session", "adv") == first
    assert "already present and identical" in run("import_session", str(out))


def test_export_session_formats_and_errors(tmp_path):
    path = tmp_path / "adv.db"
    write_advanced(path)
    run("import_agents_db", str(path))
    jsonl = run("export_session", "adv", "--format", "jsonl", "--branch", "alt")
    assert [json.loads(x) for x in jsonl.splitlines()] == asyncio.run(sdk_state(path, "adv"))[
        "alt"
    ]["items"]
    assert "## Turn 2" in run("export_session", "adv", "--format", "markdown")
    with pytest.raises(CommandError, match="does not exist"):
        run("export_session", "nope")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "x"}')
    with pytest.raises(CommandError, match="Not a Forkview session tree"):
        run("import_session", str(bad))
