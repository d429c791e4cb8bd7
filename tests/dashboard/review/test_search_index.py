"""The message search index is kept by the database for every writer (issue 14).

Rows written by plain SQL (inserted, updated, deleted) and by the SDK's own
``AdvancedSQLiteSession`` are found without Forkview's write path; hostile or malformed rows
never break a write and never show; the query syntax never errors; the migration backfills a
file the SDK wrote before Forkview migrated it, and is reversible.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession
from asgiref.sync import async_to_sync
from django.db import connection

from conversations import search_index
from dashboard.review import selectors
from dashboard.review.selectors import search
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[3]
sqlite_only = pytest.mark.skipif("connection.vendor != 'sqlite'")


# ---- helpers ------------------------------------------------------------------------------


def _sql(statement: str) -> str:
    """``statement`` with ``%j`` as a JSON parameter of the vendor's column type."""
    return statement.replace(
        "%j", "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"
    )


def plain_session(session_id: str, *items: Any) -> list[int]:
    """A session written by plain SQL, as another program would (no Forkview code)."""
    ids = []
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO agent_sessions (session_id) VALUES (%s)", [session_id])
        for seq, item in enumerate(items, 1):
            data = item if isinstance(item, str | bytes) else json.dumps(item)
            cursor.execute(
                _sql("INSERT INTO agent_messages (session_id, message_data) VALUES (%s, %j)"),
                [session_id, data],
            )
            cursor.execute("SELECT MAX(id) FROM agent_messages")
            (message_id,) = cursor.fetchone()
            ids.append(int(message_id))
            cursor.execute(
                "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
                "sequence_number, user_turn_number, branch_turn_number) "
                "VALUES (%s, %s, 'main', 'user', %s, %s, %s)",
                [session_id, message_id, seq, seq, seq],
            )
    return ids


def found(query: str, **kwargs: Any) -> list[str]:
    """The sessions of the hits, newest first (one entry per session)."""
    return list(dict.fromkeys(h.session_id for h in selectors.search_hits(query=query, **kwargs)))


# ---- plain SQL writers ----------------------------------------------------------------------


def test_rows_inserted_by_plain_sql_are_found():
    plain_session("plain", {"role": "user", "content": "where is my quokka?"})
    assert found("quokka") == ["plain"]


def test_rows_updated_by_plain_sql_are_found_by_their_new_text_only():
    (message_id,) = plain_session("plain", {"role": "user", "content": "old wombat"})
    with connection.cursor() as cursor:
        cursor.execute(
            _sql("UPDATE agent_messages SET message_data = %j WHERE id = %s"),
            [json.dumps({"role": "user", "content": "new platypus"}), message_id],
        )
    assert found("wombat") == []
    assert found("platypus") == ["plain"]


def test_rows_deleted_by_plain_sql_are_gone():
    plain_session("plain", {"role": "user", "content": "a numbat"})
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM message_structure WHERE session_id = 'plain'")
        cursor.execute("DELETE FROM agent_messages WHERE session_id = 'plain'")
    assert found("numbat") == []


@sqlite_only
def test_a_row_replaced_by_insert_or_replace_is_reindexed():
    (message_id,) = plain_session("plain", {"role": "user", "content": "a bilby"})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT OR REPLACE INTO agent_messages (id, session_id, message_data) "
            "VALUES (%s, 'plain', %s)",
            [message_id, json.dumps({"role": "user", "content": "a dingo"})],
        )
    # (the replaced row's structure went with it: ON DELETE CASCADE; read the index itself)
    assert (_fts_here("bilby"), _fts_here("dingo")) == ([], [message_id])


def _fts_here(query: str) -> list[int]:
    table = search_index.SQLITE_TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [query])
        return [int(r) for (r,) in cursor.fetchall()]


