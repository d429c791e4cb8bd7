"""Exports are snapshots, and survive hostile stored rows (issue 12, holes 6 and 3).

Another PROCESS writes whole turns (items, then usage: ``tests/security/export_writer.py``)
while this one exports: every exported usage row and structure row must refer to exported
rows. A deterministic variant lets the writer commit a turn exactly between the export's
first query and the rest: the export must not show any of it. Then rows that another writer
stored (lone surrogates, NUL, control characters, bytes that are not UTF-8, unreadable dates)
must export without a 500: the JSON outputs losslessly (escapes), the Markdown visibly
replaced (U+FFFD).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.exchange import export_text, tree_export
from conversations.models import AgentMessage
from conversations.session import DjangoSession
from tests.security.export_writer import turn_items
from tests.support.databases import database_url
from tests.support.hostile import BAD_TEXT
from tests.support.sdk_harness import usage
from tests.support.trees import call, tree_session

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300


@contextmanager
def writer(mode: str, session_id: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A started ``export_writer`` process, past its start barrier; killed if still running."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    stderr = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.security.export_writer", mode, session_id, *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        yield proc
        stderr.seek(0)
        errors = stderr.read()
        assert proc.wait(timeout=TIMEOUT) == 0, errors
        assert "database is locked" not in errors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()


def start_session(session_id: str) -> None:
    session = DjangoSession(session_id=session_id)
    call(session, "add_items", turn_items(0))
    call(session, "store_usage", usage())


def tree_problems(tree: dict[str, Any]) -> list[str]:
    """Every row of the tree that refers to a row the tree lacks, or a torn turn."""
    refs = {m["ref"] for m in tree["messages"]}
    placed = Counter((row["branch_id"], row["user_turn_number"]) for row in tree["structure"])
    problems = [
        f"structure row {row['sequence_number']} -> missing message {row['message']}"
        for row in tree["structure"]
        if row["message"] not in refs
    ]
    problems += [
        f"usage of {u['branch_id']} turn {u['user_turn_number']} without structure rows"
        for u in tree["usage"]
        if (u["branch_id"], u["user_turn_number"]) not in placed
    ]
    problems += [f"turn {key} has {n} of 4 items" for key, n in placed.items() if n != 4]
    referenced = {row["message"] for row in tree["structure"]}
    problems += [f"message {ref} on no branch" for ref in refs - referenced]
    return problems


# ---- Exports taken while another process writes ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_tree_exports_taken_during_writes_are_consistent() -> None:
    start_session("busy")
    exports = 0
    problems: list[str] = []
    with writer("loop", "busy", "150") as proc:
        while proc.poll() is None:
            tree = json.loads(export_text(session_id="busy", fmt="json"))
            problems += tree_problems(tree)
            lines = export_text(session_id="busy", fmt="jsonl").splitlines()
            assert len(lines) % 4 == 0  # whole turns only
            export_text(session_id="busy", fmt="markdown")
            exports += 1
    assert exports >= 5, "the writer finished before the exports could overlap it"
    assert problems == []
    final = tree_export(session_id="busy")
    assert tree_problems(final) == [] and len(final["usage"]) >= 151


def _first_select_hook(proc: subprocess.Popen[str]) -> Any:
    """An execute wrapper that lets the writer commit one turn right after the export's first
    SELECT of the SDK's tables."""
    state = {"fired": False}

    def hook(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        first = sql.lstrip().upper().startswith("SELECT") and "agent_" in sql
        if not state["fired"] and first:  # the export's first query (not the login's)
            state["fired"] = True
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("turn\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"
        return result

    return hook, state


def _export_via(entry: str, fmt: str, client: Any) -> str:
    if entry == "view":
        url = reverse("session_export", args=["steady", fmt]) + "?branch=main"
        response = client.get(url)
        assert response.status_code == 200
        return str(response.content.decode("utf-8"))
    if entry == "command":
        out = io.StringIO()
        call_command("export_session", "steady", "--format", fmt, stdout=out)
        return out.getvalue()
    return export_text(session_id="steady", fmt=fmt)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("entry", ["view", "command", "function"])
def test_a_turn_committed_during_an_export_is_not_in_it(entry, admin_client) -> None:
    start_session("steady")
    with writer("step", "steady") as proc:
        for fmt in ("json", "jsonl", "markdown"):
            before = _export_via(entry, fmt, admin_client)
            hook, state = _first_select_hook(proc)
            with connection.execute_wrapper(hook):
                during = _export_via(entry, fmt, admin_client)
            assert state["fired"]
            assert during == before, f"{fmt}: the export saw a turn committed after it began"
            assert _export_via(entry, fmt, admin_client) != before  # the turn did land
        assert proc.stdin is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()


@pytest.mark.django_db(transaction=True)
def test_export_reads_in_one_read_transaction() -> None:
    tree_session()
    with CaptureQueriesContext(connection) as queries:
        export_text(session_id="s1", fmt="json")
    first = queries.captured_queries[0]["sql"]
    if connection.vendor == "sqlite":
        # A deferred read transaction in WAL mode: one snapshot, writers not blocked.
        assert first == "BEGIN DEFERRED"
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
        assert connection.transaction_mode == "IMMEDIATE"  # restored for writers
    else:  # Django logs the transaction's start as BEGIN; the first statement sets the level
        statements = [q["sql"] for q in queries.captured_queries]
        assert statements[:2] == [
            "BEGIN",
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        ]


# ---- Hostile stored rows ----------------------------------------------------------------------


def _raw_update(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def _first_message_id() -> int:
    return int(AgentMessage.objects.filter(session_id="s1").order_by("id").first().id)  # type: ignore[union-attr]


def _exports(client: Any) -> dict[str, str]:
    out = {}
    for fmt in ("json", "jsonl", "markdown"):
        response = client.get(reverse("session_export", args=["s1", fmt]) + "?branch=main")
        assert response.status_code == 200, fmt
        out[fmt] = response.content.decode("utf-8")  # valid UTF-8, always
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("text", BAD_TEXT, ids=repr)
def test_hostile_text_in_stored_json_exports(text, admin_client) -> None:
    tree_session()
    item = {"role": "user", "content": text, text: "as a key"}
    if connection.vendor == "postgresql" and re.search("[\x00\ud800-\udfff]", text):
        pytest.skip("PostgreSQL's jsonb refuses NUL and lone surrogates: no such row can exist")
    # As the SDK writes it: json.dumps with ASCII escapes (a valid JSON text on both databases).
    data = json.dumps(item)
    if connection.vendor == "postgresql":
        _raw_update(
            "UPDATE agent_messages SET message_data = %s::jsonb WHERE id = %s",
            [data, _first_message_id()],
        )
    else:
        _raw_update(
            "UPDATE agent_messages SET message_data = %s WHERE id = %s",
            [data, _first_message_id()],
        )
    out = _exports(admin_client)
    # JSON and JSONL: lossless (a JSON reader gets the stored value back), no raw controls.
    assert json.loads(out["json"])["messages"][0]["item"] == item
    assert json.loads(out["jsonl"].splitlines()[0]) == item
    for fmt in ("json", "jsonl"):
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", out[fmt])
    # Markdown: readable text, the bad characters visibly replaced.
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", out["markdown"])
    if re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]", text):
        assert "\ufffd" in out["markdown"]
    # The command prints the same bytes (stdout gets valid UTF-8 too).
    printed = io.StringIO()
    call_command("export_session", "s1", stdout=printed)
    assert printed.getvalue() == out["json"]
    printed.getvalue().encode("utf-8")


SQLITE_ONLY = pytest.mark.skipif(
    "connection.vendor != 'sqlite'",
    reason="PostgreSQL refuses bytes that are not UTF-8 and unreadable dates on write",
)


@SQLITE_ONLY
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        # message_data: a JSON text with bytes that are not UTF-8 inside a string
        "UPDATE agent_messages SET message_data = CAST(X'7B22726F6C65223A202275736572222C2022"
        "636F6E74656E74223A2022FF227D' AS TEXT) WHERE id = (SELECT min(id) FROM agent_messages)",
        "UPDATE message_structure SET branch_id = CAST(X'6DFF' AS TEXT)"
        " WHERE id = (SELECT max(id) FROM message_structure)",
        "UPDATE message_structure SET tool_name = CAST(X'6DFF' AS TEXT)",
        "UPDATE turn_usage SET input_tokens_details = CAST(X'7BFF' AS TEXT)",
        "UPDATE agent_messages SET created_at = CAST(X'32FF' AS TEXT)",
        "UPDATE agent_sessions SET created_at = '2024-13-45 10:00:00', updated_at = 'soon'",
        "UPDATE message_structure SET created_at = '2024-02-30 25:61:00'",
        "UPDATE turn_usage SET created_at = CAST(X'FF' AS TEXT)",
    ],
)
def test_rows_another_writer_stored_export_on_sqlite(sql, admin_client) -> None:
    tree_session()
    _raw_update(sql)
    out = _exports(admin_client)
    tree = json.loads(out["json"])
    assert len(tree["messages"]) == AgentMessage.objects.filter(session_id="s1").count()
    assert "Traceback" not in out["markdown"]
    if "X'7B22" in sql:  # bytes that are not UTF-8 read as U+FFFD (not representable)
        assert tree["messages"][0]["item"]["content"] == "\ufffd"
    if "created_at" in sql:  # an unreadable date exports as null
        assert None in [m["created_at"] for m in tree["messages"]] + [
            tree["session"]["created_at"],
            *(r["created_at"] for r in tree["structure"]),
            *(u["created_at"] for u in tree["usage"]),
        ]
