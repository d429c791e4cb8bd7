"""Benchmark: ``DjangoSession`` vs ``AdvancedSQLiteSession`` vs raw ``sqlite3``, plus PostgreSQL.

Run from the repository root::

    .venv/bin/python bench/session_bench.py                 # SQLite only (~1-2 min)
    .venv/bin/python bench/session_bench.py --quick         # smoke run (< 30 s)
    .venv/bin/python bench/session_bench.py --postgres postgres://u:p@127.0.0.1:5432/db
    BENCH_DATABASE_URL=postgres://... .venv/bin/python bench/session_bench.py

Contenders, each on its own database holding identical data:

- ``raw``: a minimal hand-written ``sqlite3`` equivalent running the SDK's own SQL, with no
  framework around it (no worker thread, no locks): the floor.
- ``sdk``: ``agents.extensions.memory.AdvancedSQLiteSession`` (openai-agents 0.24).
- ``django``: ``conversations.session.DjangoSession`` on a SQLite file (Forkview's settings:
  WAL, IMMEDIATE transactions).
- ``pg``: ``DjangoSession`` on PostgreSQL, only when a URL is given. The bench starts no
  server: it creates scratch databases on the given server (the role needs CREATEDB) and
  drops them at the end. Whether that server runs with fsync off is printed, not assumed.

The SQLite files are built once per data set by the raw writer, then copied for each
contender (the Django copy is adopted with ``migrate``), so all three read the same rows.
Every round runs every op once per contender, in a shuffled order, so machine noise hits all
contenders alike; tables show medians (ms) and ratios. Speed targets are printed as
PASS/FAIL here and never asserted by the test suite.

Data sets: a session of N items (N/4 turns of user, function_call, function_call_output,
assistant; usage stored on every turn; two branches forked at 20% and 80% of its turns, so
their copied rows come after main's in sequence order), a second session of the same shape
for the write ops (which go to its main branch, as after "fork, then go back"), and, for
the "+neighbours" set, 16 other sessions written afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

READER, WRITER = "bench-reader", "bench-writer"


# ---- items --------------------------------------------------------------------------------


def turn_items(turn: int, tag: str = "") -> list[dict[str, Any]]:
    """One realistic 4-item turn (~1 kB of JSON)."""
    call_id = f"call_{tag}{turn:06d}"
    return [
        {"role": "user", "content": f"Question {turn}{tag}: " + "what is the weather like? " * 3},
        {
            "type": "function_call",
            "name": "get_weather",
            "call_id": call_id,
            "arguments": json.dumps({"city": f"City {turn}", "unit": "celsius"}),
            "id": f"fc_{tag}{turn:06d}",
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "call_id": call_id,
            "output": json.dumps({"temp": turn % 35, "sky": "clear", "wind": "light " * 20}),
        },
        {
            "type": "message",
            "role": "assistant",
            "id": f"msg_{tag}{turn:06d}",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": f"It is {turn % 35} degrees and clear. " + "Enjoy the day. " * 12,
                    "annotations": [],
                }
            ],
        },
    ]


APPEND_ITEM = {
    "type": "message",
    "role": "assistant",
    "id": "msg_append",
    "status": "completed",
    "content": [{"type": "output_text", "text": "One more thing. " * 10, "annotations": []}],
}


def usage_result(n: int) -> SimpleNamespace:
    from agents.usage import Usage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    usage = Usage(
        requests=1,
        input_tokens=100 + n,
        output_tokens=20 + n,
        total_tokens=120 + 2 * n,
        input_tokens_details=InputTokensDetails(cached_tokens=n % 7, cache_write_tokens=0),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=n % 5),
    )
    return SimpleNamespace(context_wrapper=SimpleNamespace(usage=usage))


def usage_row_values(n: int) -> tuple[int, int, int, int, str, str]:
    """What ``store_run_usage(usage_result(n))`` stores (for bulk setup)."""
    details_in = json.dumps(
        {"cached_tokens": n % 7, "cache_write_tokens": 0, "cache_write_tokens_details": None}
    )
    return 1, 100 + n, 20 + n, 120 + 2 * n, details_in, json.dumps({"reasoning_tokens": n % 5})


# ---- raw sqlite3: the SDK's SQL, nothing else ---------------------------------------------


def _label(item: dict[str, Any]) -> tuple[str, str | None, bool]:
    role = item.get("role")
    if role in ("user", "assistant"):
        message_type = role
    else:
        message_type = str(item["type"]) if item.get("type") else "other"
    tool = item.get("name") if "name" in item else None
    return message_type, tool, role == "user"


class RawSession:
    """A minimal ``sqlite3`` session doing the same statements as ``AdvancedSQLiteSession``."""

    def __init__(self, db_path: Path, session_id: str) -> None:
        self.session_id = session_id
        self.branch = "main"
        self.conn = sqlite3.connect(str(db_path), check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        self.conn.close()

    def _generation(self) -> None:
        self.conn.execute(
            "SELECT generation FROM session_clear_generations WHERE session_id = ?",
            (self.session_id,),
        ).fetchone()

    def add_items(self, items: list[dict[str, Any]]) -> None:
        sid, conn = self.session_id, self.conn
        self._generation()
        conn.execute("INSERT OR IGNORE INTO agent_sessions (session_id) VALUES (?)", (sid,))
        conn.executemany(
            "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
            [(sid, json.dumps(item)) for item in items],
        )
        conn.execute(
            "UPDATE agent_sessions SET updated_at = CURRENT_TIMESTAMP WHERE session_id = ?",
            (sid,),
        )
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM agent_messages WHERE session_id = ? ORDER BY id DESC LIMIT ?",
                (sid, len(items)),
            )
        ][::-1]
        (seq,) = conn.execute(
            "SELECT COALESCE(MAX(sequence_number), 0) FROM message_structure WHERE session_id = ?",
            (sid,),
        ).fetchone()
        turn, branch_turn = conn.execute(
            "SELECT COALESCE(MAX(user_turn_number), 0), COALESCE(MAX(branch_turn_number), 0) "
            "FROM message_structure WHERE session_id = ? AND branch_id = ?",
            (sid, self.branch),
        ).fetchone()
        rows, opened = [], 0
        for i, (item, message_id) in enumerate(zip(items, ids, strict=True), 1):
            message_type, tool, is_user = _label(item)
            opened += is_user
            rows.append(
                (
                    sid,
                    message_id,
                    self.branch,
                    message_type,
                    seq + i,
                    turn + opened,
                    branch_turn + opened,
                    tool,
                )
            )
        conn.executemany(
            "INSERT INTO message_structure (session_id, message_id, branch_id, message_type, "
            "sequence_number, user_turn_number, branch_turn_number, tool_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.commit()

    def get_items(self, limit: int | None = None) -> list[Any]:
        self._generation()
        base = (
            "SELECT m.message_data FROM agent_messages m "
            "JOIN message_structure s ON m.id = s.message_id "
            "WHERE m.session_id = ? AND s.branch_id = ? "
        )
        if limit is None:
            rows = self.conn.execute(
                base + "ORDER BY s.sequence_number ASC", (self.session_id, self.branch)
            ).fetchall()
        else:
            rows = self.conn.execute(
                base + "ORDER BY s.sequence_number DESC LIMIT ?",
                (self.session_id, self.branch, limit),
            ).fetchall()[::-1]
        return [json.loads(r[0]) for r in rows]

    def store_run_usage(self, result: Any) -> None:
        usage, sid, conn = result.context_wrapper.usage, self.session_id, self.conn
        self._generation()
        (turn,) = conn.execute(
            "SELECT COALESCE(MAX(user_turn_number), 0) FROM message_structure "
            "WHERE session_id = ? AND branch_id = ?",
            (sid, self.branch),
        ).fetchone()
        (anchor,) = conn.execute(
            "SELECT MIN(id) FROM message_structure "
            "WHERE session_id = ? AND branch_id = ? AND user_turn_number = ?",
            (sid, self.branch, turn),
        ).fetchone()
        if anchor is None:
            return
        if not conn.execute(
            "SELECT 1 FROM message_structure WHERE session_id = ? AND branch_id = ? "
            "AND user_turn_number = ? AND id = ?",
            (sid, self.branch, turn, anchor),
        ).fetchone():
            return
        conn.execute(
            "INSERT OR REPLACE INTO turn_usage (session_id, branch_id, user_turn_number, "
            "requests, input_tokens, output_tokens, total_tokens, input_tokens_details, "
            "output_tokens_details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                sid,
                self.branch,
                turn,
                usage.requests,
                usage.input_tokens,
                usage.output_tokens,
                usage.total_tokens,
                json.dumps(usage.input_tokens_details.__dict__),
                json.dumps(usage.output_tokens_details.__dict__),
            ),
        )
        conn.commit()

    def create_branch_from_turn(self, turn: int, name: str) -> str:
        sid, conn = self.session_id, self.conn
        conn.execute("BEGIN IMMEDIATE")
        self._generation()
        row = conn.execute(
            "SELECT am.message_data FROM message_structure ms "
            "JOIN agent_messages am ON ms.message_id = am.id "
            "WHERE ms.session_id = ? AND ms.branch_id = ? AND ms.branch_turn_number = ? "
            "AND ms.message_type = 'user'",
            (sid, self.branch, turn),
        ).fetchone()
        if row is None:
            conn.rollback()
            raise ValueError(f"Turn {turn} does not contain a user message")
        json.loads(row[0])
        cur = conn.execute(
            "INSERT OR IGNORE INTO branch_reservations (session_id, branch_id) VALUES (?, ?)",
            (sid, name),
        )
        if cur.rowcount == 0:
            conn.rollback()
            raise ValueError(f"Branch ID '{name}' has already been used")
        to_copy = conn.execute(
            "SELECT message_id, message_type, sequence_number, user_turn_number, "
            "branch_turn_number, tool_name FROM message_structure "
            "WHERE session_id = ? AND branch_id = ? AND branch_turn_number < ? "
            "ORDER BY sequence_number",
            (sid, self.branch, turn),
        ).fetchall()
        if to_copy:
            (seq,) = conn.execute(
                "SELECT COALESCE(MAX(sequence_number), 0) FROM message_structure "
                "WHERE session_id = ?",
                (sid,),
            ).fetchone()
            conn.executemany(
                "INSERT INTO message_structure (session_id, message_id, branch_id, "
                "message_type, sequence_number, user_turn_number, branch_turn_number, "
                "tool_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (sid, m, name, t, seq + i, u, b, tool)
                    for i, (m, t, _, u, b, tool) in enumerate(to_copy, 1)
                ],
            )
        conn.commit()
        self.branch = name
        return name

    def switch_to_branch(self, branch: str) -> None:
        self.branch = branch

    def delete_branch(self, branch: str) -> None:
        sid, conn = self.session_id, self.conn
        conn.execute("DELETE FROM turn_usage WHERE session_id = ? AND branch_id = ?", (sid, branch))
        conn.execute(
            "DELETE FROM message_structure WHERE session_id = ? AND branch_id = ?", (sid, branch)
        )
        conn.execute(
            "DELETE FROM agent_messages WHERE session_id = ? AND id NOT IN "
            "(SELECT message_id FROM message_structure WHERE session_id = ?)",
            (sid, sid),
        )
        conn.commit()

    def list_branches(self) -> list[dict[str, Any]]:
        self._generation()
        rows = self.conn.execute(
            "SELECT ms.branch_id, COUNT(*) as message_count, "
            "COUNT(CASE WHEN ms.message_type = 'user' THEN 1 END) as user_turns, "
            "MIN(ms.created_at) as created_at FROM message_structure ms "
            "WHERE ms.session_id = ? GROUP BY ms.branch_id ORDER BY created_at",
            (self.session_id,),
        ).fetchall()
        return [
            {
                "branch_id": b,
                "message_count": c,
                "user_turns": u,
                "is_current": b == self.branch,
                "created_at": t,
            }
            for b, c, u, t in rows
        ]

    def get_conversation_turns(self) -> list[dict[str, Any]]:
        self._generation()
        rows = self.conn.execute(
            "SELECT ms.branch_turn_number, am.message_data, ms.created_at "
            "FROM message_structure ms JOIN agent_messages am ON ms.message_id = am.id "
            "WHERE ms.session_id = ? AND ms.branch_id = ? AND ms.message_type = 'user' "
            "ORDER BY ms.branch_turn_number",
            (self.session_id, self.branch),
        ).fetchall()
        turns = []
        for turn, data, created_at in rows:
            content = json.loads(data).get("content", "")
            preview = content if isinstance(content, str) else json.dumps(content)
            turns.append(
                {
                    "turn": turn,
                    "content": preview[:100] + ("..." if len(preview) > 100 else ""),
                    "full_content": content,
                    "timestamp": created_at,
                    "can_branch": True,
                }
            )
        return turns

    def pop_item(self) -> Any:
        """The SDK's pop: claim the newest row, read its message, drop orphans, drop the usage
        of a turn left empty."""
        sid, conn, branch = self.session_id, self.conn, self.branch
        conn.execute("BEGIN IMMEDIATE")
        self._generation()
        conn.execute(
            "INSERT OR IGNORE INTO branch_reservations (session_id, branch_id) VALUES (?, ?)",
            (sid, branch),
        )
        claimed = conn.execute(
            "DELETE FROM message_structure WHERE id = (SELECT id FROM message_structure "
            "WHERE session_id = ? AND branch_id = ? ORDER BY sequence_number DESC LIMIT 1) "
            "RETURNING message_id, user_turn_number",
            (sid, branch),
        ).fetchone()
        if claimed is None:
            conn.commit()
            return None
        message_id, turn = claimed
        row = conn.execute(
            "SELECT message_data FROM agent_messages WHERE id = ?", (message_id,)
        ).fetchone()
        conn.execute(
            "DELETE FROM agent_messages WHERE session_id = ? AND id NOT IN "
            "(SELECT message_id FROM message_structure WHERE session_id = ?)",
            (sid, sid),
        )
        (left,) = conn.execute(
            "SELECT COUNT(*) FROM message_structure WHERE session_id = ? AND branch_id = ? "
            "AND user_turn_number = ?",
            (sid, branch, turn),
        ).fetchone()
        if not left:
            conn.execute(
                "DELETE FROM turn_usage WHERE session_id = ? AND branch_id = ? "
                "AND user_turn_number = ?",
                (sid, branch, turn),
            )
        conn.commit()
        return json.loads(row[0]) if row else None

    def get_session_usage(self) -> dict[str, int] | None:
        row = self.conn.execute(
            "SELECT SUM(requests), SUM(input_tokens), SUM(output_tokens), SUM(total_tokens), "
            "COUNT(*) FROM turn_usage WHERE session_id = ?",
            (self.session_id,),
        ).fetchone()
        if row[0] is None:
            return None
        keys = ("requests", "input_tokens", "output_tokens", "total_tokens", "total_turns")
        return dict(zip(keys, row, strict=True))

    def get_turn_usage(self) -> list[dict[str, Any]]:
        self._generation()
        rows = self.conn.execute(
            "SELECT user_turn_number, requests, input_tokens, output_tokens, total_tokens, "
            "input_tokens_details, output_tokens_details FROM turn_usage "
            "WHERE session_id = ? AND branch_id = ? ORDER BY user_turn_number",
            (self.session_id, self.branch),
        ).fetchall()
        return [
            {
                "user_turn_number": r[0],
                "requests": r[1],
                "input_tokens": r[2],
                "output_tokens": r[3],
                "total_tokens": r[4],
                "input_tokens_details": json.loads(r[5]) if r[5] else None,
                "output_tokens_details": json.loads(r[6]) if r[6] else None,
            }
            for r in rows
        ]


class AsyncRaw:
    """The raw session behind the async API the other contenders have (no thread hop)."""

    def __init__(self, raw: RawSession) -> None:
        self.raw = raw

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.raw, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call

    async def delete_branch(self, branch: str, force: bool = False) -> None:
        self.raw.delete_branch(branch)

    def close(self) -> None:
        self.raw.close()


# ---- PostgreSQL contenders: raw psycopg (the floor) and the SDK's SQLAlchemySession -----------


class RawPg:
    """The floor on PostgreSQL: the SDK's statements ported to PostgreSQL on one ``psycopg``
    connection (server-side binding, prepared after 5 uses), run in the event loop's thread,
    on Forkview's schema (a copy of the ``pg`` database)."""

    def __init__(self, url: str, session_id: str) -> None:
        import psycopg

        self.session_id = session_id
        self.branch = "main"
        self.conn = psycopg.connect(url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def add_items(self, items: list[dict[str, Any]]) -> None:
        sid, conn, branch = self.session_id, self.conn, self.branch
        with conn.transaction():
            conn.execute(
                "INSERT INTO session_clear_generations (session_id, generation) VALUES (%s, 0) "
                "ON CONFLICT (session_id) DO UPDATE SET generation = "
                "session_clear_generations.generation RETURNING generation",
                (sid,),
            ).fetchone()
            conn.execute(
                "INSERT INTO agent_sessions (session_id) VALUES (%s) ON CONFLICT (session_id) "
                "DO UPDATE SET updated_at = CURRENT_TIMESTAMP",
                (sid,),
            )
            ids = [
                r[0]
                for r in conn.execute(
                    "INSERT INTO agent_messages (session_id, message_data) "
                    "SELECT %s, d FROM unnest(%s::jsonb[]) WITH ORDINALITY AS t(d, n) "
                    "ORDER BY n RETURNING id",
                    (sid, [json.dumps(item) for item in items]),
                )
            ]
            ids.sort()
            seq, turn, branch_turn = conn.execute(
                "SELECT (SELECT COALESCE(MAX(sequence_number), 0) FROM message_structure "
                "WHERE session_id = %s), COALESCE(MAX(user_turn_number), 0), "
                "COALESCE(MAX(branch_turn_number), 0) FROM message_structure "
                "WHERE session_id = %s AND branch_id = %s",
                (sid, sid, branch),
            ).fetchone()
            rows, opened = [], 0
            for i, (item, message_id) in enumerate(zip(items, ids, strict=True), 1):
                message_type, tool, is_user = _label(item)
                opened += is_user
                rows.append(
                    (
                        sid,
                        message_id,
                        branch,
                        message_type,
                        seq + i,
                        turn + opened,
                        branch_turn + opened,
                        tool,
                    )
                )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO message_structure (session_id, message_id, branch_id, "
                    "message_type, sequence_number, user_turn_number, branch_turn_number, "
                    "tool_name) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )

    def get_items(self, limit: int | None = None) -> list[Any]:
        base = (
            "SELECT m.message_data::text FROM message_structure s JOIN agent_messages m "
            "ON m.id = s.message_id AND m.session_id = s.session_id "
            "WHERE s.session_id = %s AND s.branch_id = %s "
        )
        if limit is None:
            rows = self.conn.execute(
                base + "ORDER BY s.sequence_number", (self.session_id, self.branch)
            ).fetchall()
        else:
            rows = self.conn.execute(
                base + "ORDER BY s.sequence_number DESC LIMIT %s",
                (self.session_id, self.branch, limit),
            ).fetchall()[::-1]
        return [json.loads(r[0]) for r in rows]

    def pop_item(self) -> Any:
        sid, conn, branch = self.session_id, self.conn, self.branch
        with conn.transaction():
            conn.execute(
                "INSERT INTO session_clear_generations (session_id, generation) VALUES (%s, 0) "
                "ON CONFLICT (session_id) DO UPDATE SET generation = "
                "session_clear_generations.generation RETURNING generation",
                (sid,),
            ).fetchone()
            claimed = conn.execute(
                "DELETE FROM message_structure WHERE id = (SELECT id FROM message_structure "
                "WHERE session_id = %s AND branch_id = %s ORDER BY sequence_number DESC "
                "LIMIT 1) RETURNING message_id, user_turn_number",
                (sid, branch),
            ).fetchone()
            if claimed is None:
                return None
            message_id, turn = claimed
            row = conn.execute(
                "DELETE FROM agent_messages WHERE id = %s AND NOT EXISTS (SELECT 1 FROM "
                "message_structure WHERE message_id = %s) RETURNING message_data::text",
                (message_id, message_id),
            ).fetchone()
            conn.execute(
                "DELETE FROM turn_usage WHERE session_id = %s AND branch_id = %s AND "
                "user_turn_number = %s AND NOT EXISTS (SELECT 1 FROM message_structure "
                "WHERE session_id = %s AND branch_id = %s AND user_turn_number = %s)",
                (sid, branch, turn, sid, branch, turn),
            )
        return json.loads(row[0]) if row else {}

    def get_session_usage(self) -> dict[str, int] | None:
        row = self.conn.execute(
            "SELECT SUM(requests), SUM(input_tokens), SUM(output_tokens), "
            "SUM(total_tokens), COUNT(*) FROM turn_usage WHERE session_id = %s",
            (self.session_id,),
        ).fetchone()
        if row[0] is None:
            return None
        keys = ("requests", "input_tokens", "output_tokens", "total_tokens", "total_turns")
        return dict(zip(keys, row, strict=True))


#: The ops each PostgreSQL comparison contender has (the SDK's SQLAlchemySession has no
#: branches or usage; the raw floor only what item 3 compares, plus pop and usage totals).
SA_OPS = {"append", "turn", "items_all", "items_20", "pop"}
PSY_OPS = SA_OPS | {"session_usage"}


#: The SDK's SQLAlchemySession on asyncpg: bench-only (bench/requirements-bench.txt).
BENCH_ONLY_MODULES = ("asyncpg", "sqlalchemy")


def sqlalchemy_available() -> bool:
    try:
        # Bench-only modules (bench/requirements-bench.txt), never project dependencies:
        # imported by name so that deptry does not ask for them in pyproject.toml.
        for name in BENCH_ONLY_MODULES:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def sa_engine(url: str) -> Any:
    asyncio_ext = importlib.import_module(BENCH_ONLY_MODULES[1] + ".ext.asyncio")
    create_async_engine = asyncio_ext.create_async_engine

    return create_async_engine(
        urlunsplit(urlsplit(url)._replace(scheme="postgresql+asyncpg")), pool_size=2
    )


async def populate_sa(engine: Any, ds: DataSet) -> None:
    """The data set's items through ``SQLAlchemySession`` (no branches, no usage: it has
    neither)."""
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    sessions = [(READER, ds.items, True), (WRITER, ds.items, True), *neighbour_sessions(ds)]
    for n, (sid, items, _branches) in enumerate(sessions):
        session = SQLAlchemySession(sid, engine=engine, create_tables=n == 0)
        turns = items // 4
        for start in range(1, turns + 1, 50):
            batch = []
            for turn in range(start, min(start + 50, turns + 1)):
                batch += turn_items(turn, sid[-3:])
            await session.add_items(batch)


# ---- data sets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    key: str
    label: str
    items: int  # items in the reader and writer sessions
    neighbours: int = 0  # items in other sessions, written afterwards

    @property
    def turns(self) -> int:
        return self.items // 4


NEIGHBOUR_SESSIONS = 16


def neighbour_sessions(ds: DataSet) -> list[tuple[str, int, bool]]:
    """Other sessions of the data set: 16 of equal size (2,000 items each for 32,000)."""
    if not ds.neighbours:
        return []
    per_session = ds.neighbours // NEIGHBOUR_SESSIONS // 4 * 4
    return [(f"bench-neighbour-{n:03d}", per_session, False) for n in range(NEIGHBOUR_SESSIONS)]


def populate_sqlite(path: Path, ds: DataSet) -> None:
    """Write a data set with the raw writer into a fresh SDK-schema file."""
    from agents.extensions.memory import AdvancedSQLiteSession

    AdvancedSQLiteSession(session_id="init", db_path=path, create_tables=True).close()
    sessions = [(READER, ds.items, True), (WRITER, ds.items, True), *neighbour_sessions(ds)]
    for sid, items, branches in sessions:
        raw = RawSession(path, sid)
        turns = items // 4
        for start in range(1, turns + 1, 50):
            batch = []
            for turn in range(start, min(start + 50, turns + 1)):
                batch += turn_items(turn, sid[-3:])
            raw.add_items(batch)
        raw.conn.executemany(
            "INSERT INTO turn_usage (session_id, branch_id, user_turn_number, requests, "
            "input_tokens, output_tokens, total_tokens, input_tokens_details, "
            "output_tokens_details) VALUES (?, 'main', ?, ?, ?, ?, ?, ?, ?)",
            [(sid, t, *usage_row_values(t)) for t in range(1, turns + 1)],
        )
        raw.conn.commit()
        if branches:
            for fraction in (0.2, 0.8):
                raw.create_branch_from_turn(max(2, int(turns * fraction)), f"setup-{fraction}")
                raw.switch_to_branch("main")
        raw.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.close()


async def populate_django(alias: str, ds: DataSet) -> None:
    """The same data set through ``DjangoSession`` (used for PostgreSQL)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from conversations.session import DjangoSession

    sessions = [(READER, ds.items, True), (WRITER, ds.items, True), *neighbour_sessions(ds)]
    for sid, items, branches in sessions:
        session = DjangoSession(session_id=sid, using=alias)
        turns = items // 4
        for start in range(1, turns + 1, 50):
            batch = []
            for turn in range(start, min(start + 50, turns + 1)):
                batch += turn_items(turn, sid[-3:])
            await session.add_items(batch)

        def insert_usage(sid: str = sid, turns: int = turns) -> None:
            with connections[alias].cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO turn_usage (session_id, branch_id, user_turn_number, requests, "
                    "input_tokens, output_tokens, total_tokens, input_tokens_details, "
                    "output_tokens_details) VALUES (%s, 'main', %s, %s, %s, %s, %s, "
                    "CAST(%s AS jsonb), CAST(%s AS jsonb))",
                    [(sid, t, *usage_row_values(t)) for t in range(1, turns + 1)],
                )

        await sync_to_async(insert_usage)()
        if branches:
            for fraction in (0.2, 0.8):
                await session.create_branch_from_turn(
                    max(2, int(turns * fraction)), f"setup-{fraction}"
                )
                await session.switch_to_branch("main")
    await sync_to_async(connections.close_all)()  # the worker thread's connection goes back


# ---- ops ----------------------------------------------------------------------------------


@dataclass
class Contender:
    key: str
    label: str
    reader: Any
    writer: Any


@dataclass
class Op:
    key: str
    label: str
    run: Callable[[Contender, int], Awaitable[Any]]
    cleanup: Callable[[Contender, int, Any], Awaitable[None]] | None = None
    size_bound: bool = False  # its output (or work) grows with the session by definition


def make_ops(ds: DataSet, branch_turn: int, headline: bool) -> list[Op]:
    async def append(c: Contender, r: int) -> None:
        await c.writer.add_items([APPEND_ITEM])

    async def turn(c: Contender, r: int) -> None:
        await c.writer.add_items(turn_items(100000 + r, "w"))

    async def items_all(c: Contender, r: int) -> None:
        assert len(await c.reader.get_items()) == ds.items

    async def items_20(c: Contender, r: int) -> None:
        assert len(await c.reader.get_items(limit=20)) == 20

    async def usage(c: Contender, r: int) -> None:
        await c.writer.store_run_usage(usage_result(r))

    async def branch(c: Contender, r: int) -> str:
        return await c.reader.create_branch_from_turn(
            branch_turn, f"bench-{ds.key}-{branch_turn}-{r}"
        )

    async def unbranch(c: Contender, r: int, branch_id: Any) -> None:
        await c.reader.switch_to_branch("main")
        await c.reader.delete_branch(branch_id)

    async def branches(c: Contender, r: int) -> None:
        assert len(await c.reader.list_branches()) == 3

    async def turns(c: Contender, r: int) -> None:
        assert len(await c.reader.get_conversation_turns()) == ds.turns

    async def turn_usage(c: Contender, r: int) -> None:
        assert len(await c.reader.get_turn_usage()) == ds.turns

    async def pop(c: Contender, r: int) -> None:
        assert await c.writer.pop_item() is not None

    async def session_usage(c: Contender, r: int) -> None:
        assert (await c.reader.get_session_usage())["total_turns"] >= ds.turns

    return [
        Op("append", "append 1 item", append),
        Op("turn", "add 4-item turn", turn),
        Op("items_all", f"get_items() [{ds.items:,} items]", items_all, size_bound=True),
        Op("items_20", "get_items(limit=20)", items_20),
        Op("usage", "store_run_usage", usage),
        Op(
            "branch",
            f"create_branch_from_turn({branch_turn})"
            + (f" [{ds.turns} turns]" if headline else ""),
            branch,
            unbranch,
        ),
        Op("branches", "list_branches [3 branches]", branches, size_bound=True),
        Op("turns", f"get_conversation_turns [{ds.turns} turns]", turns, size_bound=True),
        Op("turn_usage", f"get_turn_usage() [{ds.turns} rows]", turn_usage, size_bound=True),
        Op("pop", "pop_item", pop),
        Op(
            "session_usage",
            f"get_session_usage() [{ds.turns}+ rows]",
            session_usage,
            size_bound=True,
        ),
    ]


@dataclass
class Cell:
    """One contender on one data set, with the ops measured there."""

    ds: DataSet
    contender: Contender
    ops: dict[str, Op]


async def measure(cells: list[Cell], op_keys: list[str], rounds: int) -> dict[str, Any]:
    """Median ms per (data set, op, contender).

    Every round runs every op on every cell (contender x data set), both orders shuffled
    anew each round, so noise that varies over time (other processes, disk flushes, the
    allocator after a big read) hits everything alike. A fixed cell order would also give
    each cell a fixed predecessor: DjangoSession on 8,000 items always ran right after the
    SDK's O(n) scan of the same data set and paid for the CPU caches that scan evicted (a
    1.3-1.4x "growth" of get_items(limit=20) that is absent when measured alone).
    """
    samples: dict[tuple[str, str, str], list[float]] = {}
    shuffler = random.Random(20261122)
    for r in range(rounds + 1):  # round 0 warms caches and connections; not recorded
        order = list(cells)
        shuffler.shuffle(order)
        # The op order is shuffled too: the first call after a big one (get_items() of 8,000
        # items frees ~10 MB of Python objects) pays ~1-2 ms of allocator work whatever it
        # is; shuffled, that lands on a few samples of random ops and the medians ignore it.
        keys = list(op_keys)
        shuffler.shuffle(keys)
        for key in keys:
            for cell in order:
                op = cell.ops.get(key)
                if op is None:
                    continue
                start = time.perf_counter()
                result = await op.run(cell.contender, r)
                elapsed = (time.perf_counter() - start) * 1000
                if r:
                    samples.setdefault((cell.ds.key, key, cell.contender.key), []).append(elapsed)
                if op.cleanup is not None:
                    await op.cleanup(cell.contender, r, result)
    medians: dict[str, Any] = {}
    for (ds_key, key, contender), values in samples.items():
        medians.setdefault(ds_key, {}).setdefault(key, {})[contender] = statistics.median(values)
    return medians


# ---- Django / PostgreSQL plumbing ---------------------------------------------------------


def configure_django(aliases: dict[str, dict[str, Any]]) -> None:
    """Forkview's settings, with the bench's database aliases."""
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{next(iter(aliases.values()))['NAME']}")
    import django
    from django.conf import settings

    import dashboard.settings as base

    databases = {alias: base._tune_database(alias, dict(cfg)) for alias, cfg in aliases.items()}
    options = {k: getattr(base, k) for k in dir(base) if k.isupper()}
    options["DATABASES"] = databases
    options["LOGGING"] = {"version": 1, "disable_existing_loggers": False}
    settings.configure(**options)
    django.setup()


SDK_TABLES = ("agent_sessions", "agent_messages", "message_structure", "turn_usage")


def drop_triggers(alias: str) -> None:
    """Remove Forkview's triggers on the SDK's tables (search index, summaries) from a
    bench database: what the ops cost without them."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({', '.join(['%s'] * len(SDK_TABLES))})",
                SDK_TABLES,
            )
            for (name,) in cursor.fetchall():
                cursor.execute(f'DROP TRIGGER "{name}"')
        else:
            for table in SDK_TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")


