"""Interop with the SDK on one SQLite file, in both directions.

- A file made by ``python manage.py migrate`` opens in ``AdvancedSQLiteSession(create_tables=
  False)``, and each side reads exactly what the other wrote (items, branches, structure,
  usage), and what the SDK would have written itself.
- A file the SDK wrote (``create_tables=True``) is adopted by a plain ``migrate`` without a
  row, column or index of the SDK's tables changing, reads the same through ``DjangoSession``,
  and stays writable by both.

``DjangoSession`` uses Django's configured database, so the Django side runs in a child
process with ``DATABASE_URL=sqlite:///<file>`` (``interop_driver``); the SDK side runs here.
These tests never touch the pytest-django test database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from agents.extensions.memory import AdvancedSQLiteSession

from tests.support.interop_driver import run_script, without_timestamps

REPO = Path(__file__).resolve().parents[3]
SDK_TABLES = [
    "agent_sessions",
    "agent_messages",
    "message_structure",
    "turn_usage",
    "branch_reservations",
    "session_clear_generations",
]
CHILD_TIMEOUT = 180


# ---- helpers ------------------------------------------------------------------------------


def _child_env(db_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{db_path}"
    env["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the child must not need it
    return env


def manage_migrate(db_path: Path) -> subprocess.CompletedProcess[str]:
    """``python manage.py migrate`` (no flags) against ``db_path``."""
    proc = subprocess.run(
        [sys.executable, "manage.py", "migrate"],
        cwd=REPO,
        env=_child_env(db_path),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def run_django(db_path: Path, ops: list[list[Any]]) -> list[Any]:
    """Run ``ops`` through ``DjangoSession`` in a child process bound to ``db_path``."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.interop_driver"],
        cwd=REPO,
        env=_child_env(db_path),
        input=json.dumps({"backend": "django", "ops": ops}),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_sdk(db_path: Path, ops: list[list[Any]], *, create_tables: bool = False) -> list[Any]:
    """Run ``ops`` through ``AdvancedSQLiteSession`` in this process."""
    script = {"backend": "sdk", "db_path": str(db_path), "create_tables": create_tables, "ops": ops}
    return asyncio.run(run_script(script))


def dump_sdk_tables(db_path: Path) -> dict[str, Any]:
    """Every row (with rowid) and the full declared schema of the SDK's tables."""
    con = sqlite3.connect(db_path)
    try:
        dump: dict[str, Any] = {}
        for table in SDK_TABLES:
            indexes = con.execute(f"PRAGMA index_list({table})").fetchall()
            dump[table] = {
                "rows": con.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall(),
                "types": con.execute(
                    f"SELECT typeof(rowid), * FROM pragma_table_xinfo('{table}')"
                ).fetchall(),
                "table_xinfo": con.execute(f"PRAGMA table_xinfo({table})").fetchall(),
                "index_list": indexes,
                "index_xinfo": {
                    row[1]: con.execute(f"PRAGMA index_xinfo('{row[1]}')").fetchall()
                    for row in indexes
                },
                "foreign_keys": con.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
                "sql": con.execute(
                    "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? ORDER BY name",
                    (table,),
                ).fetchall(),
            }
        placeholders = ",".join("?" * len(SDK_TABLES))
        dump["sqlite_sequence"] = con.execute(
            f"SELECT name, seq FROM sqlite_sequence WHERE name IN ({placeholders}) ORDER BY name",
            SDK_TABLES,
        ).fetchall()
        return dump
    finally:
        con.close()


def duplicate_sequence_numbers(db_path: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db_path)
    try:
        return con.execute(
            "SELECT session_id, sequence_number, COUNT(*) FROM message_structure "
            "GROUP BY session_id, sequence_number HAVING COUNT(*) > 1"
        ).fetchall()
    finally:
        con.close()


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "id": f"msg_{zlib.crc32(text.encode())}",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(name: str, call_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "name": name, "call_id": call_id, "arguments": "{}", **extra}


