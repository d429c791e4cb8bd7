"""Exports and imports in memory that does not grow with the data (issue 14, item 7).

The exports read rows a few hundred at a time and give text in pieces (``export_chunks``);
the downloads spool big exports to a temporary file and stream it; ``import_agents_db`` reads
the file's sessions one at a time. ``bench/memory_bench.py`` measures the peaks.
"""

from __future__ import annotations

import io
import json
import sqlite3
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command
from django.db.backends.utils import CursorWrapper
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse

from conversations import views
from conversations.exchange import (
    SDKFile,
    export_chunks,
    export_text,
    snapshot,
    tree_chunks,
    tree_dumps,
    tree_export,
)
from conversations.session import DjangoSession
from tests.support.sdk_harness import assistant, function_call, function_output, usage, user
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db

FORMATS = ("json", "jsonl", "markdown")


def long_session(session_id: str = "long", turns: int = 60) -> None:
    """``turns`` turns with a tool call each and usage, a fork at the middle, odd text."""
    session = DjangoSession(session_id=session_id)
    for turn in range(1, turns + 1):
        call(
            session,
            "add_items",
            [
                user(f"Turn {turn}: \x7f\u0085 ok?\n\n"),
                function_call("lookup", f"c{turn}", json.dumps({"n": turn})),
                function_output(f"c{turn}", "```\nfenced\n```\n\n\n"),
                assistant(f"Answer {turn} \u2028 done.\n\n\n", f"msg_{turn}"),
            ],
        )
        if turn % 3:
            call(session, "store_usage", usage(1, 100 + turn, 7))
    call(session, "create_branch_from_turn", turns // 2, "alt")
    call(session, "add_items", [user("On the branch"), assistant("Yes.", "msg_alt")])


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of ~200 characters and fetches of 7 rows: many of each, even for small data."""
    monkeypatch.setattr(snapshot, "CHUNK_CHARS", 200)
    monkeypatch.setattr(snapshot, "ROWS_PER_FETCH", 7)
    from conversations.exchange import transcripts, tree

    monkeypatch.setattr(tree, "ROWS_PER_FETCH", 7)
    monkeypatch.setattr(transcripts, "ROWS_PER_FETCH", 7)


@pytest.fixture
def fetches(monkeypatch):
    """Every ``fetchmany`` through Django's cursors: the rows each one returned."""
    seen: list[int] = []

    def fetchmany(self: CursorWrapper, size: int | None = None) -> Any:
        rows = self.cursor.fetchmany(size) if size is not None else self.cursor.fetchmany()
        seen.append(len(rows))
        return rows

    monkeypatch.setattr(CursorWrapper, "fetchmany", fetchmany, raising=False)
    return seen


def test_streamed_tree_is_the_canonical_text():
    long_session()
    tree_session()  # an unmarked small one too
    for session_id in ("long", "s1"):
        whole = tree_dumps(tree_export(session_id=session_id))
        assert "".join(tree_chunks(session_id=session_id)) == whole


def test_streamed_tree_is_the_canonical_text_in_small_pieces(small_pieces):
    long_session()
    whole = tree_dumps(tree_export(session_id="long"))
    pieces = list(tree_chunks(session_id="long"))
    assert len(pieces) > 20
    assert "".join(pieces) == whole


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_are_the_same_text_in_any_pieces(fmt, monkeypatch):
    long_session()
    whole = {b: export_text(session_id="long", fmt=fmt, branch_id=b) for b in ("main", "alt")}
    monkeypatch.setattr(snapshot, "CHUNK_CHARS", 50)
    for branch, text in whole.items():
        pieces = list(export_chunks(session_id="long", fmt=fmt, branch_id=branch))
        assert len(pieces) > 10
        assert "".join(pieces) == text
    assert whole["main"].endswith("\n") and not whole["main"].endswith("\n\n")


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_read_rows_in_chunks_as_they_go(fmt, small_pieces, fetches):
    long_session(turns=40)  # 160 messages, 160+ structure rows on main
    chunks = export_chunks(session_id="long", fmt=fmt)
    next(chunks)
    read_before_first_piece = sum(fetches)
    rest = list(chunks)
    assert rest  # more pieces were still to come
    assert fetches and max(fetches) <= 7  # never more rows than a fetch's worth at once
    assert read_before_first_piece < sum(fetches) / 2  # not everything read up front


def test_markdown_usage_matches_its_turns_when_read_alongside():
    long_session(turns=12)
    text = export_text(session_id="long", fmt="markdown")
    for turn in range(1, 13):
        section = text.split(f"## Turn {turn}\n", 1)[1].split("## Turn", 1)[0]
        has_usage = f"{100 + turn} input + 7 output" in section
        assert has_usage == bool(turn % 3), turn


def test_markdown_usage_for_turns_out_of_order():
    """Rows another writer numbered backwards still get their usage (looked up on their own)."""
    session = DjangoSession(session_id="odd")
    for turn in (1, 2, 3):
        call(session, "add_items", [user(f"t{turn}"), assistant(f"a{turn}", f"m{turn}")])
        call(session, "store_usage", usage(1, 10 * turn, 1))
    from conversations.models import MessageStructure

    # Swap turns 1 and 3 on their rows (plain SQL writers can do anything).
    MessageStructure.objects.filter(session_id="odd", user_turn_number=1).update(
        user_turn_number=99
    )
    MessageStructure.objects.filter(session_id="odd", user_turn_number=3).update(user_turn_number=1)
    MessageStructure.objects.filter(session_id="odd", user_turn_number=99).update(
        user_turn_number=3
    )
    text = export_text(session_id="odd", fmt="markdown")
    assert text.index("## Turn 3") < text.index("## Turn 2") < text.index("## Turn 1")
    for turn in (1, 2, 3):
        section = text.split(f"## Turn {turn}\n", 1)[1].split("## Turn", 1)[0]
        assert f"{10 * turn} input" in section


# ---- downloads -------------------------------------------------------------------------------


def test_small_download_is_answered_from_memory(admin_client):
    tree_session()
    response = admin_client.get(reverse("session_export", args=["s1", "json"]))
    assert not response.streaming
    assert response.content.decode() == export_text(session_id="s1", fmt="json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_big_download_streams_from_a_file_in_blocks(fmt, admin_client, monkeypatch):
    long_session()
    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", 2000)
    monkeypatch.setattr(views, "BLOCK_BYTES", 1000)
    response = admin_client.get(reverse("session_export", args=["long", fmt]) + "?branch=alt")
    assert isinstance(response, StreamingHttpResponse)
    blocks = list(response.streaming_content)
    assert len(blocks) > 3 and max(len(b) for b in blocks) <= 1000
    body = b"".join(blocks)
    assert int(response["Content-Length"]) == len(body)
    assert body.decode() == export_text(session_id="long", fmt=fmt, branch_id="alt")
    assert "attachment" in response["Content-Disposition"]


@pytest.mark.django_db(transaction=True)
def test_big_download_under_asgi_streams_asynchronously(admin_user, monkeypatch):
    long_session()
    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", 2000)
    monkeypatch.setattr(views, "BLOCK_BYTES", 1000)
    client = AsyncClient()
    client.force_login(admin_user)

    async def download() -> tuple[Any, list[bytes]]:
        response = await client.get(reverse("session_export", args=["long", "markdown"]))
        # An async iterator: Django would read a sync one whole into memory under ASGI.
        blocks = [block async for block in response.streaming_content]
        return response, blocks

    response, blocks = async_to_sync(download)()
    assert response.status_code == 200
    assert len(blocks) > 3
    assert b"".join(blocks).decode() == export_text(session_id="long", fmt="markdown")


def test_spool_keeps_small_text_in_memory_and_big_text_in_a_file(monkeypatch):
    monkeypatch.setattr(views, "SPOOL_MAX_BYTES", 10)
    body, size = views.spool(iter(["abc", "dé"]))
    assert body == "abcdé".encode() and size == 6
    body, size = views.spool(iter(["abcdef", "ghijkl", "é"]))
    assert not isinstance(body, bytes)
    with body:
        assert body.read() == "abcdefghijklé".encode()
    assert size == 14


# ---- the commands ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_session_writes_what_export_text_gives(fmt, tmp_path, small_pieces):
    long_session()
    target = tmp_path / f"out.{fmt}"
    call_command("export_session", "long", "--format", fmt, "-o", str(target))
    assert target.read_text(encoding="utf-8") == export_text(session_id="long", fmt=fmt)
    out = io.StringIO()
    call_command("export_session", "long", "--format", fmt, stdout=out)
    assert out.getvalue() == export_text(session_id="long", fmt=fmt)


def test_export_session_of_a_missing_session_writes_no_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_session", "missing", "-o", str(target))
    assert not target.exists()


def test_import_agents_db_reads_the_file_one_session_at_a_time(tmp_path, monkeypatch):
    path = tmp_path / "sdk.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE agent_sessions "
            "(session_id TEXT PRIMARY KEY, created_at TEXT, updated_at TEXT)"
        )
        conn.execute(
            "CREATE TABLE agent_messages (id INTEGER PRIMARY KEY, session_id TEXT, "
            "message_data TEXT, created_at TEXT)"
        )
        for i in range(2500):
            sid = f"s{i:05d}"
            conn.execute("INSERT INTO agent_sessions VALUES (?, '2025-01-01', '2025-01-01')", [sid])
            conn.execute(
                "INSERT INTO agent_messages (session_id, message_data, created_at) "
                "VALUES (?, ?, '2025-01-01')",
                [sid, json.dumps({"role": "user", "content": "hi"})],
            )

    def whole_list(self: SDKFile) -> list[str]:
        raise AssertionError("every session id read into one list")

    monkeypatch.setattr(SDKFile, "session_ids", whole_list)
    out = io.StringIO()
    call_command("import_agents_db", str(path), stdout=out)
    assert "Imported 2500 session(s)" in out.getvalue()


def test_import_agents_db_caps_sqlite_page_cache_during_its_transaction(tmp_path, monkeypatch):
    from django.db import connection

    from conversations.management.commands import import_agents_db

    if connection.vendor != "sqlite":
        pytest.skip("the import caps SQLite's page cache; PostgreSQL has no such cache to cap")
    path = tmp_path / "sdk.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE agent_sessions "
            "(session_id TEXT PRIMARY KEY, created_at TEXT, updated_at TEXT)"
        )
        conn.execute(
            "CREATE TABLE agent_messages (id INTEGER PRIMARY KEY, session_id TEXT, "
            "message_data TEXT, created_at TEXT)"
        )
        conn.execute("INSERT INTO agent_sessions VALUES ('one', '2025-01-01', '2025-01-01')")
    seen = []

    def spy(**kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            seen.append(cursor.fetchone()[0])
        return original(**kwargs)

    original = import_agents_db.tree_import
    monkeypatch.setattr(import_agents_db, "tree_import", spy)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        (before,) = cursor.fetchone()
    call_command("import_agents_db", str(path), stdout=io.StringIO())
    # The one transaction's changed pages spill to the WAL past 8 MB, not 64 MB.
    assert seen == [-import_agents_db.IMPORT_CACHE_KIB]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA cache_size")
        assert cursor.fetchone()[0] == before