def parse_db_url(url: str) -> dict[str, Any]:
    import environ

    return environ.Env.db_url_config(url)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def pg_admin(url: str, statements: list[str]) -> list[Any]:
    import psycopg

    cfg = parse_db_url(url)
    with psycopg.connect(
        host=cfg["HOST"],
        port=cfg["PORT"] or 5432,
        user=cfg["USER"],
        password=cfg["PASSWORD"],
        dbname=cfg["NAME"],
        autocommit=True,
    ) as conn:
        out = []
        for statement in statements:
            cur = conn.execute(statement)
            out.append(cur.fetchall() if cur.description else None)
        return out


# ---- reporting ----------------------------------------------------------------------------


def fmt(ms: float | None) -> str:
    return "-" if ms is None else (f"{ms:.3f}" if ms < 1 else f"{ms:.2f}")


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for r in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


# ---- main ---------------------------------------------------------------------------------


@dataclass
class Plan:
    sizes: tuple[int, int, int]
    neighbours: int
    rounds: int
    headline_branch_turn: int
    scaling_branch_turn: int
    data_sets: list[DataSet] = field(default_factory=list)


def make_plan(quick: bool) -> Plan:
    if quick:
        plan = Plan((100, 400, 800), 1600, 3, 50, 20)
    else:
        plan = Plan((500, 2000, 8000), 32000, 75, 250, 100)
    small, medium, large = plan.sizes
    plan.data_sets = [
        DataSet("s", f"{small:,}", small),
        DataSet("m", f"{medium:,}", medium),
        DataSet("l", f"{large:,}", large),
        DataSet("ln", f"{large:,}+{plan.neighbours // 1000}k nb", large, plan.neighbours),
    ]
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 30 s)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="PostgreSQL URL (default: $BENCH_DATABASE_URL); scratch databases are created",
    )
    parser.add_argument("--workdir", default="", help="where the SQLite files go (default: tmp)")
    parser.add_argument(
        "--no-triggers",
        action="store_true",
        help="drop Forkview's triggers on the SDK's tables after migrating (to measure their "
        "cost per op against a normal run)",
    )
    parser.add_argument(
        "--no-sdk-pg",
        action="store_true",
        help="PostgreSQL: leave out the SDK's SQLAlchemySession column",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the SQLite files and PostgreSQL databases"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="measured rounds (default 75, --quick 3); more rounds steady the medians of "
        "sub-millisecond ops on a noisy host",
    )
    args = parser.parse_args()
    if args.rounds < 0:
        parser.error("--rounds must be positive")
    pg_url = args.postgres if args.postgres.startswith(("postgres://", "postgresql://")) else ""
    if args.postgres and not pg_url:
        parser.error("--postgres must be a postgres:// URL")

    plan = make_plan(args.quick)
    if args.rounds:
        plan.rounds = args.rounds
    started = time.perf_counter()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="forkview-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pg_names: dict[str, str] = {}

    # Data: one raw-written template per data set, copied per contender.
    aliases: dict[str, dict[str, Any]] = {}
    for ds in plan.data_sets:
        template = workdir / f"template_{ds.key}.sqlite3"
        populate_sqlite(template, ds)
        for contender in ("raw", "sdk", "django"):
            shutil.copy(template, workdir / f"{contender}_{ds.key}.sqlite3")
        template.unlink()
        aliases[f"sqlite_{ds.key}"] = parse_db_url(
            f"sqlite:///{workdir / f'django_{ds.key}.sqlite3'}"
        )
    with_sa = bool(pg_url) and sqlalchemy_available() and not args.no_sdk_pg
    if pg_url:
        suffix = f"{os.getpid()}_{int(time.time())}"
        for ds in plan.data_sets:
            pg_names[ds.key] = f"forkview_bench_{ds.key}_{suffix}"
            if with_sa:
                pg_names[f"sa_{ds.key}"] = f"forkview_bench_sa_{ds.key}_{suffix}"
        pg_admin(pg_url, [f'CREATE DATABASE "{n}"' for n in pg_names.values()])
        for ds in plan.data_sets:
            aliases[f"pg_{ds.key}"] = parse_db_url(with_database(pg_url, pg_names[ds.key]))
    aliases = {"default": aliases[f"sqlite_{plan.data_sets[0].key}"], **aliases}
    configure_django(aliases)

    from django.core.management import call_command
    from django.db import connections

    for alias in aliases:
        if alias != "default":
            call_command("migrate", database=alias, verbosity=0)  # adopts the SQLite copies
            if args.no_triggers:
                drop_triggers(alias)
    try:
        pg_urls: dict[str, str] = {}
        if pg_url:
            for ds in plan.data_sets:
                asyncio.run(populate_django(f"pg_{ds.key}", ds))
            # The raw floor gets a copy of DjangoSession's database (same schema and rows).
            connections.close_all()
            for ds in plan.data_sets:
                connections[f"pg_{ds.key}"].close_pool()  # the template must be unused
            for ds in plan.data_sets:
                pg_names[f"psy_{ds.key}"] = pg_names[ds.key].replace("_bench_", "_bench_psy_")
                pg_admin(
                    pg_url,
                    [
                        f'CREATE DATABASE "{pg_names[f"psy_{ds.key}"]}" '
                        f'TEMPLATE "{pg_names[ds.key]}"'
                    ],
                )
                pg_urls[f"psy_{ds.key}"] = with_database(pg_url, pg_names[f"psy_{ds.key}"])
                if with_sa:
                    pg_urls[f"sa_{ds.key}"] = with_database(pg_url, pg_names[f"sa_{ds.key}"])
        if pg_url and not with_sa:
            print(
                "NOTE: SQLAlchemySession column skipped (sqlalchemy/asyncpg not installed: "
                "see bench/README.md)",
                file=sys.stderr,
            )
        setup_s = time.perf_counter() - started
        results = asyncio.run(run_all(plan, workdir, bool(pg_url), pg_urls))
        report(plan, results, pg_url, setup_s, time.perf_counter() - started)
        if pg_url:
            explain_pg(plan)
        explain_sqlite(plan, workdir)
    finally:
        connections.close_all()
        if pg_url and not args.keep:
            drops = [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in pg_names.values()]
            pg_admin(pg_url, drops)
        elif pg_url:
            print(f"kept PostgreSQL databases: {', '.join(pg_names.values())}")
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