def output(call_id: str, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def usage(n: int) -> dict[str, int]:
    return {
        "requests": n,
        "input_tokens": 100 * n,
        "output_tokens": 10 * n,
        "total_tokens": 110 * n,
        "cached_tokens": n,
        "reasoning_tokens": 2 * n,
    }


def conversation_ops(sid: str) -> list[list[Any]]:
    """Writes covering turns, tools, usage, named branches, switching and deletion."""
    return [
        [sid, "add_items", [[user("Hello"), assistant("Hi! How can I help?")]]],
        [sid, "store_run_usage", [], usage(1)],
        [
            sid,
            "add_items",
            [
                [
                    user("Weather in Paris?"),
                    call("get_weather", "c1"),
                    output("c1", "18C"),
                    assistant("18C in Paris, café weather ☕"),
                ]
            ],
        ],
        [sid, "store_run_usage", [], usage(2)],
        [
            sid,
            "add_items",
            [
                [
                    user([{"type": "input_text", "text": "And in Rome? " + "x" * 120}]),
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {
                        "type": "mcp_call",
                        "id": "mcp_1",
                        "server_label": "maps",
                        "name": "geocode",
                        "arguments": "{}",
                    },
                    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                    call("lookup", "c2", namespace="geo"),
                    output("c2", "ok"),
                    assistant("Rome is 24C."),
                ]
            ],
        ],
        [sid, "store_run_usage", [], usage(3)],
        [sid, "add_items", [[{"role": "developer", "type": "message", "content": "note"}]]],
        [sid, "create_branch_from_turn", [2, "alt"]],
        [
            sid,
            "add_items",
            [
                [
                    user("Alt: Berlin?"),
                    call("get_weather", "c3"),
                    output("c3", "9C"),
                    assistant("9C"),
                ]
            ],
        ],
        [sid, "store_run_usage", [], usage(4)],
        [sid, "create_branch_from_turn", [2, "alt"]],  # reserved: ValueError on both sides
        [sid, "switch_to_branch", ["main"]],
        [sid, "add_items", [[user("Back on main"), assistant("Welcome back")]]],
        [sid, "store_run_usage", [], usage(5)],
        [sid, "create_branch_from_turn", [3, "alt2"]],
        [sid, "add_items", [[user("Alt2 question"), assistant("Alt2 answer")]]],
        [sid, "create_branch_from_turn", [1, "doomed"]],  # ghost: copies nothing
        [sid, "add_items", [[user("doomed turn"), assistant("soon gone")]]],
        [sid, "switch_to_branch", ["alt2"]],
        [sid, "delete_branch", ["doomed"]],
        [sid, "pop_item"],
        [sid, "store_run_usage", [], usage(6)],
    ]


def preamble_ops(sid: str) -> list[list[Any]]:
    """Items before the first user message (turn 0), with usage stored on turn 0."""
    return [
        [sid, "add_items", [[{"role": "system", "content": "be brief"}, assistant("Ready.")]]],
        [sid, "store_run_usage", [], usage(7)],
        [sid, "add_items", [[user("Q1"), assistant("A1")]]],
        [sid, "add_items", [[user("Q2"), call("calc", "k1"), output("k1", "4")]]],
        [sid, "store_run_usage", [], usage(8)],
    ]


def snapshots(sids: list[str]) -> list[list[Any]]:
    """Fresh instances (on ``main``) reading everything."""
    ops: list[list[Any]] = []
    for sid in sids:
        ops += [[sid, "reopen"], [sid, "snapshot"]]
    return ops


def reads(results: list[Any]) -> list[Any]:
    return [r for r in results if isinstance(r, dict) and "per_branch" in r]


def _assert_meaningful(snapshot: dict[str, Any]) -> None:
    """Guard against vacuous equality (two empty reads are equal too)."""
    assert snapshot["branch_order_ok"]
    assert snapshot["per_branch"], snapshot
    assert any(b["items"] for b in snapshot["per_branch"].values())


# ---- a file made by `manage.py migrate` ----------------------------------------------------


@pytest.fixture
def migrated_db(tmp_path: Path) -> Path:
    db_path = tmp_path / "forkview.sqlite3"
    manage_migrate(db_path)
    return db_path


def test_migrated_file_opens_in_sdk_without_create_tables(migrated_db: Path) -> None:
    session = AdvancedSQLiteSession(session_id="s", db_path=migrated_db, create_tables=False)
    try:
        assert asyncio.run(session.get_items()) == []
        assert asyncio.run(session.list_branches()) == []
    finally:
        session.close()


def test_migrated_file_sdk_schema_matches_sdk_created_file(migrated_db: Path, tmp_path: Path):
    sdk_db = tmp_path / "sdk.sqlite3"
    AdvancedSQLiteSession(session_id="s", db_path=sdk_db, create_tables=True).close()

    def schema(path: Path) -> dict[str, Any]:
        return {
            table: {
                k: v
                for k, v in d.items()
                if k in {"table_xinfo", "index_list", "index_xinfo", "foreign_keys"}
            }
            for table, d in dump_sdk_tables(path).items()
            if table != "sqlite_sequence"
        }

    migrated = schema(migrated_db)
    extra = {row[1] for table in migrated.values() for row in table["index_list"]} - {
        row[1] for table in schema(sdk_db).values() for row in table["index_list"]
    }
    assert extra == FORKVIEW_INDEXES  # the only additions: Forkview's indexes
    keys = ("table_xinfo", "index_list", "index_xinfo", "foreign_keys")

    def sdk_part(dump: dict[str, Any]) -> dict[str, Any]:
        return {t: {k: d[k] for k in keys} for t, d in _without_forkview_indexes(dump).items()}

    assert sdk_part(migrated) == sdk_part(schema(sdk_db))


#: Indexes Forkview adds to the SDK's tables on SQLite: message_structure(message_id)
#: (migration 0007; PostgreSQL's DDL has it from the start): deleting a message must not scan
#: message_structure (docs/storage.md); and the session summaries' partial index on the
#: rows that name a tool (migration 0006, conversations/summaries.py).
FORKVIEW_INDEXES = {"idx_structure_message_id", "fv_structure_tool"}


def test_django_writes_sdk_reads(migrated_db: Path, tmp_path: Path) -> None:
    sids = ["conv-a", "conv-b"]
    writes = conversation_ops("conv-a") + preamble_ops("conv-b")
    django_results = run_django(migrated_db, writes + snapshots(sids))
    sdk_reads = run_sdk(migrated_db, snapshots(sids))

    # Same file, two readers: identical, timestamps included.
    assert reads(sdk_reads) == reads(django_results)
    for snap in reads(sdk_reads):
        _assert_meaningful(snap)
    assert duplicate_sequence_numbers(migrated_db) == []

    # And what Django wrote is what the SDK itself writes for the same calls.
    reference = run_sdk(
        tmp_path / "reference.sqlite3", writes + snapshots(sids), create_tables=True
    )
    assert without_timestamps(django_results) == without_timestamps(reference)


def test_sdk_writes_django_reads(migrated_db: Path) -> None:
    sids = ["conv-a", "conv-b"]
    writes = conversation_ops("conv-a") + preamble_ops("conv-b")
    sdk_results = run_sdk(migrated_db, writes + snapshots(sids))
    django_reads = run_django(migrated_db, snapshots(sids))

    assert reads(django_reads) == reads(sdk_results)
    for snap in reads(django_reads):
        _assert_meaningful(snap)


def test_each_side_continues_the_others_session(migrated_db: Path) -> None:
    sid = "shared"
    first, second, third = (
        conversation_ops(sid),
        preamble_ops(sid),
        [
            [sid, "add_items", [[user("last"), assistant("done")]]],
            [sid, "store_run_usage", [], usage(9)],
            [sid, "create_branch_from_turn", [2, "late"]],
        ],
    )
    run_sdk(migrated_db, first)
    run_django(migrated_db, [[sid, "switch_to_branch", ["alt"]], *second])
    run_sdk(migrated_db, [[sid, "switch_to_branch", ["alt2"]], *third])

    sdk_reads = run_sdk(migrated_db, snapshots([sid]))
    django_reads = run_django(migrated_db, snapshots([sid]))
    assert reads(django_reads) == reads(sdk_reads)
    (snap,) = reads(sdk_reads)
    assert set(snap["per_branch"]) == {"main", "alt", "alt2", "late"}
    assert user("Q2") in snap["per_branch"]["alt"]["items"]  # Django's writes, read by the SDK
    assert snap["per_branch"]["late"]["items"]
    assert duplicate_sequence_numbers(migrated_db) == []


# ---- a file the SDK wrote, adopted by `manage.py migrate` ----------------------------------


def sdk_history_ops() -> list[list[Any]]:
    """Several sessions: branches and usage, a cleared session, a deleted branch."""
    ops = conversation_ops("keep-1") + preamble_ops("keep-2")
    ops += preamble_ops("cleared") + [
        ["cleared", "create_branch_from_turn", [2, "gone-with-clear"]],
        ["cleared", "clear_session"],
    ]
    ops += conversation_ops("with-deleted") + [
        ["with-deleted", "switch_to_branch", ["main"]],
        ["with-deleted", "delete_branch", ["alt"]],
        ["with-deleted", "create_branch_from_turn", [2]],  # an auto id
    ]
    return ops


@pytest.fixture
def sdk_db(tmp_path: Path) -> Path:
    db_path = tmp_path / "agents.sqlite3"
    results = run_sdk(db_path, sdk_history_ops(), create_tables=True)
    assert not any(isinstance(r, dict) and r.get("error") == "RuntimeError" for r in results)
    return db_path


SDK_FILE_SESSIONS = ["keep-1", "keep-2", "cleared", "with-deleted"]


def test_migrate_adopts_sdk_file_without_changing_a_row(sdk_db: Path) -> None:
    before = dump_sdk_tables(sdk_db)
    assert before["message_structure"]["rows"] and before["turn_usage"]["rows"]

    proc = manage_migrate(sdk_db)

    assert "conversations.0001" in proc.stdout  # really applied now, not faked
    after = _without_forkview_indexes(dump_sdk_tables(sdk_db))
    for table in [*SDK_TABLES, "sqlite_sequence"]:
        assert after[table] == _without_forkview_indexes(before)[table], table


def _without_forkview_indexes(dump: dict[str, Any]) -> dict[str, Any]:
    """A dump without what Forkview adds to the SDK's tables: its indexes
    (``FORKVIEW_INDEXES``; index positions ignored) and triggers."""
    out: dict[str, Any] = {}
    for table, d in dump.items():
        if not isinstance(d, dict):
            out[table] = d
            continue
        d = dict(d)
        d["index_list"] = sorted(r[1:] for r in d["index_list"] if r[1] not in FORKVIEW_INDEXES)
        d["index_xinfo"] = {k: v for k, v in d["index_xinfo"].items() if k not in FORKVIEW_INDEXES}
        if "sql" in d:
            # Forkview's triggers (search index, session summaries) are its own, too.
            d["sql"] = [r for r in d["sql"] if r[1] not in FORKVIEW_INDEXES and r[0] != "trigger"]
        out[table] = d
    return out


def test_migrate_adopted_sdk_file_reads_identically(sdk_db: Path) -> None:
    sdk_before = run_sdk(sdk_db, snapshots(SDK_FILE_SESSIONS))
    manage_migrate(sdk_db)

    django_reads = run_django(sdk_db, snapshots(SDK_FILE_SESSIONS))
    sdk_after = run_sdk(sdk_db, snapshots(SDK_FILE_SESSIONS))

    assert reads(django_reads) == reads(sdk_before) == reads(sdk_after)
    by_session = dict(zip(SDK_FILE_SESSIONS, reads(django_reads), strict=True))
    _assert_meaningful(by_session["keep-1"])
    assert by_session["cleared"]["per_branch"] == {}
    assert "alt" not in by_session["with-deleted"]["per_branch"]


def test_migrate_adopted_sdk_file_stays_writable_by_both(sdk_db: Path) -> None:
    manage_migrate(sdk_db)
    django_writes = run_django(
        sdk_db,
        [
            ["keep-1", "switch_to_branch", ["alt"]],
            ["keep-1", "add_items", [[user("from django"), assistant("ok")]]],
            ["keep-1", "store_run_usage", [], usage(10)],
            ["keep-1", "create_branch_from_turn", [2, "django-branch"]],
            # Reserved by the SDK before the clear: still refused.
            ["cleared", "create_branch_from_turn", [1, "gone-with-clear"]],
            ["cleared", "add_items", [[user("after the clear"), assistant("fresh")]]],
            ["with-deleted", "create_branch_from_turn", [2, "alt"]],  # deleted, still reserved
        ],
    )
    assert django_writes[3] == "django-branch"
    assert django_writes[4]["error"] == "ValueError"
    assert django_writes[6]["error"] == "ValueError"

    sdk_writes = run_sdk(
        sdk_db,
        [
            ["keep-1", "switch_to_branch", ["django-branch"]],
            [
                "keep-1",
                "add_items",
                [[user("sdk after django"), call("f", "z1"), output("z1", "1")]],
            ],
            ["keep-1", "store_run_usage", [], usage(11)],
            ["keep-1", "create_branch_from_turn", [3, "django-branch"]],  # Django reserved it
            ["keep-1", "switch_to_branch", ["alt"]],
            ["keep-1", "add_items", [[user("sdk on alt")]]],
            ["cleared", "add_items", [[user("sdk after the clear")]]],
        ],
    )
    assert sdk_writes[3]["error"] == "ValueError"

    sdk_reads = run_sdk(sdk_db, snapshots(SDK_FILE_SESSIONS))
    django_reads = run_django(sdk_db, snapshots(SDK_FILE_SESSIONS))
    assert reads(django_reads) == reads(sdk_reads)
    keep = reads(sdk_reads)[0]["per_branch"]
    assert keep["django-branch"]["items"][-3:] == [
        user("sdk after django"),
        call("f", "z1"),
        output("z1", "1"),
    ]
    assert keep["alt"]["items"][-3:] == [user("from django"), assistant("ok"), user("sdk on alt")]
    assert duplicate_sequence_numbers(sdk_db) == []
