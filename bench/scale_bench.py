"""Benchmark: the review pages at N1 and N2 sessions (issue 14, item 1: "flat with the database").

Run from the repository root::

    .venv/bin/python bench/scale_bench.py --quick               # 200 / 2,000 sessions, smoke run
    .venv/bin/python bench/scale_bench.py                       # 1,000 / 100,000 (4M items)
    .venv/bin/python bench/scale_bench.py --small 500 --large 5000
    .venv/bin/python bench/scale_bench.py --postgres postgres://u:p@127.0.0.1:5432/db
    .venv/bin/python bench/scale_bench.py --workdir /tmp/scale  # keep (and reuse) the SQLite files

What it does:

1. **Check.** A few sessions are written through ``DjangoSession`` (``add_items`` per turn,
   ``store_usage`` after each, ``create_branch_from_turn`` + more turns on the branch) and the
   same sessions through this bench's bulk writer, under other ids, in a tiny scratch database.
   Every row of ``agent_sessions``, ``agent_messages``, ``message_structure``, ``turn_usage``,
   ``branch_reservations`` and ``session_clear_generations`` is compared column by column
   (surrogate ids and timestamps aside: ``message_id`` is compared as the message's position in
   its session), and so are ``get_items`` per branch, ``list_branches`` and
   ``get_session_usage``. Any difference stops the run (exit 2) before anything is timed.
2. **Build** two databases of N1 and N2 sessions with bulk SQL (``executemany`` in batches in
   one transaction on SQLite with ``synchronous=OFF`` / ``journal_mode=OFF`` for the build only,
   then back to WAL; ``COPY`` in one transaction on PostgreSQL, then ``VACUUM ANALYZE`` as
   autovacuum would). Each session: 40 items on ``main`` (user / function_call /
   function_call_output / assistant, JSON as the SDK's Runner stores it; 7 to 20 turns), usage
   on every turn, five tool names (one rare), timestamps spread over a year, a common word
   (``refund``) and a rare one (``quokka``, in the same 20 sessions at every size: rare means
   a fixed handful of matches, so both sizes find the same hits). 10% of the sessions have a
   branch forked at a random turn with 1-3 turns of its own (prefix rows shared, as
   ``create_branch_from_turn`` writes them). Session ``i`` is the same in both databases.
3. **Measure.** One server process per size (Django's test ``Client``, logged-in reviewer,
   in process: middleware, auth, selectors, templates; no network) so both stay warm; every
   page variant is requested on both alternately (the order flips each time), ``--requests``
   times after one warm-up: the list with each sort key in both directions, each filter and
   combinations, a deep page, search (rare / common word, with filters), and one branched
   session's page, compare page and ``usage.json``. It prints medians, the large/small ratio,
   the query counts, whether the list's count is exact (checked against the generator), the
   slowest queries of each page at the large size, and the peak RSS of one list / search
   request in a fresh server process per size (``/proc/self/clear_refs`` resets the peak
   after start-up; ``getrusage`` where it cannot).

Target (issue 14): large/small <= 1.5 for every page. Printed, never asserted. The bench
creates its own scratch databases (SQLite files in a temp folder, or scratch databases on the
PostgreSQL server, dropped at the end unless ``--keep``) and never touches the configured one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
import tests.support.environment  # noqa: E402, F401  (the tests' key and plain-HTTP settings)

#: Bump when the generated data changes: --workdir reuses files of the same version only.
DATA_VERSION = 2
TARGET = 1.5

# ---- The data's shape (pure Python: the orchestrator uses it without Django) --------------

END = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp())
YEAR = 365 * 86400
#: Weighted: lookup_order in about half the calls.
TOOL_POOL = ("lookup_order",) * 5 + ("get_weather",) * 3 + ("search_docs",) * 2 + ("create_ticket",)
COMMON_TOOL = "lookup_order"
RARE_TOOL = "escalate_to_human"  # in about 1% of the sessions
COMMON_WORD = "refund"  # in about a third of the user turns and their replies
RARE_WORD = "quokka"  # one user message in sessions i % 50 == 17, i < 1000 (20 sessions)
BRANCH = "retry"
#: Items per turn on main (2: user + reply; 4: one tool call; 6: two): 40 items each.
SHAPES = (
    (4,) * 10,
    (2,) * 20,
    (6, 6, 6, 6, 6, 6, 4),
    (2, 6, 4, 2, 6, 4, 4, 6, 2, 4),
)
#: Traced sessions (every third): one trace per main turn, one model call (a response span)
#: each, priced as Forkview records it (``cost_nanos``) with these rates, nanodollars per
#: input / output token; the last model has no price ("no price" calls, NULL cost).
TRACE_MODELS = (("gpt-4o-mini", 150, 600), ("gpt-4.1", 2000, 8000), ("o3", 2000, 8000))
UNPRICED_MODEL = "acme-internal-7b"
#: The cost filter: at least this many dollars (about a sixth of the traced sessions).
COST_MIN = 0.03
#: The date-range filter: January 2025 (updated_at, UTC).
DATE_FROM, DATE_TO = date(2025, 1, 1), date(2025, 1, 31)
CITIES = ("Lisbon", "Porto", "Kyoto", "Oslo", "Quito", "Accra", "Perth", "Malmö")
QUESTIONS = (
    "Can I get a refund for order {o}? The box arrived damaged and the lid is cracked.",
    "What's the weather in {c} this weekend? We are planning a hike on Saturday.",
    "How do I rotate the API key for project {p} without downtime?",
    "My refund for order {o} has not arrived yet; it has been ten days. Can you check?",
    "Please summarise what changed in release {p} for the support team.",
    "Is there a café near the {c} office that opens before eight?",
)
REPLIES = (
    "I have opened a refund for order **{o}**; you will see it within 5 business days.",
    "In {c} expect 18-22°C, light wind and a small chance of rain on Saturday afternoon.",
    "Create a second key for {p}, deploy it, then revoke the old one from the settings page.",
    "The refund for **{o}** was approved on Monday; the bank may need two more days.",
    "Release {p}: faster exports, a fixed date filter, and clearer error messages.",
    "Café Aurora, two streets from the {c} office, opens at 7:30 on weekdays.",
)


@dataclass(frozen=True, slots=True)
class Turn:
    number: int  # the branch turn (user_turn_number = branch_turn_number)
    tools: tuple[str, ...]  # one per call; items = 2 + 2 * len(tools)
    at: int  # epoch seconds of the turn's rows
    flavour: int  # which question / reply
    rare: bool  # the user message holds RARE_WORD


@dataclass(frozen=True, slots=True)
class Plan:
    index: int
    main: tuple[Turn, ...]
    fork_turn: int | None  # the branch copies main's turns before this one
    branch: tuple[Turn, ...]
    branch_at: int  # when the branch was created: its copied rows' created_at
    created: int
    updated: int

    @property
    def tools(self) -> set[str]:
        return {tool for turn in (*self.main, *self.branch) for tool in turn.tools}


def plan(i: int) -> Plan:
    """Session ``i``, the same in every database and every run."""
    rng = random.Random(i * 7919 + 11)
    shape = SHAPES[rng.randrange(len(SHAPES))]
    start = END - YEAR + rng.randrange(YEAR - 5 * 86400)
    gap = rng.randint(15, 900)
    rare_tool = rng.random() < 0.01
    rare_turn = 2 if i % 50 == 17 and i < 1000 else 0

    def turn(number: int, size: int, at: int) -> Turn:
        nonlocal rare_tool
        tools = []
        for _ in range((size - 2) // 2):
            if rare_tool:
                tools.append(RARE_TOOL)
                rare_tool = False
            else:
                tools.append(TOOL_POOL[rng.randrange(len(TOOL_POOL))])
        return Turn(number, tuple(tools), at, rng.randrange(len(QUESTIONS)), number == rare_turn)

    main = tuple(turn(n, size, start + (n - 1) * gap) for n, size in enumerate(shape, 1))
    last = main[-1].at
    fork_turn, branch, branch_at = None, (), last
    if rng.random() < 0.10:
        fork_turn = rng.randint(2, len(main))
        branch_at = last + rng.randint(60, 3 * 86400)
        branch = tuple(
            turn(fork_turn + k, rng.choice((2, 4)), branch_at + k * gap)
            for k in range(rng.randint(1, 3))
        )
        last = branch[-1].at
    return Plan(i, main, fork_turn, branch, branch_at, start, last)


def session_id(prefix: str, i: int) -> str:
    return f"{prefix}conv-{i:06d}"


def turn_items(i: int, turn: Turn, tag: str) -> list[dict[str, Any]]:
    """The turn's items as the SDK's Runner stores them (model outputs: ``model_dump``)."""
    o, c, p = (
        f"L-{i:06d}-{turn.number}",
        CITIES[(i + turn.number) % len(CITIES)],
        f"v{i % 97}.{turn.number}",
    )
    question = QUESTIONS[turn.flavour].format(o=o, c=c, p=p)
    if turn.rare:
        question += f" Also, our mascot is a {RARE_WORD}: can the reply mention it?"
    uid = f"{i:06x}{tag}{turn.number:02x}"
    items: list[dict[str, Any]] = [{"content": question, "role": "user"}]
    for k, tool in enumerate(turn.tools):
        call_id = f"call_{uid}{k}a7Kp2QxZ"
        arguments = {"order_id": o} if tool in (COMMON_TOOL, RARE_TOOL) else {"query": f"{c} {p}"}
        items.append(
            {
                "arguments": json.dumps(arguments),
                "call_id": call_id,
                "name": tool,
                "type": "function_call",
                "id": f"fc_{uid}{k}0d9e6b0c4f",
                "status": "completed",
            }
        )
        result = {"status": "ok", "tool": tool, "ref": o, "city": c, "items": [1, 2, turn.number]}
        items.append(
            {"call_id": call_id, "output": json.dumps(result), "type": "function_call_output"}
        )
    reply = REPLIES[turn.flavour].format(o=o, c=c, p=p)
    items.append(
        {
            "id": f"msg_{uid}6f1c2d3e4a5b",
            "content": [{"annotations": [], "text": reply, "type": "output_text", "logprobs": []}],
            "role": "assistant",
            "status": "completed",
            "type": "message",
        }
    )
    return items


def turn_usage(i: int, turn: Turn) -> tuple[int, int, int, int, int, int]:
    """(requests, input, output, total, cached, reasoning) tokens of one turn."""
    requests = 1 + len(turn.tools)
    input_tokens = 350 + 120 * turn.number + (i * 37 + turn.number * 11) % 200
    output_tokens = 40 + (i * 13 + turn.number * 7) % 400
    cached = input_tokens // 2 if turn.number > 1 else 0
    return requests, input_tokens, output_tokens, input_tokens + output_tokens, cached, i % 5 * 16


def traced(i: int) -> bool:
    return i % 3 == 0


def turn_model_call(i: int, turn: Turn) -> tuple[str, int | None]:
    """The model of a traced turn's call and its recorded cost (nanodollars; None: no price)."""
    _, input_tokens, output_tokens, *_ = turn_usage(i, turn)
    if (i + turn.number) % 29 == 0:
        return UNPRICED_MODEL, None
    model, per_in, per_out = TRACE_MODELS[(i // 3) % len(TRACE_MODELS)]
    return model, input_tokens * per_in + output_tokens * per_out


def plan_cost(p: Plan) -> int | None:
    """What the session's traces recorded (None: not traced)."""
    if not traced(p.index):
        return None
    return sum(turn_model_call(p.index, t)[1] or 0 for t in p.main)


def filter_predicates() -> dict[str, Callable[[Plan], bool]]:
    """The list's filters as predicates on plans (the list's count must match them)."""

    def in_range(p: Plan) -> bool:
        day = datetime.fromtimestamp(p.updated, UTC).date()
        return DATE_FROM <= day <= DATE_TO

    return {
        "tool": lambda p: COMMON_TOOL in p.tools,
        "rare_tool": lambda p: RARE_TOOL in p.tools,
        "branched": lambda p: p.fork_turn is not None,
        "dates": in_range,
        "cost": lambda p: (plan_cost(p) or 0) >= COST_MIN * 1e9 and traced(p.index),
    }


# ---- Bulk writers ------------------------------------------------------------------------------

COLUMNS = {
    "agent_sessions": ("session_id", "created_at", "updated_at"),
    "agent_messages": ("id", "session_id", "message_data", "created_at"),
    "message_structure": (
        "session_id",
        "message_id",
        "branch_id",
        "message_type",
        "sequence_number",
        "user_turn_number",
        "branch_turn_number",
        "tool_name",
        "created_at",
    ),
    "turn_usage": (
        "session_id",
        "branch_id",
        "user_turn_number",
        "requests",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
        "created_at",
    ),
    "forkview_traces": (
        "trace_id",
        "workflow_name",
        "group_id",
        "session_id",
        "branch_id",
        "turn",
        "started_at",
        "ended_at",
    ),
    "forkview_spans": (
        "span_id",
        "trace_id",
        "kind",
        "name",
        "started_at",
        "ended_at",
        "duration_ms",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "reasoning_tokens",
        "cost_nanos",
        "data",
    ),
    "branch_reservations": ("session_id", "branch_id"),
    "session_clear_generations": ("session_id", "generation"),
}


class SQLiteSink:
    """``executemany`` per table and batch, one transaction; build-only PRAGMAs when ``fast``."""

    ts_suffix = ""

    def __init__(self, path: str, *, fast: bool) -> None:
        import sqlite3

        self.fast = fast
        self.conn = sqlite3.connect(path, isolation_level=None)
        if fast:
            for pragma in (
                "synchronous=OFF",
                "journal_mode=OFF",
                "cache_size=-262144",
                "temp_store=MEMORY",
            ):
                self.conn.execute(f"PRAGMA {pragma}")
        self.conn.execute("BEGIN")

    def first_message_id(self) -> int:
        (top,) = self.conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM agent_messages), 0), COALESCE("
            "(SELECT seq FROM sqlite_sequence WHERE name = 'agent_messages'), 0))"
        ).fetchone()
        return int(top) + 1

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = COLUMNS[table]
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def finish(self) -> None:
        self.conn.execute("COMMIT")
        if self.fast:
            self.conn.execute("PRAGMA journal_mode=WAL")  # what the app and the SDK run on
        self.conn.close()