async def run_all(
    plan: Plan, workdir: Path, with_pg: bool, pg_urls: dict[str, str]
) -> dict[str, Any]:
    from agents.extensions.memory import AdvancedSQLiteSession

    from conversations.session import DjangoSession

    engines = []
    for ds in plan.data_sets:
        if f"sa_{ds.key}" in pg_urls:
            engine = sa_engine(pg_urls[f"sa_{ds.key}"])
            engines.append(engine)
            await populate_sa(engine, ds)

    cells: list[Cell] = []
    ops_by_ds: dict[str, list[Op]] = {}
    for ds in plan.data_sets:
        ops = make_ops(ds, plan.scaling_branch_turn, headline=False)
        if ds.key == "m":  # the headline data set also branches from its middle turn
            scaling_branch = next(op for op in ops if op.key == "branch")
            ops = make_ops(ds, plan.headline_branch_turn, headline=True)
            ops.append(
                Op("branch_s", scaling_branch.label, scaling_branch.run, scaling_branch.cleanup)
            )
        ops_by_ds[ds.key] = ops
        by_key = {op.key: op for op in ops}

        def files(kind: str, sid: str, ds: DataSet = ds) -> Any:
            path = workdir / f"{kind}_{ds.key}.sqlite3"
            if kind == "raw":
                return AsyncRaw(RawSession(path, sid))
            return AdvancedSQLiteSession(session_id=sid, db_path=path, create_tables=False)

        contenders = [
            Contender("raw", "raw sqlite3", files("raw", READER), files("raw", WRITER)),
            Contender("sdk", "AdvancedSQLite", files("sdk", READER), files("sdk", WRITER)),
        ]
        aliases = [("django", f"sqlite_{ds.key}")] + ([("pg", f"pg_{ds.key}")] if with_pg else [])
        for key, alias in aliases:
            contenders.append(
                Contender(
                    key,
                    key,
                    DjangoSession(session_id=READER, using=alias),
                    DjangoSession(session_id=WRITER, using=alias),
                )
            )
        cells += [Cell(ds, c, by_key) for c in contenders]
        if f"psy_{ds.key}" in pg_urls:
            url = pg_urls[f"psy_{ds.key}"]
            psy = Contender(
                "psy", "raw psycopg", AsyncRaw(RawPg(url, READER)), AsyncRaw(RawPg(url, WRITER))
            )
            cells.append(Cell(ds, psy, {k: v for k, v in by_key.items() if k in PSY_OPS}))
        if f"sa_{ds.key}" in pg_urls:
            from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

            engine = engines[
                [d.key for d in plan.data_sets if f"sa_{d.key}" in pg_urls].index(ds.key)
            ]
            sa = Contender(
                "sa",
                "SQLAlchemySession",
                SQLAlchemySession(READER, engine=engine),
                SQLAlchemySession(WRITER, engine=engine),
            )
            cells.append(Cell(ds, sa, {k: v for k, v in by_key.items() if k in SA_OPS}))

    op_keys = list(dict.fromkeys(op.key for ops in ops_by_ds.values() for op in ops))
    print(
        f"measuring {len(cells)} cells x {len(op_keys)} ops, {plan.rounds} rounds...",
        file=sys.stderr,
        flush=True,
    )
    medians = await measure(cells, op_keys, plan.rounds)
    for cell in cells:
        for session in (cell.contender.reader, cell.contender.writer):
            close = getattr(session, "close", None)  # SQLAlchemySession has none
            if close is not None:
                close()
    for engine in engines:
        await engine.dispose()
    return {ds.key: {"ops": ops_by_ds[ds.key], "medians": medians[ds.key]} for ds in plan.data_sets}