def test_every_text_field_is_found_and_json_keys_are_not():
    plain_session(
        "fields",
        {"role": "assistant", "content": [{"type": "output_text", "text": "alpha"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "bravo"}]},
        {"type": "function_call", "name": "charlie_tool", "arguments": '{"city": "delta"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "echo"},
        {"type": "web_search_call", "action": {"type": "search", "query": "foxtrot"}},
        {"role": "user", "content": [{"type": "refusal", "refusal": "golf"}]},
    )
    for word in ("alpha", "bravo", "charlie_tool", "delta", "echo", "foxtrot", "golf"):
        assert found(word) == ["fields"], word
    for key in ("role", "type", "call_id", "output_text", "summary_text", "action"):
        assert found(key) == [], key


def test_words_are_stemmed_on_both_databases():
    plain_session("stem", {"role": "user", "content": "The refunds were refunded."})
    assert found("refund") == ["stem"]
    hit = selectors.search_hits(query="refunding")[0]
    assert "<mark>refunds</mark>" in hit.snippet_html


def test_newest_first_and_limit():
    for n in range(5):
        plain_session(f"s{n}", {"role": "user", "content": f"common word {n}"})
    assert found("common", limit=3) == ["s4", "s3", "s2"]


# ---- non-ASCII ------------------------------------------------------------------------------


def test_non_ascii_written_with_escapes_is_found():
    """The SDK stores ``json.dumps`` text (``\\u`` escapes); the index holds the decoded text."""
    plain_session("intl", {"role": "user", "content": "Malmö: un café crème, привет мир"})
    assert found("crème") == found("Malmö") == found("мир") == ["intl"]
    hit = selectors.search_hits(query="crème")[0]
    assert "<mark>crème</mark>" in hit.snippet_html


@sqlite_only
def test_sqlite_ignores_diacritics():
    Writer("café").turn(turn_items(1, text="un café crème"))
    assert found("creme") == ["café"]


# ---- hostile and malformed rows -------------------------------------------------------------

HOSTILE_SQLITE = [
    "not json at all, quokka",
    '{"content": "quokka", "x": NaN}',
    "[" * 5000 + '"quokka"' + "]" * 5000,
    b'{"content": "quokka blob"}',
    '{"content": "quokka \\ud800 lone"}',
    '{"content": {"nested": ["quokka"]}}',
    '{"content": [1, null, true, [2], {"type": 5}]}',
    "",
    "null",
    "42",
]
HOSTILE_JSON = [
    '{"content": {"nested": ["quokka"]}}',
    '{"content": [1, null, true, [2], {"type": 5}], "summary": 3, "output": null}',
    '{"action": "quokka", "name": ["quokka"]}',
    '"a bare quokka"',
    "[1, 2, 3]",
    "null",
    "42",
    json.dumps({"content": "x" * 200_000 + " quokka"}),
    json.dumps({"content": " ".join(f"w{i}" for i in range(300_000))}),  # > 1 MB tsvector
]


def test_hostile_rows_never_break_an_insert():
    rows = HOSTILE_SQLITE if connection.vendor == "sqlite" else HOSTILE_JSON
    plain_session("hostile", *rows)  # raises if a trigger (or the index) refused a row
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM agent_messages WHERE session_id = 'hostile'")
        assert cursor.fetchone()[0] == len(rows)
    selectors.search_hits(query="quokka")  # never raises


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_truncate_empties_the_index():
    plain_session("plain", {"role": "user", "content": "a quokka"})
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE agent_messages CASCADE")
        cursor.execute(f"SELECT COUNT(*) FROM {search_index.PG_TABLE}")
        assert cursor.fetchone()[0] == 0


@sqlite_only
def test_malformed_rows_never_show():
    plain_session(
        "hostile", "not json at all, quokka", "[" * 5000 + "]" * 5000, b'{"content": "quokka"}'
    )
    assert found("quokka") == []
    assert found("json") == []


def test_query_syntax_never_errors():
    plain_session("q", {"role": "user", "content": 'say "hello world" or goodbye (NEAR) x*y'})
    for query in (
        '"',
        '"unclosed',
        "NEAR(a b)",
        "a:b",
        "^x",
        "*",
        "-",
        "- -x",
        "or",
        "AND OR NOT",
        "x*y",
        "'",
        "\\",
        "()",
        "{col}: z",
        "hello -world",
        '"hello world"',
    ):
        selectors.search_hits(query=query)
    assert found('"hello world"') == ["q"]
    assert found("hello -goodbye") == []
    assert found("zebra or goodbye") == ["q"]
    assert found('"world hello"') == []


def test_search_hits_is_two_queries(django_assert_num_queries):
    plain_session("q", {"role": "user", "content": "quokka"})
    with django_assert_num_queries(2):
        selectors.search_hits(query="quokka")


# ---- within ----------------------------------------------------------------------------------


def test_within_keeps_an_older_hit_behind_newer_ones():
    Writer("wanted").turn(turn_items(1, text="refund please", tool=True))
    for n in range(30):
        plain_session(f"other{n}", {"role": "user", "content": "refund again"})
    within = selectors.session_ids(selectors.SessionListFilters(tool="calculator"))
    assert found("refund", within=within) == ["wanted"]
    assert len(selectors.search_hits(query="refund")) == search.SEARCH_LIMIT


@sqlite_only
def test_the_list_says_when_older_matches_were_not_checked(monkeypatch, client, django_user_model):
    """SQLite reads the newest CANDIDATE_SCAN matches before the filters: a filtered search
    whose only hit is older than those says so instead of silently finding nothing."""
    from tests.conftest import grant

    monkeypatch.setattr(search, "CANDIDATE_SCAN", 5)
    Writer("wanted").turn(turn_items(1, text="refund please", tool=True))
    for n in range(6):
        plain_session(f"other{n}", {"role": "user", "content": "refund again"})
    within = selectors.session_ids(selectors.SessionListFilters(tool="calculator"))
    assert found("refund", within=within) == []  # the old hit is behind 6 newer ones
    assert search.search_scan_capped(query="refund", within=within)
    assert not search.search_scan_capped(query="refund", within=None)
    assert not search.search_scan_capped(query="please", within=within)  # 1 match: all read

    user = grant(django_user_model.objects.create_user("r", password="x"), "view_agentsession")
    client.force_login(user)
    page = client.get("/", {"q": "refund", "tool": "calculator"}).content.decode()
    assert "Only the newest 5 messages matching" in page
    page = client.get("/", {"q": "please", "tool": "calculator"}).content.decode()
    assert "Only the newest" not in page and "wanted" in page


# ---- the SDK's own writer ------------------------------------------------------------------


def _child_hits(path: Path, query: str) -> list[list[Any]]:
    """``search_hits`` in a child process bound to the SQLite file ``path``."""
    code = (
        "import django, json; django.setup(); "
        "from dashboard.review.selectors import search_hits; "
        "print(json.dumps([[h.session_id, h.branch_id, h.turn] "
        f"for h in search_hits(query={query!r})]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_env(path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@sqlite_only
def test_rows_the_sdk_writes_on_a_migrated_file_are_found(tmp_path: Path):
    path = tmp_path / "forkview.sqlite3"
    _migrate(path)
    session = AdvancedSQLiteSession(session_id="sdk", db_path=path, create_tables=False)
    try:
        add = async_to_sync(session.add_items)
        add([{"role": "user", "content": "is the axolotl à la carte?"}])
        add([{"type": "function_call", "call_id": "c1", "name": "menu_lookup", "arguments": "{}"}])
        assert _child_hits(path, "axolotl") == [["sdk", "main", 1]]
        assert _child_hits(path, "menu_lookup") == [["sdk", "main", 1]]
        async_to_sync(session.pop_item)()
        assert _child_hits(path, "menu_lookup") == []
    finally:
        session.close()


# ---- the migration -------------------------------------------------------------------------


def _editor() -> Any:
    """What ``search_index.create`` / ``drop`` use of a schema editor, inside the test's
    transaction (DDL is transactional on both vendors: the test's rollback undoes it)."""
    cursor = connection.cursor()
    return SimpleNamespace(connection=connection, execute=lambda sql: cursor.execute(sql))


def test_create_backfills_rows_written_without_the_index():
    search_index.drop(_editor())
    plain_session("before", {"role": "user", "content": "a quoll from before"})
    search_index.create(_editor())
    assert found("quoll") == ["before"]
    plain_session("after", {"role": "user", "content": "a quoll from after"})
    assert found("quoll") == ["after", "before"]


def test_drop_leaves_writes_working():
    search_index.drop(_editor())
    plain_session("plain", {"role": "user", "content": "no index"})
    search_index.drop(_editor())  # idempotent
    search_index.create(_editor())
    search_index.create(_editor())  # idempotent
    assert found("index") == ["plain"]


def _env(path: Path) -> dict[str, str]:
    env = {"DATABASE_URL": f"sqlite:///{path}", "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    return {**os.environ, **env}


def _migrate(path: Path, *target: str) -> None:
    proc = subprocess.run(
        [sys.executable, "manage.py", "migrate", *target],
        cwd=REPO,
        env=_env(path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _fts(path: Path, query: str) -> list[int]:
    con = sqlite3.connect(path)
    try:
        table = search_index.SQLITE_TABLE
        return [
            r for (r,) in con.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", [query])
        ]
    finally:
        con.close()


@sqlite_only
def test_migrating_a_file_the_sdk_wrote_indexes_it_and_reverses(tmp_path: Path):
    path = tmp_path / "agents.sqlite3"
    session = AdvancedSQLiteSession(session_id="s", db_path=path, create_tables=True)
    add = async_to_sync(session.add_items)
    try:
        add([{"role": "user", "content": "crème brûlée for the kākāpō"}])
        _migrate(path)  # backfill
        assert len(_fts(path, "kakapo")) == 1
        add([{"role": "user", "content": "and a takahē"}])  # the SDK, after the migration
        assert len(_fts(path, "takahe")) == 1
        _migrate(path, "conversations", "0004")  # reversed: no table, no trigger
        con = sqlite3.connect(path)
        names = [
            n
            for (n,) in con.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE ?",
                [search_index.SQLITE_TABLE + "%"],
            )
        ]
        con.close()
        assert names == []
        add([{"role": "user", "content": "a kea"}])  # the SDK still writes
        _migrate(path)
        assert [len(_fts(path, w)) for w in ("kakapo", "takahe", "kea")] == [1, 1, 1]
    finally:
        session.close()