class PostgresSink:
    """``COPY`` per table and batch, one transaction; identity sequences moved past the rows.

    ``fast``: the foreign keys are dropped for the load and re-added (same names, same
    definitions, read from ``pg_constraint``) before the commit, so each is checked in one
    pass instead of a trigger per row; then ``VACUUM ANALYZE``.
    """

    ts_suffix = "+00"

    def __init__(self, url: str, *, fast: bool) -> None:
        import psycopg

        self.fast, self.url = fast, url
        self.conn = psycopg.connect(url)
        self.foreign_keys: list[tuple[str, str, str]] = []
        if fast:
            self.foreign_keys = [
                (str(table), str(name), str(definition))
                for table, name, definition in self.conn.execute(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                    "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = "
                    "ANY(%s) ORDER BY conname",
                    [["agent_messages", "message_structure", "turn_usage"]],
                ).fetchall()
            ]
            for table, name, _ in self.foreign_keys:
                self.conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')

    def first_message_id(self) -> int:
        (top,) = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM agent_messages").fetchone()
        return int(top) + 1

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(COLUMNS[table])
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        for table, name, definition in self.foreign_keys:
            self.conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('agent_messages', 'id'), "
            "(SELECT COALESCE(MAX(id), 0) + 1 FROM agent_messages), false)"
        )
        self.conn.commit()
        if self.fast:
            self.conn.autocommit = True
            self.conn.execute("VACUUM ANALYZE")
        self.conn.close()