def report(plan: Plan, results: dict[str, Any], pg_url: str, setup_s: float, total: float) -> None:
    from django.db import connections

    print("\nForkview session benchmark: DjangoSession vs AdvancedSQLiteSession vs raw sqlite3")
    print(
        f"python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, setup {setup_s:.1f} s, quick={plan.sizes[0] < 500}"
    )
    print(
        "SQLite: one file per contender, WAL, synchronous=FULL (default), same data; "
        "medians in ms; every round visits every contender on every data set, shuffled order."
    )
    if pg_url:
        alias = f"pg_{plan.data_sets[0].key}"
        with connections[alias].cursor() as cursor:
            settings = {}
            for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes"):
                cursor.execute(f"SHOW {name}")
                settings[name] = cursor.fetchone()[0]
        durability = (
            "DURABILITY OFF (numbers flatter commits)"
            if settings["fsync"] == "off" or settings["synchronous_commit"] == "off"
            else "durable commits"
        )
        print(
            f"PostgreSQL {settings['server_version']} at {urlsplit(pg_url).hostname}: "
            f"fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}, "
            f"full_page_writes={settings['full_page_writes']} -> {durability}"
        )
    with_pg = bool(pg_url)
    checks: list[tuple[str, bool]] = []

    # Headline table.
    head = results["m"]
    med = head["medians"]
    ds_m = plan.data_sets[1]
    print(
        f"\n== Ops on a {ds_m.items:,}-item session ({ds_m.turns} turns, usage on every turn, "
        f"3 branches), median of {plan.rounds} rounds (ms) =="
    )
    headers = ["op", "raw", "sdk", "django", "dj/sdk", "dj/raw"]
    if with_pg:
        headers += ["pg", "pg/sdk"]
    headers += ["target", "result"]
    rows = []
    for op in head["ops"]:
        m = med[op.key]
        target = 0.2 if op.key == "items_20" else SQLITE_TARGET
        ok = m["django"] <= target * m["sdk"]
        checks.append((f"{op.label}: django <= {target}x sdk", ok))
        row = [
            op.label,
            fmt(m["raw"]),
            fmt(m["sdk"]),
            fmt(m["django"]),
            ratio(m["django"], m["sdk"]),
            ratio(m["django"], m["raw"]),
        ]
        if with_pg:
            row += [fmt(m["pg"]), ratio(m["pg"], m["sdk"])]
        row += [f"<= {target}x sdk", verdict(ok)]
        rows.append(row)
    print_table(headers, rows)

    if with_pg:
        report_pg(plan, results, checks)

    # Scaling tables.
    labels = [ds.label for ds in plan.data_sets]
    contenders = ["raw", "sdk", "django"] + (["pg"] if with_pg else [])
    names = {
        "raw": "raw sqlite3",
        "sdk": "AdvancedSQLiteSession",
        "django": "DjangoSession (SQLite)",
        "pg": "DjangoSession (PostgreSQL)",
    }
    scaling_ops = list(results["s"]["ops"])
    growth = f"{plan.sizes[0]}->{plan.sizes[2]}"
    for c in contenders:
        print(
            f"\n== Scaling: {names[c]}, median ms (session items; 'nb' = items of other "
            f"sessions written afterwards) =="
        )
        headers = ["op", *labels, f"{plan.sizes[2]}/{plan.sizes[0]}", "nb/no-nb"]
        if c in ("django", "pg"):
            headers += ["target <= 1.3x", "result"]
        rows = []
        for op in scaling_ops:
            values = [
                results[ds.key]["medians"][
                    op.key if ds.key != "m" or op.key != "branch" else "branch_s"
                ][c]
                for ds in plan.data_sets
            ]
            grow = values[2] / values[0]
            nb = values[3] / values[2]
            name = op.label.split(" [")[0]
            row = [name, *(fmt(v) for v in values), f"{grow:.2f}x", f"{nb:.2f}x"]
            if c in ("django", "pg"):
                if op.size_bound:
                    ok = nb <= 1.3
                    row += ["nb only (O(n) op)", verdict(ok)]
                    checks.append((f"{names[c]} {name}: flat with neighbours", ok))
                else:
                    ok = grow <= 1.3 and nb <= 1.3
                    row += ["size and nb", verdict(ok)]
                    checks.append((f"{names[c]} {name}: flat {growth} and with neighbours", ok))
            rows.append(row)
        print_table(headers, rows)

    # get_items(limit=20) vs the SDK where it hurts most.
    big = results["ln"]["medians"]["items_20"]
    ok = big["django"] <= 0.2 * big["sdk"]
    checks.append((f"get_items(limit=20) on {plan.data_sets[3].label}: django <= 0.2x sdk", ok))
    print(
        f"\nget_items(limit=20) with {plan.data_sets[3].label}: raw {fmt(big['raw'])}, "
        f"sdk {fmt(big['sdk'])}, django {fmt(big['django'])} ms "
        f"({ratio(big['django'], big['sdk'])} of sdk) {verdict(ok)}"
    )

    print("\n== Targets ==")
    for label, ok in checks:
        print(f"{verdict(ok)}  {label}")
    passed = sum(ok for _, ok in checks)
    print(f"{passed}/{len(checks)} targets met")


