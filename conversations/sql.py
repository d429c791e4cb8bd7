"""The SQL of ``DjangoSession``'s hot paths, written once per database vendor.

Why not QuerySets here: building and compiling a QuerySet costs ~0.1-0.2 ms, and an append
needs six statements, so the ORM alone would make every append 2-3x slower than the SDK's
sqlite3 code (measured; see ``bench/session_bench.py``). The statements below run through
Django's own connection (its transactions, its database aliases, its query logging), use
the models' table names, and stay in this one module. Rare operations (clear, delete,
switch) use the ORM in ``writes.py``. Only ``writes.py`` and ``session.py`` import this module.

Every statement filters ``message_structure`` on ``(session_id, branch_id)`` and orders by
``sequence_number``, so it walks the SDK's ``idx_structure_branch_seq`` /
``idx_structure_turn`` indexes and costs the same whatever else the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import connections

from .models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    SessionClearGeneration,
    TurnUsage,
)


@dataclass(frozen=True)
class SessionSQL:
    """Statements for one database vendor (``%s`` placeholders, Django style)."""

    lock_generation: str
    bump_generation: str
    read_generation: str
    writer_lock: str
    writer_lock_prelude: str | None
    touch_session: str
    insert_messages_head: str
    insert_message_row: str
    insert_messages_tail: str
    next_numbers: str
    insert_structure: str
    reserve_branch: str
    items_all: str
    items_newest: str
    current_turn: str
    generation_and_turn: str | None
    delete_turn_usage: str
    insert_turn_usage: str
    replace_turn_usage: str | None
    upsert_turn_usage: str
    turn_usage_all: str
    turn_usage_one: str
    branch_summaries: str
    user_turns: str
    copy_prefix: str
    user_message_at_turn: str
    max_sequence: str
    session_branches: str
    session_usage: str
    branch_usage: str
    pop_newest: str
    delete_structure_row: str
    delete_message_if_unreferenced: str
    delete_usage_if_turn_empty: str
    #: A turn's annotations go with it, on the same condition as its usage.
    delete_annotations_if_turn_empty: str
    #: PostgreSQL: one statement for a whole append / pop (the writer lock, the branch the
    #: mutation acts on, every row), by the server-side functions of migration 0007.
    append_function: str | None
    pop_function: str | None


@cache
def _build(vendor: str, immediate: bool = False) -> SessionSQL:
    """The statements for ``vendor``; ``immediate``: SQLite whose transactions BEGIN IMMEDIATE."""
    ms = MessageStructure._meta.db_table
    am = AgentMessage._meta.db_table
    ags = AgentSession._meta.db_table
    tu = TurnUsage._meta.db_table
    br = BranchReservation._meta.db_table
    scg = SessionClearGeneration._meta.db_table
    # A str parameter lands in a jsonb column on PostgreSQL through an explicit cast.
    json_param = "CAST(%s AS jsonb)" if vendor == "postgresql" else "%s"
    # created_at as the SDK's UTC text, without Django's per-row datetime parsing on SQLite.
    if vendor == "postgresql":

        def ts(column: str) -> str:
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
    else:

        def ts(column: str) -> str:
            return f"CAST({column} AS TEXT)"

    # One branch, newest row first, through idx_structure_branch_seq only. With
    # "branch_id = %s" PostgreSQL may walk idx_structure_session_seq backwards instead and
    # filter on the branch, reading every newer row of every other branch first: after a fork,
    # all the copied rows (7,992 in the bench's 8,000-item session; ~2-5 ms per statement).
    # A one-value range keeps branch_id in the sort key, which only the three-column index
    # provides, on both vendors. These statements take the branch id twice.
    one_branch = "session_id = %s AND branch_id >= %s AND branch_id <= %s"
    newest_first = "ORDER BY branch_id DESC, sequence_number DESC"
    # Joining messages on the session too lets PostgreSQL read only this session's messages
    # (idx_agent_messages_session_id) instead of hashing the whole table (a 32,000-item
    # neighbourhood made get_items() 1.4x and get_conversation_turns 4x slower).
    join_messages = f"JOIN {am} m ON m.id = s.message_id AND m.session_id = s.session_id"

    upsert_generation = (
        f"INSERT INTO {scg} (session_id, generation) VALUES (%s, {{start}}) "
        f"ON CONFLICT (session_id) DO UPDATE SET generation = {scg}.generation {{step}} "
        "RETURNING generation"
    )
    # DjangoSession's writes start with writer_lock, which serialises the session's writers
    # and returns its clear generation. The upsert's row lock does that on PostgreSQL (and on
    # SQLite opened with DEFERRED transactions, where it takes the file's write lock at once).
    # An IMMEDIATE transaction holds that lock from BEGIN, so there an INSERT OR IGNORE (the
    # SDK's own: the row exists, as the SDK's always does) and a plain read do, and a write no
    # longer rewrites the row. lock_generation always upserts (importers rely on its result).
    read_or_zero = f"SELECT COALESCE((SELECT generation FROM {scg} WHERE session_id = %s), 0)"
    insert_usage = (
        f"{{verb}} INTO {tu} (session_id, branch_id, user_turn_number, requests, "
        "input_tokens, output_tokens, total_tokens, input_tokens_details, "
        f"output_tokens_details) VALUES (%s, %s, %s, %s, %s, %s, %s, {json_param}, "
        f"{json_param})"
    )
    usage_totals = (
        "SELECT CAST(SUM(requests) AS BIGINT), CAST(SUM(input_tokens) AS BIGINT), "
        "CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(total_tokens) AS BIGINT), COUNT(*) "
        f"FROM {tu} WHERE session_id = %s"
    )
    postgresql = vendor == "postgresql"
    return SessionSQL(
        session_usage=usage_totals,
        branch_usage=usage_totals + " AND branch_id = %s",
        # pop: the branch's newest row and its message (NULL if missing), one index entry.
        pop_newest=(
            f"SELECT s.id, s.message_id, s.user_turn_number, m.message_data FROM {ms} s "
            f"LEFT JOIN {am} m ON m.id = s.message_id "
            "WHERE s.session_id = %s AND s.branch_id >= %s AND s.branch_id <= %s "
            "ORDER BY s.branch_id DESC, s.sequence_number DESC LIMIT 1"
        ),
        delete_structure_row=f"DELETE FROM {ms} WHERE id = %s",
        # A message goes with its session's last reference (the message_id index: PostgreSQL's
        # from the SDK's DDL, SQLite's from migration 0007).
        delete_message_if_unreferenced=(
            f"DELETE FROM {am} WHERE id = %s AND session_id = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {ms} WHERE message_id = %s AND session_id = %s)"
        ),
        delete_usage_if_turn_empty=(
            f"DELETE FROM {tu} WHERE session_id = %s AND branch_id = %s "
            "AND user_turn_number = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {ms} WHERE session_id = %s AND branch_id = %s "
            "AND user_turn_number = %s)"
        ),
        delete_annotations_if_turn_empty=(
            "DELETE FROM forkview_annotations WHERE session_id = %s AND branch_id = %s "
            "AND turn = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {ms} WHERE session_id = %s AND branch_id = %s "
            "AND user_turn_number = %s)"
        ),
        append_function=(
            "SELECT forkview_append(%s, %s, CAST(%s AS bigint), CAST(%s AS bigint), %s, "
            "CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS text[]), CAST(%s AS boolean[]))"
            if postgresql
            else None
        ),
        pop_function=(
            "SELECT generation, item FROM forkview_pop(%s, %s, CAST(%s AS bigint), "
            "CAST(%s AS bigint), %s)"
            if postgresql
            else None
        ),
        lock_generation=upsert_generation.format(start=0, step=""),
        bump_generation=upsert_generation.format(start=1, step="+ 1"),
        read_generation=f"SELECT generation FROM {scg} WHERE session_id = %s",
        writer_lock=read_or_zero if immediate else upsert_generation.format(start=0, step=""),
        writer_lock_prelude=(
            f"INSERT OR IGNORE INTO {scg} (session_id, generation) VALUES (%s, 0)"
            if immediate
            else None
        ),
        touch_session=(
            f"INSERT INTO {ags} (session_id) VALUES (%s) "
            "ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP"
        ),
        insert_messages_head=f"INSERT INTO {am} (session_id, message_data) VALUES ",
        insert_message_row=f"(%s, {json_param})",
        insert_messages_tail=" RETURNING id",
        # The branch's newest row carries its current turn numbers: they never decrease along
        # a branch's sequence (every writer keeps that), so this reads one index entry where
        # MAX() over the branch would scan it (and PostgreSQL, before its first ANALYZE, does).
        next_numbers=(
            f"SELECT (SELECT MAX(sequence_number) FROM {ms} WHERE session_id = %s), "
            "t.user_turn_number, t.branch_turn_number "
            "FROM (SELECT 1) AS one LEFT JOIN ("
            f"SELECT user_turn_number, branch_turn_number FROM {ms} "
            f"WHERE {one_branch} {newest_first} LIMIT 1) AS t ON 1 = 1"
        ),
        insert_structure=(
            f"INSERT INTO {ms} (session_id, message_id, branch_id, message_type, "
            "sequence_number, user_turn_number, branch_turn_number, tool_name) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        reserve_branch=(
            f"INSERT INTO {br} (session_id, branch_id) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ),
        # get_items: each row also carries the session's clear generation (an uncorrelated
        # subquery: evaluated once per statement), so a read of the current branch learns of
        # a clear by another instance in the same statement and snapshot as its items.
        items_all=(
            f"SELECT m.message_data, ({read_or_zero}) FROM {ms} s {join_messages} "
            "WHERE s.session_id = %s AND s.branch_id = %s ORDER BY s.sequence_number"
        ),
        items_newest=(
            f"SELECT m.message_data, ({read_or_zero}) FROM {ms} s {join_messages} "
            "WHERE s.session_id = %s AND s.branch_id >= %s AND s.branch_id <= %s "
            "ORDER BY s.branch_id DESC, s.sequence_number DESC LIMIT %s"
        ),
        current_turn=f"SELECT user_turn_number FROM {ms} WHERE {one_branch} {newest_first} LIMIT 1",
        # store_run_usage under an IMMEDIATE transaction (the lock is already held): the clear
        # generation and the branch's current turn in one statement; present is NULL if the
        # branch has no rows.
        generation_and_turn=(
            f"SELECT ({read_or_zero}), t.user_turn_number, t.present "
            "FROM (SELECT 1) AS one LEFT JOIN ("
            f"SELECT user_turn_number, 1 AS present FROM {ms} "
            f"WHERE {one_branch} {newest_first} LIMIT 1) AS t ON 1 = 1"
            if immediate
            else None
        ),
        delete_turn_usage=(
            f"DELETE FROM {tu} WHERE session_id = %s AND branch_id = %s AND user_turn_number = %s"
        ),
        insert_turn_usage=insert_usage.format(verb="INSERT"),
        # The SDK's own statement, on SQLite: one statement instead of DELETE + INSERT.
        replace_turn_usage=(
            insert_usage.format(verb="INSERT OR REPLACE") if vendor == "sqlite" else None
        ),
        # A staff edit of a turn's usage keeps the row (its id and created_at).
        upsert_turn_usage=insert_usage.format(verb="INSERT")
        + " ON CONFLICT (session_id, branch_id, user_turn_number) DO UPDATE SET "
        + ", ".join(
            f"{column} = excluded.{column}"
            for column in (
                "requests",
                "input_tokens",
                "output_tokens",
                "total_tokens",
                "input_tokens_details",
                "output_tokens_details",
            )
        ),
        turn_usage_all=(
            "SELECT user_turn_number, requests, input_tokens, output_tokens, total_tokens, "
            f"input_tokens_details, output_tokens_details FROM {tu} "
            "WHERE session_id = %s AND branch_id = %s ORDER BY user_turn_number"
        ),
        turn_usage_one=(
            "SELECT requests, input_tokens, output_tokens, total_tokens, "
            f"input_tokens_details, output_tokens_details FROM {tu} "
            "WHERE session_id = %s AND branch_id = %s AND user_turn_number = %s"
        ),
        # The session's clear generation rides along (list_branches needs it to resolve the
        # current branch): one statement instead of two. Takes the session id twice.
        branch_summaries=(
            "SELECT branch_id, COUNT(*), "
            "COUNT(CASE WHEN message_type = 'user' THEN 1 END), "
            f"{ts('MIN(created_at)')} AS first_at, "
            f"(SELECT generation FROM {scg} WHERE session_id = %s) "
            f"FROM {ms} WHERE session_id = %s GROUP BY branch_id ORDER BY first_at, branch_id"
        ),
        user_turns=(
            f"SELECT s.branch_turn_number, m.message_data, {ts('s.created_at')} FROM {ms} s "
            f"{join_messages} "
            "WHERE s.session_id = %s AND s.branch_id = %s AND s.message_type = 'user' "
            "ORDER BY s.branch_turn_number"
        ),
        copy_prefix=(
            f"INSERT INTO {ms} (session_id, message_id, branch_id, message_type, "
            "sequence_number, user_turn_number, branch_turn_number, tool_name) "
            "SELECT session_id, message_id, %s, message_type, "
            "%s + ROW_NUMBER() OVER (ORDER BY sequence_number), "
            "user_turn_number, branch_turn_number, tool_name "
            f"FROM {ms} WHERE session_id = %s AND branch_id = %s "
            "AND branch_turn_number < %s AND sequence_number < %s ORDER BY sequence_number"
        ),
        max_sequence=f"SELECT MAX(sequence_number) FROM {ms} WHERE session_id = %s",
        # The session's distinct branch ids by skipping through the (session, branch, ...)
        # index: one probe per branch, where SELECT DISTINCT reads every row of the session.
        session_branches=(
            "WITH RECURSIVE b(id) AS ("
            f"SELECT (SELECT MIN(branch_id) FROM {ms} WHERE session_id = %s) "
            "UNION ALL "
            f"SELECT (SELECT MIN(branch_id) FROM {ms} WHERE session_id = %s AND branch_id > b.id) "
            "FROM b WHERE b.id IS NOT NULL"
            ") SELECT id FROM b WHERE id IS NOT NULL"
        ),
        user_message_at_turn=(
            f"SELECT m.message_data, s.sequence_number FROM {ms} s "
            f"JOIN {am} m ON m.id = s.message_id "
            "WHERE s.session_id = %s AND s.branch_id = %s AND s.branch_turn_number = %s "
            "AND s.message_type = 'user' LIMIT 1"
        ),
    )


def statements(using: str) -> SessionSQL:
    """The statements for the database behind alias ``using``."""
    connection = connections[using]
    options = connection.settings_dict.get("OPTIONS") or {}
    immediate = str(options.get("transaction_mode", "")).upper() == "IMMEDIATE"
    return _build(connection.vendor, immediate and connection.vendor == "sqlite")