def open_sink(url: str, *, fast: bool) -> SQLiteSink | PostgresSink:
    if url.startswith(("postgres://", "postgresql://")):
        return PostgresSink(url, fast=fast)
    return SQLiteSink(url.removeprefix("sqlite:///"), fast=fast)


def bulk_write(
    sink: SQLiteSink | PostgresSink,
    indexes: Iterable[int],
    prefix: str,
    *,
    batch: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write the sessions ``indexes`` as ``DjangoSession`` would, row for row (see ``check``)."""
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    from conversations import classify

    dumps, gmtime, strftime = json.dumps, time.gmtime, time.strftime
    suffix = sink.ts_suffix
    labels: dict[tuple[Any, ...], classify.ItemLabel] = {}

    def ts(epoch: int) -> str:
        return strftime("%Y-%m-%d %H:%M:%S", gmtime(epoch)) + suffix

    def label(item: dict[str, Any]) -> classify.ItemLabel:
        key = (item.get("role"), item.get("type"), item.get("name"))
        found = labels.get(key)
        if found is None:
            found = labels[key] = classify.label(item)
        return found

    tables: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}
    sessions, messages, structure, usage = (
        tables["agent_sessions"],
        tables["agent_messages"],
        tables["message_structure"],
        tables["turn_usage"],
    )
    totals = dict.fromkeys(COLUMNS, 0)

    def flush() -> None:
        for name, rows in tables.items():
            if rows:
                sink.write(name, rows)
                totals[name] += len(rows)
                rows.clear()

    def add_session(i: int, first_id: int) -> int:
        """Append session ``i``'s rows to ``tables``; return the next free message id."""
        p = plan(i)
        sid = session_id(prefix, i)
        sessions.append((sid, ts(p.created), ts(p.updated)))
        tables["session_clear_generations"].append((sid, 0))
        tables["branch_reservations"].append((sid, "main"))
        next_id, seq = first_id, 0
        main_rows: list[tuple[int, str, int, str | None]] = []

        def add_turn(turn: Turn, branch: str, tag: str) -> None:
            nonlocal next_id, seq
            at = ts(turn.at)
            n = turn.number
            for item in turn_items(i, turn, tag):
                lab = label(item)
                messages.append((next_id, sid, dumps(item), at))
                seq += 1
                structure.append(
                    (sid, next_id, branch, lab.message_type, seq, n, n, lab.tool_name, at)
                )
                if branch == "main":
                    main_rows.append((next_id, lab.message_type, n, lab.tool_name))
                next_id += 1
            requests, input_tokens, output_tokens, total, cached, reasoning = turn_usage(i, turn)
            if branch == "main" and traced(i):
                model, nanos = turn_model_call(i, turn)
                trace_id = f"trace_{i:06d}_{n:03d}{prefix}"
                done = ts(turn.at + 2)
                tables["forkview_traces"].append((trace_id, "bench", sid, sid, branch, n, at, done))
                tables["forkview_spans"].append(
                    (
                        f"span_{i:06d}_{n:03d}{prefix}",
                        trace_id,
                        "response",
                        model,
                        at,
                        done,
                        2000.0,
                        model,
                        input_tokens,
                        output_tokens,
                        cached,
                        reasoning,
                        nanos,
                        "{}",
                    )
                )
            in_details = InputTokensDetails(cached_tokens=cached, cache_write_tokens=0)
            out_details = OutputTokensDetails(reasoning_tokens=reasoning)
            usage.append(
                (
                    sid,
                    branch,
                    n,
                    requests,
                    input_tokens,
                    output_tokens,
                    total,
                    dumps(in_details.__dict__),
                    dumps(out_details.__dict__),
                    at,
                )
            )

        for turn in p.main:
            add_turn(turn, "main", "m")
        if p.fork_turn is not None:
            tables["branch_reservations"].append((sid, BRANCH))
            at = ts(p.branch_at)
            for message_id, message_type, n, tool in main_rows:
                if n < p.fork_turn:  # create_branch_from_turn's copy of the prefix
                    seq += 1
                    structure.append((sid, message_id, BRANCH, message_type, seq, n, n, tool, at))
            for turn in p.branch:
                add_turn(turn, BRANCH, "b")
        return next_id

    next_id, done = sink.first_message_id(), 0
    for i in indexes:
        next_id = add_session(i, next_id)
        done += 1
        if done % batch == 0:
            flush()
            if progress:
                progress(done)
    flush()
    sink.finish()
    return totals


async def djangosession_write(indexes: Sequence[int], prefix: str) -> None:
    """The same sessions through ``DjangoSession``, the way an app would write them."""
    from agents.usage import Usage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    from conversations.session import DjangoSession

    for i in indexes:
        p = plan(i)
        session = DjangoSession(session_id=session_id(prefix, i))

        async def add(turn: Turn, tag: str, session: DjangoSession = session, i: int = i) -> None:
            await session.add_items(turn_items(i, turn, tag))  # type: ignore[arg-type]
            requests, input_tokens, output_tokens, total, cached, reasoning = turn_usage(i, turn)
            usage = Usage(
                requests=requests,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                total_tokens=total,
                input_tokens_details=InputTokensDetails(cached_tokens=cached, cache_write_tokens=0),
                output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
            )
            await session.store_usage(usage)

        for turn in p.main:
            await add(turn, "m")
        if p.fork_turn is not None:
            await session.create_branch_from_turn(p.fork_turn, BRANCH)
            for turn in p.branch:
                await add(turn, "b")


# ---- Roles (each a process of its own, with its own DATABASE_URL) ------------------------------


def _django(url: str) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")  # static files not collected
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from agents import set_tracing_disabled

    set_tracing_disabled(True)


def _migrate() -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    connections.close_all()


def check_indexes() -> list[int]:
    """Sessions covering every case: branched, the rare tool, the rare word, each shape."""
    picked: dict[str, int] = {}
    for i in range(5000):
        p = plan(i)
        if p.fork_turn is not None and len(p.branch) > 1:
            picked.setdefault("branched", i)
            if p.tools and any(t.tools for t in p.branch):
                picked.setdefault("branched, tools on the branch", i)
        if RARE_TOOL in p.tools:
            picked.setdefault("rare tool", i)
        if any(t.rare for t in p.main):
            picked.setdefault("rare word", i)
        picked.setdefault(f"{len(p.main)} turns", i)
    return sorted(set(picked.values()))


def _session_rows(cursor: Any, sid: str) -> dict[str, Any]:
    """Every row of one session, ids and timestamps replaced by what must hold of them."""

    def rows(sql: str) -> list[tuple[Any, ...]]:
        cursor.execute(sql, [sid])
        return [tuple(r) for r in cursor.fetchall()]

    def text(value: Any) -> Any:
        return value if isinstance(value, (str, type(None))) else json.dumps(value)

    messages = rows(
        "SELECT id, message_data, created_at FROM agent_messages WHERE session_id = %s ORDER BY id"
    )
    position = {m[0]: k for k, m in enumerate(messages)}
    structure = rows(
        "SELECT message_id, branch_id, message_type, sequence_number, user_turn_number, "
        "branch_turn_number, tool_name, created_at FROM message_structure "
        "WHERE session_id = %s ORDER BY sequence_number"
    )
    usage = rows(
        "SELECT branch_id, user_turn_number, requests, input_tokens, output_tokens, "
        "total_tokens, input_tokens_details, output_tokens_details, created_at FROM turn_usage "
        "WHERE session_id = %s ORDER BY branch_id, user_turn_number"
    )
    return {
        "agent_sessions": [
            (r[0] is not None, r[1] is not None)
            for r in rows("SELECT created_at, updated_at FROM agent_sessions WHERE session_id = %s")
        ],
        "agent_messages": [(text(m[1]), m[2] is not None) for m in messages],
        "message_structure": [
            (position.get(r[0], f"missing {r[0]}"), *r[1:7], r[7] is not None) for r in structure
        ],
        "turn_usage": [(*r[:6], text(r[6]), text(r[7]), r[8] is not None) for r in usage],
        "branch_reservations": rows(
            "SELECT branch_id FROM branch_reservations WHERE session_id = %s ORDER BY branch_id"
        ),
        "session_clear_generations": rows(
            "SELECT generation FROM session_clear_generations WHERE session_id = %s"
        ),
    }


async def _sdk_reads(sid: str) -> dict[str, Any]:
    from conversations.session import DjangoSession

    session = DjangoSession(session_id=sid)
    branches = await session.list_branches()
    out: dict[str, Any] = {
        "list_branches": [
            {k: v for k, v in b.items() if k not in ("created_at", "is_current")} for b in branches
        ],
        "get_session_usage": await session.get_session_usage(),
    }
    for b in branches:
        out[f"get_items({b['branch_id']})"] = await session.get_items(branch_id=b["branch_id"])
        out[f"get_turn_usage({b['branch_id']})"] = await session.get_turn_usage(
            branch_id=b["branch_id"]
        )
    return out


def compare_sessions(indexes: Sequence[int]) -> tuple[list[str], dict[str, int]]:
    """Differences between the bulk (``check-bulk/``) and DjangoSession (``check-djs/``) copies
    of sessions ``indexes``, and the rows compared per table."""
    from django.db import connection

    problems, counted = [], dict.fromkeys(COLUMNS, 0)
    with connection.cursor() as cursor:
        for i in indexes:
            ours = _session_rows(cursor, session_id("check-bulk/", i))
            theirs = _session_rows(cursor, session_id("check-djs/", i))
            for table, expected in theirs.items():
                counted[table] += len(expected)
                got = ours[table]
                if not expected:
                    problems.append(f"session {i}: DjangoSession wrote no {table} rows")
                if len(got) != len(expected):
                    problems.append(
                        f"session {i} {table}: {len(got)} bulk rows, {len(expected)} "
                        "from DjangoSession"
                    )
                for k, (a, b) in enumerate(zip(got, expected, strict=False)):
                    if a != b:
                        columns = [c for c in COLUMNS[table] if c not in ("id", "session_id")]
                        problems.append(
                            f"session {i} {table} row {k}:\n  bulk          {a}\n"
                            f"  DjangoSession {b}\n  ({', '.join(columns)})"
                        )
                        break
    for i in indexes:
        ours = asyncio.run(_sdk_reads(session_id("check-bulk/", i)))
        theirs = asyncio.run(_sdk_reads(session_id("check-djs/", i)))
        for name, expected in theirs.items():
            if ours.get(name) != expected:
                problems.append(f"session {i}: {name} differs:\n  bulk {ours.get(name)!r:.300}")
    return problems, counted


def role_check(url: str) -> int:
    """Bulk rows == DjangoSession rows, column by column; exit 2 on any difference."""
    _django(url)
    _migrate()
    from django.db import connections

    indexes = check_indexes()
    asyncio.run(djangosession_write(indexes, "check-djs/"))
    connections.close_all()
    bulk_write(open_sink(url, fast=False), indexes, "check-bulk/")
    problems, counted = compare_sessions(indexes)
    connections.close_all()
    result = {
        "sessions": len(indexes),
        "branched": sum(plan(i).fork_turn is not None for i in indexes),
        "rows": counted,
        "problems": problems,
    }
    print(json.dumps(result), flush=True)
    return 2 if problems else 0


def role_build(url: str, n: int) -> int:
    # No pooled SQLite connections (conversations/sqlite_pool.py): the build turns the journal
    # off, which needs the file to itself once Django has migrated it.
    os.environ["FORKVIEW_DB_POOL_SIZE"] = "0"
    _django(url)
    _migrate()
    started = time.perf_counter()

    def progress(done: int) -> None:
        if done % 20000 == 0:
            rate = done / (time.perf_counter() - started)
            print(f"    {done:,} / {n:,} sessions ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    totals = bulk_write(open_sink(url, fast=True), range(n), "", progress=progress)
    seconds = time.perf_counter() - started
    size = 0
    if not url.startswith(("postgres://", "postgresql://")):
        size = Path(url.removeprefix("sqlite:///")).stat().st_size
    print(json.dumps({"seconds": seconds, "rows": totals, "bytes": size}), flush=True)
    return 0


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, ru_maxrss's source
        return True
    except OSError:
        return False


def _rss_mb(field: str) -> float:
    """A ``/proc/self/status`` figure in MB (the peak falls back to ``getrusage``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def role_serve(url: str) -> int:
    """Answer requests from the orchestrator, one JSON line each, on the original stdout."""
    proto: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to stderr
    _django(url)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from conversations.permissions import VIEW_CODENAME
    from dashboard.links import compare_url, session_url, usage_url
    from dashboard.review import selectors

    settings.ALLOWED_HOSTS = ["testserver"]
    user, _ = get_user_model().objects.get_or_create(username="scale-bench")
    user.user_permissions.add(Permission.objects.get(codename=VIEW_CODENAME))
    client = Client()
    client.force_login(user)
    total_re = re.compile(r"(\d[\d,]*) conversations? recorded")

    def get(url: str) -> tuple[float, Any]:
        t0 = time.perf_counter()
        response = client.get(url)
        return (time.perf_counter() - t0) * 1000, response

    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        out: dict[str, Any] = {}
        if op == "info":
            sid = req["session"]
            out = {
                "home": reverse("home"),
                "sorts": list(selectors.SORTS),
                "default_sort": selectors.DEFAULT_SORT,
                "per_page": selectors.SESSIONS_PER_PAGE,
                "detail": session_url(sid, BRANCH),
                "compare": compare_url(sid, "main", BRANCH),
                "usage": usage_url(sid, BRANCH),
                "vendor": connection.vendor,
                "conn_max_age": connection.settings_dict.get("CONN_MAX_AGE"),
            }
        elif op == "get":
            times = []
            for _ in range(req.get("n", 1)):
                ms, response = get(req["url"])
                times.append(ms)
            body = response.content.decode("utf-8", "replace")
            found = total_re.search(body)
            out = {
                "ms": times,
                "status": response.status_code,
                "total": int(found.group(1).replace(",", "")) if found else None,
                "hits": body.count('<li class="hit"'),
                "bytes": len(body),
            }
        elif op == "queries":
            with CaptureQueriesContext(connection) as queries:
                client.get(req["url"])
            captured = [(float(x["time"]) * 1000, x["sql"]) for x in queries.captured_queries]
            out = {"queries": len(captured), "captured": sorted(captured, reverse=True)[:3]}
        elif op == "rss":  # in a fresh process: one request, then its peak
            before = _rss_mb("VmRSS")
            reset = _peak_reset()
            client.get(req["url"])
            out = {
                "before": before,
                "peak": _rss_mb("VmHWM"),
                "anon": _rss_mb("RssAnon"),
                "reset": reset,
            }
        proto.write(json.dumps(out) + "\n")
    return 0


# ---- The orchestrator ------------------------------------------------------------------------


class Server:
    """A ``--role serve`` child on one database."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "serve", "--db", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server on {req} died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _child(role: str, url: str, *extra: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--role", role, "--db", url, *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {"output": lines[-1]}
    result["returncode"] = proc.returncode
    return result


def _pg_admin(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@dataclass
class Variant:
    label: str
    kind: str  # list, search, session
    url: str
    rss: bool = False  # also measure its peak RSS


def variants(info: dict[str, Any], small: int) -> list[Variant]:
    """Every page variant timed: the list's sorts, filters and deep pages, search, one session."""
    home = info["home"]

    def q(**params: Any) -> str:
        return f"{home}?{urlencode(params)}" if params else home

    dates = {"from": DATE_FROM.isoformat(), "to": DATE_TO.isoformat()}
    deep = min(40, max(1, -(-small // info["per_page"])))
    out = [Variant("list, default sort", "list", q(), rss=True)]
    for key in info["sorts"]:
        for sort in (key, f"-{key}"):
            out.append(Variant(f"sort {sort}", "list", q(sort=sort)))
    out += [
        Variant(f"filter tool={COMMON_TOOL}", "list", q(tool=COMMON_TOOL)),
        Variant(f"filter tool={RARE_TOOL} (rare)", "list", q(tool=RARE_TOOL)),
        Variant("filter has branches", "list", q(branched=1)),
        Variant("filter date range (Jan 2025)", "list", q(**dates)),
        Variant("filter tool + has branches", "list", q(tool=COMMON_TOOL, branched=1)),
        Variant(
            "filter tool + branches + dates, sort -tokens",
            "list",
            q(tool=COMMON_TOOL, branched=1, sort="-tokens", **dates),
        ),
        Variant(f"filter cost >= ${COST_MIN}", "list", q(cost_min=COST_MIN)),
        Variant(
            f"filter cost >= ${COST_MIN} + tool, sort -cost",
            "list",
            q(cost_min=COST_MIN, tool=COMMON_TOOL, sort="-cost"),
        ),
        Variant(f"page {deep}, default sort", "list", q(page=deep)),
        Variant(f"page {deep}, sort title", "list", q(sort="title", page=deep)),
        Variant(f"page {deep}, filter tool", "list", q(tool=COMMON_TOOL, page=deep)),
        Variant(f"search rare word ({RARE_WORD})", "search", q(q=RARE_WORD), rss=True),
        Variant(f"search common word ({COMMON_WORD})", "search", q(q=COMMON_WORD), rss=True),
        Variant(
            "search rare + tool + has branches",
            "search",
            q(q=RARE_WORD, tool=COMMON_TOOL, branched=1),
        ),
        Variant("search common + date range", "search", q(q=COMMON_WORD, **dates)),
        Variant(f"session page (branch {BRANCH})", "session", info["detail"]),
        Variant(f"compare main vs {BRANCH}", "session", info["compare"]),
        Variant(f"usage.json ({BRANCH})", "session", info["usage"]),
    ]
    return out


def expected_total(url: str, n: int, counts: dict[str, int]) -> int | None:
    """What the list's count must say for ``url`` (None: not a list page)."""
    params = dict(p.split("=", 1) for p in urlsplit(url).query.split("&") if "=" in p)
    keys = []
    if "tool" in params:
        keys.append("rare_tool" if params["tool"] == RARE_TOOL else "tool")
    if params.get("branched") == "1":
        keys.append("branched")
    if "from" in params:
        keys.append("dates")
    if "cost_min" in params:
        keys.append("cost")
    if not keys:
        return n
    return counts["+".join(sorted(keys))]


def count_plans(n: int) -> dict[str, int]:
    """How many of sessions 0..n-1 each filter (and each combination used) selects."""
    preds = filter_predicates()
    combos = [["tool"], ["rare_tool"], ["branched"], ["dates"], ["branched", "tool"]]
    combos += [["branched", "dates", "tool"], ["branched", "rare_tool"], ["dates", "tool"]]
    combos += [["cost"], ["cost", "tool"]]
    counts = dict.fromkeys(("+".join(c) for c in combos), 0)
    for i in range(n):
        p = plan(i)
        hit = {k for k, pred in preds.items() if pred(p)}
        for combo in combos:
            if hit.issuperset(combo):
                counts["+".join(combo)] += 1
    return counts


def query_kind(sql: str) -> str:
    """A few words naming a review page's query (for the where-the-time-goes table)."""
    flat = " ".join(sql.split())
    if "DISTINCT" in flat and "tool_name" in flat.split(" FROM ", 1)[0]:
        return "tool names (SELECT DISTINCT tool_name)"
    if flat.startswith('SELECT COUNT(*) AS "__count"'):
        return "list count"
    if " LIKE " in flat and "agent_messages" in flat.split(" WHERE ", 1)[0]:
        return "search (LIKE over messages)"
    if "to_tsvector" in flat or "plainto_tsquery" in flat or "websearch_to_tsquery" in flat:
        return "search (full text)"
    if " MATCH " in flat:
        return "search (FTS5)"
    if '"message_id" IN' in flat:
        return "search placements"
    if flat.startswith('SELECT "agent_sessions"."session_id"'):
        return "list rows" + (" (OFFSET)" if " OFFSET " in flat else "")
    table = re.search(r'FROM "?(\w+)', flat)
    return f"other ({table.group(1) if table else flat[:30]})"


def fmt_ms(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def print_table(headers: list[str], rows: list[list[str]], *, text_last: bool = False) -> None:
    """Columns aligned; the first (and with ``text_last`` the last) left, numbers right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    left = {0, len(headers) - 1} if text_last else {0}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if k in left else c.rjust(w)
            for k, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print("-" * len(line(headers)))
    for r in rows:
        print(line(r))


def orchestrate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    small, large = (200, 2000) if args.quick else (args.small, args.large)
    if not 0 < small < large:
        raise SystemExit("need 0 < --small < --large")
    if args.requests < 1:
        raise SystemExit("--requests must be at least 1")
    pg = args.postgres
    if pg and not pg.startswith(("postgres://", "postgresql://")):
        raise SystemExit("--postgres must be a postgres:// URL")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="forkview-scale-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    urls: dict[str, str] = {}
    servers: dict[int, Server] = {}
    exit_code = 0
    try:
        if pg:
            suffix = f"{os.getpid()}_{int(time.time())}"
            names = {k: f"forkview_scale_bench_{k}_{suffix}" for k in ("check", "small", "large")}
            _pg_admin(pg, [f'CREATE DATABASE "{name}"' for name in names.values()])
            parts = urlsplit(pg)
            urls = {k: urlunsplit(parts._replace(path=f"/{v}")) for k, v in names.items()}
        else:
            check_file = workdir / "check.sqlite3"
            for extra in ("", "-wal", "-shm"):
                Path(f"{check_file}{extra}").unlink(missing_ok=True)
            urls = {
                "check": f"sqlite:///{check_file}",
                "small": f"sqlite:///{workdir / f'scale_{small}_v{DATA_VERSION}.sqlite3'}",
                "large": f"sqlite:///{workdir / f'scale_{large}_v{DATA_VERSION}.sqlite3'}",
            }
        vendor = "postgresql" if pg else "sqlite"
        print(f"== Scale bench ({vendor}): {small:,} vs {large:,} sessions ==", flush=True)

        # 1. The bulk writer against DjangoSession.
        t0 = time.perf_counter()
        check = _child("check", urls["check"])
        rows = ", ".join(f"{n} {table}" for table, n in check.get("rows", {}).items())
        print(
            f"\n-- check: bulk rows vs DjangoSession ({check.get('sessions')} sessions, "
            f"{check.get('branched')} branched; {rows}) in {time.perf_counter() - t0:.1f} s"
        )
        if check["returncode"] != 0 or check.get("problems"):
            for problem in check.get("problems") or ["the check process failed"]:
                print(f"  DIFFERS: {problem}")
            print("bulk-built data does not match what DjangoSession writes: stopping")
            return 2
        print("  every column equal (ids and timestamps aside), and the SDK reads agree: OK")

        # 2. Build both databases.
        print("\n-- build (bulk SQL)", flush=True)
        for key, n in (("small", small), ("large", large)):
            marker = Path(urls[key].removeprefix("sqlite:///") + ".done")
            if not pg and marker.exists():
                print(f"  {n:>9,} sessions: reused {marker.with_suffix('')}")
                continue
            if not pg:
                for extra in ("", "-wal", "-shm"):
                    Path(urls[key].removeprefix("sqlite:///") + extra).unlink(missing_ok=True)
            result = _child("build", urls[key], "--sessions", str(n))
            if result["returncode"] != 0 or "rows" not in result:
                print(f"build of {n} sessions failed")
                return 1
            if not pg:
                marker.write_text(json.dumps(result))
            r = result["rows"]
            per_k = result["seconds"] / n * 1000
            size = f", {result['bytes'] / 2**20:,.0f} MB" if result["bytes"] else ""
            print(
                f"  {n:>9,} sessions: {result['seconds']:.1f} s ({per_k:.2f} s per 1,000 "
                f"sessions); {r['agent_messages']:,} messages, {r['message_structure']:,} "
                f"structure rows, {r['turn_usage']:,} usage rows{size}",
                flush=True,
            )

        # 3. Measure, alternating.
        target = next(i for i in range(small) if plan(i).fork_turn is not None)
        for n, key in ((small, "small"), (large, "large")):
            servers[n] = Server(urls[key])
        info = servers[small].ask(op="info", session=session_id("", target))
        counts = {small: count_plans(small), large: count_plans(large)}
        pages = variants(info, small)
        sizes = (small, large)
        for page in pages:  # warm-up: templates, caches, the first connection
            for n in sizes:
                servers[n].ask(op="get", url=page.url)
        times: dict[tuple[str, int], list[float]] = {(p.label, n): [] for p in pages for n in sizes}
        last: dict[tuple[str, int], dict[str, Any]] = {}
        print(f"\n-- measuring {len(pages)} pages x {args.requests} requests x 2 sizes", flush=True)
        for r in range(args.requests):
            for k, page in enumerate(pages):
                for n in sizes if (r + k) % 2 == 0 else sizes[::-1]:
                    answer = servers[n].ask(op="get", url=page.url)
                    times[page.label, n] += answer["ms"]
                    last[page.label, n] = answer
        queries = {
            (p.label, n): servers[n].ask(op="queries", url=p.url) for p in pages for n in sizes
        }
        conn_max_age = info.get("conn_max_age")
        for server in servers.values():
            server.close()
        rss = {}
        for page in pages:
            for n, key in ((small, "small"), (large, "large")):
                if page.rss:  # a fresh process each: what one request costs from a cold start
                    fresh = Server(urls[key])
                    try:
                        rss[page.label, n] = fresh.ask(op="rss", url=page.url)
                    finally:
                        fresh.close()
    finally:
        for server in servers.values():
            server.close()
        if names and not args.keep:
            _pg_admin(pg, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()])
        elif names:
            print(f"kept PostgreSQL databases: {', '.join(names.values())}")
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not pg:
            print(f"SQLite files kept in {workdir}")

    # 4. Report.
    print(
        f"\n== Review pages, server time ({vendor}; median of {args.requests} warm requests, "
        f"both sizes alternating; CONN_MAX_AGE={conn_max_age}) =="
    )
    table, checks = [], []
    for page in pages:
        s_ms = statistics.median(times[page.label, small])
        l_ms = statistics.median(times[page.label, large])
        ratio = l_ms / s_ms if s_ms else float("inf")
        statuses = {last[page.label, n]["status"] for n in sizes}
        notes = []
        if statuses != {200}:
            notes.append(f"HTTP {sorted(statuses)}")
            exit_code = 1
        if page.kind in ("list", "search"):
            wrong = []
            for n in sizes:
                want = expected_total(page.url, n, counts[n])
                got = last[page.label, n]["total"]
                if got != want:
                    wrong.append(f"{n}: shows {got}, expected {want}")
            notes.append("count exact" if not wrong else "COUNT WRONG " + "; ".join(wrong))
            if wrong:
                exit_code = 1
        if page.kind == "search":
            notes.append("hits " + "/".join(str(last[page.label, n]["hits"]) for n in sizes))
        ok = ratio <= TARGET and statuses == {200}
        checks.append((f"{page.label}: {ratio:.2f}x", ok))
        table.append(
            [
                page.label,
                fmt_ms(s_ms),
                fmt_ms(l_ms),
                f"{ratio:.2f}x",
                f"{queries[page.label, small]['queries']}/{queries[page.label, large]['queries']}",
                "PASS" if ok else "FAIL",
                ", ".join(notes),
            ]
        )
    print_table(
        ["page", f"{small:,} ms", f"{large:,} ms", "ratio", "queries", f"<= {TARGET}x", "notes"],
        table,
        text_last=True,
    )
    print(
        f"\n-- where the time goes at {large:,} sessions: the slowest queries of one request "
        "(ms, Django's query log;\n   on SQLite that is the time to the first row: the rest "
        "is computed while fetching)"
    )
    slow = []
    for page in pages:
        captured = queries[page.label, large]["captured"]
        spent = ", ".join(f"{ms:.0f} {query_kind(sql)}" for ms, sql in captured if ms >= 1)
        slow.append([page.label, spent or "-"])
    print_table(["page", "slowest queries"], slow, text_last=True)
    if rss:
        print(
            "\n-- memory of one request in a fresh server process (MB): peak RSS (VmHWM, reset "
            "after start-up;\n   includes SQLite's memory-mapped file pages), its growth over "
            "the process before the request,\n   and anonymous (heap) RSS after it"
        )
        rows_rss = []
        for page in pages:
            if not page.rss:
                continue
            cells = [page.label]
            for n in sizes:
                m = rss[page.label, n]
                cells += [f"{m['peak']:.0f}", f"+{m['peak'] - m['before']:.0f}", f"{m['anon']:.0f}"]
            rows_rss.append(cells)
        heads = [f"{n:,} {h}" for n in sizes for h in ("peak", "growth", "heap")]
        print_table(["page", *heads], rows_rss)
        if not all(m["reset"] for m in rss.values()):
            print("(peak not resettable here: ru_maxrss since the process started)")
    print("\n== Targets ==")
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}")
    passed = sum(ok for _, ok in checks)
    print(f"{passed}/{len(checks)} targets met")
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return exit_code


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 / 2,000 sessions (smoke run)")
    parser.add_argument("--small", type=int, default=1000, help="sessions in the small database")
    parser.add_argument("--large", type=int, default=100_000, help="sessions in the large one")
    parser.add_argument("--requests", type=int, default=5, help="timed requests per page and size")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_DATABASE_URL", ""),
        help="PostgreSQL URL (default: $BENCH_DATABASE_URL); scratch databases are created there",
    )
    parser.add_argument(
        "--workdir", default="", help="SQLite files go (and stay, reused next time) here"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases")
    parser.add_argument("--role", default="", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "check":
        return role_check(args.db)
    if args.role == "build":
        return role_build(args.db, args.sessions)
    if args.role == "serve":
        return role_serve(args.db)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