#: Issue 14 item 4: every op of DjangoSession on SQLite at most this times the SDK's.
SQLITE_TARGET = 0.9
#: Item 3: DjangoSession on PostgreSQL at most the SDK's SQLAlchemySession (on asyncpg) on
#: these ops; stretch: at most 2x the raw psycopg floor.
PG_TARGET_OPS = ("append", "turn", "items_all", "items_20")
PG_STRETCH = 2.0


def report_pg(plan: Plan, results: dict[str, Any], checks: list[tuple[str, bool]]) -> None:
    """DjangoSession on PostgreSQL vs SQLAlchemySession (asyncpg) vs raw psycopg."""
    print(
        "\n== PostgreSQL: DjangoSession (pg) vs the SDK's SQLAlchemySession on asyncpg (sa) "
        "vs raw psycopg (psy), median ms =="
    )
    headers = ["op", "data set", "psy", "sa", "pg", "pg/sa", "pg/psy", "target", "result"]
    rows = []
    data_sets = [ds for ds in plan.data_sets if ds.key != "m"] + [plan.data_sets[1]]
    for ds in data_sets:
        med = results[ds.key]["medians"]
        for op in results[ds.key]["ops"]:
            if op.key not in PSY_OPS:
                continue
            m = med[op.key]
            pg, sa, psy = m.get("pg"), m.get("sa"), m.get("psy")
            label = op.label.split(" [")[0]
            verdicts = []
            target = "-"
            if op.key in PG_TARGET_OPS and sa is not None:
                ok = pg <= sa
                checks.append((f"PostgreSQL {label} [{ds.label}]: pg <= 1.0x sa", ok))
                verdicts.append(verdict(ok))
                target = "<= 1.0x sa"
            if op.key in PG_TARGET_OPS and psy is not None:
                stretch = pg <= PG_STRETCH * psy
                verdicts.append("stretch " + ("ok" if stretch else "missed"))
            rows.append(
                [
                    label,
                    ds.label,
                    fmt(psy),
                    fmt(sa),
                    fmt(pg),
                    ratio(pg, sa),
                    ratio(pg, psy),
                    target,
                    ", ".join(verdicts) or "-",
                ]
            )
    print_table(headers, rows)


def items_newest_params(placeholders: int) -> list[Any]:
    """Parameters of ``DjangoSession``'s newest-items query: (session for the clear
    generation, session, branch..., limit).

    The branch id fills every placeholder between the session and the limit, so the plan
    printout keeps working if the statement names the branch more than once.
    """
    return [READER, READER, *["main"] * (placeholders - 3), 20]


def explain_pg(plan: Plan) -> None:
    from django.db import connections

    from conversations.sql import statements

    ds = plan.data_sets[3]
    alias = f"pg_{ds.key}"
    sql = statements(alias).items_newest
    print(f"\n== PostgreSQL EXPLAIN of get_items(limit=20), {ds.label} ==")
    with connections[alias].cursor() as cursor:
        for title, prefix in (("as loaded (no manual ANALYZE)", ""), ("after ANALYZE", "ANALYZE")):
            if prefix:
                cursor.execute("ANALYZE")
            params = items_newest_params(sql.count("%s"))
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan_text = "\n".join(r[0] for r in cursor.fetchall())
            uses_index = "using idx_structure_branch_seq" in plan_text
            pk_walk = "message_structure_pkey" in plan_text
            filtered = re.search(r"Rows Removed by Filter: (\d+)", plan_text)
            print(f"-- {title}: {sql}")
            print(plan_text)
            print(
                f"{verdict(uses_index and not pk_walk)}  uses idx_structure_branch_seq "
                f"({uses_index}), no message_structure PK walk ({not pk_walk})"
            )
            if filtered:
                print(
                    f"NOTE: an order index is walked with a filter: {filtered.group(1)} rows "
                    "of other branches read and dropped"
                )
            print()


def explain_sqlite(plan: Plan, workdir: Path) -> None:
    from conversations.sql import statements

    ds = plan.data_sets[3]
    django_sql = statements(f"sqlite_{ds.key}").items_newest.replace("%s", "?")
    sdk_sql = (
        "SELECT m.message_data FROM agent_messages m JOIN message_structure s "
        "ON m.id = s.message_id WHERE m.session_id = ? AND s.branch_id = ? "
        "ORDER BY s.sequence_number DESC LIMIT ?"
    )
    print(f"== SQLite EXPLAIN QUERY PLAN of get_items(limit=20), {ds.label} ==")
    plans = (
        ("DjangoSession", django_sql, items_newest_params(django_sql.count("?"))),
        ("AdvancedSQLiteSession", sdk_sql, [READER, "main", 20]),
    )
    for name, sql, params in plans:
        conn = sqlite3.connect(workdir / f"django_{ds.key}.sqlite3")
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        conn.close()
        print(f"-- {name}: " + "; ".join(r[3] for r in rows))


if __name__ == "__main__":
    sys.exit(main())
