"""Per-session summaries of the SDK's tables, kept current by the database itself.

The session list sorts, filters and counts sessions by figures that live in four SDK tables
(title = the first user message, turns, branches, tokens, tools used, last activity). Computed
per request they cost a scan of the whole database; kept in Forkview's own tables by
**triggers** they cost an index walk. Triggers, not Forkview's write path, because the SDK
itself (``AdvancedSQLiteSession`` on the same file) and plain SQL write these tables too: a
trigger fires for every writer.

Forkview's tables (created by migration ``0006``; the SDK's own tables are not altered):

``forkview_session_summaries``  one row per ``agent_sessions`` row: ``title_message_id`` /
    ``title_seq`` (the first user row by sequence number), ``title_key`` (its ``content``, cut to
    :data:`TITLE_KEY_LENGTH` characters: the sort key), ``turn_count`` (distinct user
    messages), ``branch_count`` (distinct branch ids with rows), ``total_tokens`` (the sum of
    ``turn_usage.total_tokens``), ``created_at`` / ``updated_at`` (copies) and ``day`` (the UTC
    date of ``updated_at``, ``''`` when it has none), ``branched`` (1 when more than one
    branch); an index per sort key and one over (branched, day).
``forkview_session_tools``      (session, tool name) of every tool a session's rows name,
    with the session's ``branched`` and ``day`` copied (an index over tool, branched and day
    finds the sessions of any filter combination with a tool).
``forkview_tools``              tool name -> number of sessions using it (the filter's options).
``forkview_list_counts``        (tool, branched, day) -> number of sessions; tool ``''`` counts
    every session. Every filter combination of the list (tool, has branches, date range) is an
    exact count summed over at most a few hundred of these rows.
``forkview_turn_tokens``        (session, branch, turn) -> the tokens counted for that usage row.
    SQLite's ``INSERT OR REPLACE`` (the SDK's usage statement) deletes the row it replaces
    without firing delete triggers (unless ``recursive_triggers`` is on, per connection), so
    the total is kept as "add the new value, subtract what this key had counted", which is
    right either way.

Every trigger is a row trigger with the same statements on both vendors. SQLite's AFTER row
triggers run as each row is written and see the rows written before it; on PostgreSQL an AFTER
row trigger runs after the whole statement (each would see every row of a multi-row insert), so
``message_structure`` gets BEFORE row triggers there, which see the earlier rows of the same
statement; the statements exclude the row itself by id, so they read the same either way.
PostgreSQL's TRUNCATE fires no row trigger: a statement trigger on each SDK table recomputes.
Statements that may meet a hostile row never raise (``json_valid`` before ``json_extract``):
a trigger that failed would fail the SDK's own write.

:func:`rebuild` recomputes every summary from the SDK's tables (the migration's backfill);
:func:`recomputed` and :func:`kept` let the tests compare the two after every operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from conversations.models import MODEL_SPAN_KINDS

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "TABLES",
    "TITLE_KEY_LENGTH",
    "create",
    "create_costs",
    "drop",
    "drop_costs",
    "kept",
    "rebuild",
    "recomputed",
]

#: Characters of the first user message kept as the title sort key.
TITLE_KEY_LENGTH = 200

SUMMARIES = "forkview_session_summaries"
SESSION_TOOLS = "forkview_session_tools"
TOOLS = "forkview_tools"
COUNTS = "forkview_list_counts"
TURN_TOKENS = "forkview_turn_tokens"
TABLES = (SUMMARIES, SESSION_TOOLS, TOOLS, COUNTS, TURN_TOKENS)

#: Sort keys of the list, each with its index (``<key>, session_id``).
SORT_COLUMNS = (
    "title_key",
    "turn_count",
    "branch_count",
    "total_tokens",
    "created_at",
    "updated_at",
)

_TABLES_SQL = {
    "sqlite": [
        f"""CREATE TABLE IF NOT EXISTS {SUMMARIES} (
            session_id TEXT PRIMARY KEY,
            title_message_id INTEGER,
            title_seq INTEGER,
            title_key TEXT NOT NULL DEFAULT '',
            turn_count INTEGER NOT NULL DEFAULT 0,
            branch_count INTEGER NOT NULL DEFAULT 0,
            branched INTEGER NOT NULL DEFAULT 0,
            tools TEXT NOT NULL DEFAULT '',
            total_tokens INTEGER NOT NULL DEFAULT 0,
            created_at TIMESTAMP,
            updated_at TIMESTAMP,
            day TEXT NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE IF NOT EXISTS {SESSION_TOOLS} (
            session_id TEXT NOT NULL,
            tool_name TEXT NOT NULL,
            branched INTEGER NOT NULL DEFAULT 0,
            day TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (session_id, tool_name)
        ) WITHOUT ROWID""",
        f"""CREATE TABLE IF NOT EXISTS {TOOLS} (
            tool_name TEXT PRIMARY KEY,
            sessions INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID""",
        f"""CREATE TABLE IF NOT EXISTS {COUNTS} (
            tool TEXT NOT NULL,
            branched INTEGER NOT NULL,
            day TEXT NOT NULL,
            n INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (tool, branched, day)
        ) WITHOUT ROWID""",
        f"""CREATE TABLE IF NOT EXISTS {TURN_TOKENS} (
            session_id TEXT NOT NULL,
            branch_id TEXT NOT NULL,
            user_turn_number INTEGER NOT NULL,
            total_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (session_id, branch_id, user_turn_number)
        ) WITHOUT ROWID""",
        # The SDK's DDL has no index on message_structure.message_id (PostgreSQL's schema
        # has one): "is this message referenced elsewhere", search placements and the
        # foreign key's cascade all look rows up by it.
        "CREATE INDEX IF NOT EXISTS idx_structure_message_id ON message_structure (message_id)",
    ],
    "postgresql": [
        f"""CREATE TABLE IF NOT EXISTS {SUMMARIES} (
            session_id text PRIMARY KEY,
            title_message_id bigint,
            title_seq integer,
            title_key text NOT NULL DEFAULT '',
            turn_count integer NOT NULL DEFAULT 0,
            branch_count integer NOT NULL DEFAULT 0,
            branched integer NOT NULL DEFAULT 0,
            tools text NOT NULL DEFAULT '',
            total_tokens bigint NOT NULL DEFAULT 0,
            created_at timestamptz,
            updated_at timestamptz,
            day text NOT NULL DEFAULT ''
        )""",
        f"""CREATE TABLE IF NOT EXISTS {SESSION_TOOLS} (
            session_id text NOT NULL,
            tool_name text NOT NULL,
            branched integer NOT NULL DEFAULT 0,
            day text NOT NULL DEFAULT '',
            PRIMARY KEY (session_id, tool_name)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {TOOLS} (
            tool_name text PRIMARY KEY,
            sessions integer NOT NULL DEFAULT 0
        )""",
        f"""CREATE TABLE IF NOT EXISTS {COUNTS} (
            tool text NOT NULL,
            branched integer NOT NULL,
            day text NOT NULL,
            n bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tool, branched, day)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {TURN_TOKENS} (
            session_id text NOT NULL,
            branch_id text NOT NULL,
            user_turn_number integer NOT NULL,
            total_tokens bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (session_id, branch_id, user_turn_number)
        )""",
    ],
}

#: Each sort key's index. Descending with NULLs last / ascending with NULLs first (the list's
#: two orders) is one index walk either way: SQLite puts NULLs first in an ascending index;
#: PostgreSQL's index is declared in the descending order.
_SORT_INDEX = {
    "sqlite": "CREATE INDEX IF NOT EXISTS fv_summary_{c} ON " + SUMMARIES + " ({c}, session_id)",
    "postgresql": "CREATE INDEX IF NOT EXISTS fv_summary_{c} ON "
    + SUMMARIES
    + " ({c} DESC NULLS LAST, session_id DESC)",
}

_INDEXES_SQL = [
    # The filters' own indexes, for a filter that selects few sessions (see the selector).
    # "Does another row of the session name this tool?" (only rows that name one).
    "CREATE INDEX IF NOT EXISTS fv_structure_tool ON message_structure (session_id, tool_name) "
    "WHERE tool_name IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS fv_summary_filters ON {SUMMARIES} (branched, day, session_id)",
    f"CREATE INDEX IF NOT EXISTS fv_session_tools_filters ON {SESSION_TOOLS} "
    "(tool_name, branched, day, session_id)",
]


# ---- Vendor expressions ------------------------------------------------------------------------


def _day(vendor: str, column: str) -> str:
    """The UTC date of a timestamp column as ``YYYY-MM-DD`` text, ``''`` when it has none."""
    if vendor == "sqlite":
        return f"COALESCE(date({column}), '')"
    return f"COALESCE(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '')"


def _title(vendor: str, data: str) -> str:
    """The title sort key of a message's stored JSON: its ``content``, cut (never an error:
    a trigger that raised would fail the SDK's own insert)."""
    if vendor == "sqlite":
        return (
            f"COALESCE(CASE WHEN json_valid({data}) THEN "
            f"substr(json_extract({data}, '$.content'), 1, {TITLE_KEY_LENGTH}) END, '')"
        )
    return f"COALESCE(left({data} ->> 'content', {TITLE_KEY_LENGTH}), '')"


def tool_token(vendor: str, name: str) -> str:
    """SQL for a tool name's token in ``tools``: ``|`` + the hex of its UTF-8 + ``|`` (hex has
    no ``|``, so a token is found only where it is whole: the filter's check is exact)."""
    if vendor == "sqlite":
        return f"('|' || hex({name}) || '|')"
    return f"('|' || upper(encode(convert_to({name}, 'UTF8'), 'hex')) || '|')"


def _branched(column: str) -> str:
    return f"CASE WHEN {column} > 1 THEN 1 ELSE 0 END"


# ---- Set statements (``{sessions}``: a condition on a ``session_id`` column named s_id) --------
#
# Each statement names its session column ``s_id`` through a subquery alias, so the same text
# serves one session (a trigger: ``s_id = NEW.session_id``) and all of them (the backfill).


def _unbuild_one(vendor: str, sid: str) -> list[str]:
    """Remove session ``sid``'s summary and what it counted."""
    return [
        _count_add(vendor, sid, -1),
        f"""UPDATE {TOOLS} SET sessions = sessions - 1
            WHERE tool_name IN (SELECT tool_name FROM {SESSION_TOOLS} WHERE session_id = {sid})""",
        f"""DELETE FROM {TOOLS} WHERE sessions <= 0
            AND tool_name IN (SELECT tool_name FROM {SESSION_TOOLS} WHERE session_id = {sid})""",
        f"DELETE FROM {SESSION_TOOLS} WHERE session_id = {sid}",
        f"DELETE FROM {TURN_TOKENS} WHERE session_id = {sid}",
        f"DELETE FROM {SUMMARIES} WHERE session_id = {sid}",
    ]


def _build(vendor: str, where: str, sid: str | None = None) -> list[str]:
    """Compute the summaries of the sessions ``where`` selects (``{s_id}``: the session column)
    from the SDK's tables; ``sid``: the one session it selects (a trigger), counted per session."""
    first_user = (
        "(SELECT {col} FROM message_structure f WHERE f.session_id = a.session_id "
        "AND f.message_type = 'user' ORDER BY f.sequence_number, f.id LIMIT 1)"
    )
    summarised = "EXISTS (SELECT 1 FROM " + SUMMARIES + " x WHERE x.session_id = {col})"
    counts = (
        _count_add(vendor, sid, 1)
        if sid
        else f"""INSERT INTO {COUNTS} (tool, branched, day, n)
            SELECT t.tool, {_branched("s.branch_count")}, s.day, COUNT(*)
            FROM {SUMMARIES} s
            JOIN (SELECT session_id AS s_id, tool_name AS tool FROM {SESSION_TOOLS}
                  UNION ALL SELECT session_id, '' FROM {SUMMARIES}) t ON t.s_id = s.session_id
            WHERE {where.format(s_id="s.session_id")}
            GROUP BY t.tool, {_branched("s.branch_count")}, s.day
            ON CONFLICT (tool, branched, day) DO UPDATE SET n = {COUNTS}.n + excluded.n"""
    )
    return [
        f"""INSERT INTO {SUMMARIES} (session_id, title_message_id, title_seq, turn_count,
                branch_count, total_tokens, created_at, updated_at, day)
            SELECT a.session_id,
                {first_user.format(col="f.message_id")},
                {first_user.format(col="f.sequence_number")},
                (SELECT COUNT(DISTINCT m.message_id) FROM message_structure m
                 WHERE m.session_id = a.session_id AND m.message_type = 'user'),
                (SELECT COUNT(DISTINCT m.branch_id) FROM message_structure m
                 WHERE m.session_id = a.session_id),
                (SELECT COALESCE(SUM(COALESCE(u.total_tokens, 0)), 0) FROM turn_usage u
                 WHERE u.session_id = a.session_id),
                a.created_at, a.updated_at, {_day(vendor, "a.updated_at")}
            FROM agent_sessions a WHERE {where.format(s_id="a.session_id")}""",
        f"""UPDATE {SUMMARIES} SET branched = {_branched("branch_count")}
            WHERE branch_count > 1 AND {where.format(s_id="session_id")}""",
        f"""UPDATE {SUMMARIES} SET title_key = COALESCE((
                SELECT {_title(vendor, "m.message_data")} FROM agent_messages m
                WHERE m.id = {SUMMARIES}.title_message_id), '')
            WHERE title_message_id IS NOT NULL AND {where.format(s_id="session_id")}""",
        f"""INSERT INTO {SESSION_TOOLS} (session_id, tool_name, branched, day)
            SELECT m.session_id, m.tool_name, MIN(x.branched), MIN(x.day)
            FROM message_structure m JOIN {SUMMARIES} x ON x.session_id = m.session_id
            WHERE {where.format(s_id="m.session_id")}
              AND m.tool_name IS NOT NULL AND m.tool_name <> ''
            GROUP BY m.session_id, m.tool_name""",
        f"""UPDATE {SUMMARIES} SET tools = COALESCE((
                SELECT {"group_concat" if vendor == "sqlite" else "string_agg"}(
                    {tool_token(vendor, "st.tool_name")}, '')
                FROM {SESSION_TOOLS} st WHERE st.session_id = {SUMMARIES}.session_id), '')
            WHERE {where.format(s_id="session_id")}""",
        f"""INSERT INTO {TOOLS} (tool_name, sessions)
            SELECT st.tool_name, COUNT(*) FROM {SESSION_TOOLS} st
            WHERE {where.format(s_id="st.session_id")} GROUP BY st.tool_name
            ON CONFLICT (tool_name) DO UPDATE
            SET sessions = {TOOLS}.sessions + excluded.sessions""",
        f"""INSERT INTO {TURN_TOKENS} (session_id, branch_id, user_turn_number, total_tokens)
            SELECT u.session_id, u.branch_id, u.user_turn_number, COALESCE(u.total_tokens, 0)
            FROM turn_usage u WHERE {where.format(s_id="u.session_id")}
              AND {summarised.format(col="u.session_id")}
            ON CONFLICT (session_id, branch_id, user_turn_number) DO NOTHING""",
        counts,
    ]


def _count_add(vendor: str, sid: str, sign: int, *, tool: str | None = None, when: str = "") -> str:
    """Add ``sign`` to the list counts of session ``sid`` as its summary stands now: for each
    tool it uses and ``''`` (or only for ``tool``)."""
    tools = (
        f"SELECT {tool} AS tool"
        if tool
        else f"SELECT tool_name AS tool FROM {SESSION_TOOLS} WHERE session_id = {sid} "
        "UNION ALL SELECT ''"
    )
    return f"""INSERT INTO {COUNTS} (tool, branched, day, n)
        SELECT t.tool, {_branched("s.branch_count")}, s.day, {sign}
        FROM {SUMMARIES} s, ({tools}) t
        WHERE s.session_id = {sid} {when}
        ORDER BY 1
        ON CONFLICT (tool, branched, day) DO UPDATE SET n = {COUNTS}.n + excluded.n"""


def _tool_gone(vendor: str, sid: str, tool: str, row_id: str) -> list[str]:
    """Structure row ``row_id`` naming ``tool`` went: if no other row of the session names it
    (``fv_structure_tool``, a partial index, answers), forget the pair.

    Existence, not a per-pair row count: on PostgreSQL a count updated once per row would
    grow a chain of row versions within one transaction (a branch copy of thousands of rows
    would slow down quadratically)."""
    gone = (
        f"NOT EXISTS (SELECT 1 FROM message_structure WHERE session_id = {sid} "
        f"AND tool_name = {tool} AND id <> {row_id}) "
        f"AND EXISTS (SELECT 1 FROM {SESSION_TOOLS} WHERE session_id = {sid} "
        f"AND tool_name = {tool})"
    )
    return [
        _count_add(vendor, sid, -1, tool=tool, when=f"AND {gone}"),
        f"UPDATE {SUMMARIES} SET tools = replace(tools, {tool_token(vendor, tool)}, '') "
        f"WHERE session_id = {sid} AND {gone}",
        f"UPDATE {TOOLS} SET sessions = sessions - 1 WHERE tool_name = {tool} AND {gone}",
        f"DELETE FROM {TOOLS} WHERE tool_name = {tool} AND sessions <= 0",
        f"DELETE FROM {SESSION_TOOLS} WHERE session_id = {sid} AND tool_name = {tool} "
        f"AND NOT EXISTS (SELECT 1 FROM message_structure WHERE session_id = {sid} "
        f"AND tool_name = {tool} AND id <> {row_id})",
    ]


def _tool_added(vendor: str, sid: str, tool: str) -> list[str]:
    """A structure row of session ``sid`` names ``tool``: remember the pair if it is new."""
    new = (
        f"NOT EXISTS (SELECT 1 FROM {SESSION_TOOLS} WHERE session_id = {sid} "
        f"AND tool_name = {tool})"
    )
    return [
        _count_add(vendor, sid, 1, tool=tool, when=f"AND {new}"),
        f"UPDATE {SUMMARIES} SET tools = tools || {tool_token(vendor, tool)} "
        f"WHERE session_id = {sid} AND {new}",
        f"""INSERT INTO {TOOLS} (tool_name, sessions)
            SELECT {tool}, 1
            WHERE {new} AND EXISTS (SELECT 1 FROM {SUMMARIES} WHERE session_id = {sid})
            ON CONFLICT (tool_name) DO UPDATE SET sessions = {TOOLS}.sessions + 1""",
        f"""INSERT INTO {SESSION_TOOLS} (session_id, tool_name, branched, day)
            SELECT {sid}, {tool}, x.branched, x.day FROM {SUMMARIES} x
            WHERE x.session_id = {sid} AND {new}
            ON CONFLICT (session_id, tool_name) DO NOTHING""",
    ]


def _branches_changed(vendor: str, sid: str, delta: str) -> list[str]:
    """Session ``sid`` has ``delta`` more (or fewer) branches; a change across "has
    branches" moves its list counts."""
    flips = f"{_branched('s.branch_count')} <> {_branched(f'(s.branch_count + ({delta}))')}"
    return [
        _count_add(vendor, sid, -1, when=f"AND {flips}"),
        f"UPDATE {SUMMARIES} SET branch_count = branch_count + ({delta}), "
        f"branched = {_branched(f'(branch_count + ({delta}))')} WHERE session_id = {sid}",
        f"UPDATE {SESSION_TOOLS} SET branched = (SELECT x.branched FROM {SUMMARIES} x "
        f"WHERE x.session_id = {sid}) WHERE session_id = {sid} AND branched <> "
        f"(SELECT x.branched FROM {SUMMARIES} x WHERE x.session_id = {sid})",
        _count_add(
            vendor,
            sid,
            1,
            when=f"AND {_branched('s.branch_count')} <> "
            f"{_branched(f'(s.branch_count - ({delta}))')}",
        ),
    ]


def _title_recomputed(vendor: str, sid: str, without: str) -> str:
    """Set the title to the first user row of ``sid`` other than row ``without``."""
    first = (
        "(SELECT f.{col} FROM message_structure f WHERE f.session_id = {sid} "
        f"AND f.message_type = 'user' AND f.id <> {without} "
        "ORDER BY f.sequence_number, f.id LIMIT 1)"
    )
    return f"""UPDATE {SUMMARIES} SET
            title_message_id = {first.format(col="message_id", sid=sid)},
            title_seq = {first.format(col="sequence_number", sid=sid)},
            title_key = COALESCE((SELECT {_title(vendor, "m.message_data")} FROM agent_messages m
                         WHERE m.id = {first.format(col="message_id", sid=sid)}), '')
        WHERE session_id = {sid}"""


def _usage_delta(vendor: str, sid: str, key: str, value: str) -> list[str]:
    """A usage row of ``key`` (a condition on forkview_turn_tokens) now counts ``value``
    (NULL: it is gone)."""
    return [
        f"""UPDATE {SUMMARIES} SET total_tokens = total_tokens + COALESCE({value}, 0)
                - COALESCE((SELECT total_tokens FROM {TURN_TOKENS} WHERE {key}), 0)
            WHERE session_id = {sid}""",
        f"DELETE FROM {TURN_TOKENS} WHERE {key}",
    ]


# ---- Triggers ----------------------------------------------------------------------------------


class _Trigger(NamedTuple):
    name: str
    table: str
    event: str  # INSERT, DELETE, UPDATE, UPDATE OF ...
    when: str  # a condition on NEW / OLD (may hold subqueries), "" for always
    statements: list[str]
    before_on_postgresql: bool = False  # see the module docstring


def _triggers(vendor: str) -> list[_Trigger]:
    v = vendor
    distinct = "IS NOT" if v == "sqlite" else "IS DISTINCT FROM"
    same = "IS" if v == "sqlite" else "IS NOT DISTINCT FROM"

    def one(row: str) -> str:
        return "{s_id} = " + f"{row}.session_id"

    def usage_key(row: str) -> str:
        return (
            f"session_id = {row}.session_id AND branch_id = {row}.branch_id "
            f"AND user_turn_number = {row}.user_turn_number"
        )

    def usage_added(row: str) -> list[str]:
        return [
            *_usage_delta(v, f"{row}.session_id", usage_key(row), f"{row}.total_tokens"),
            f"""INSERT INTO {TURN_TOKENS} (session_id, branch_id, user_turn_number, total_tokens)
                SELECT {row}.session_id, {row}.branch_id, {row}.user_turn_number,
                       COALESCE({row}.total_tokens, 0)
                WHERE EXISTS (SELECT 1 FROM {SUMMARIES} WHERE session_id = {row}.session_id)""",
        ]

    def structure(row: str, sign: int) -> list[tuple[str, str, list[str]]]:
        """(suffix, condition, statements) for a structure row added (+1) or removed (-1).

        Rows are excluded by id, so the same text is right whether the row itself is visible
        (SQLite's AFTER triggers) or not yet / still (PostgreSQL's BEFORE triggers), and for
        both halves of an UPDATE.
        """
        sid = f"{row}.session_id"
        alone_in_branch = (
            f"NOT EXISTS (SELECT 1 FROM message_structure WHERE session_id = {sid} "
            f"AND branch_id = {row}.branch_id AND id <> {row}.id)"
        )
        only_reference = (
            f"NOT EXISTS (SELECT 1 FROM message_structure WHERE message_id = {row}.message_id "
            f"AND id <> {row}.id)"
        )
        tool = f"{row}.tool_name"
        if sign > 0:
            title = [
                f"""UPDATE {SUMMARIES} SET title_message_id = {row}.message_id,
                        title_seq = {row}.sequence_number,
                        title_key = COALESCE((SELECT {_title(v, "m.message_data")}
                            FROM agent_messages m WHERE m.id = {row}.message_id), '')
                    WHERE session_id = {sid}
                      AND (title_seq IS NULL OR {row}.sequence_number < title_seq)"""
            ]
            tools = _tool_added(v, sid, tool)
        else:
            title = [
                _title_recomputed(v, sid, f"{row}.id")
                + f" AND title_message_id = {row}.message_id AND title_seq = {row}.sequence_number"
            ]
            tools = _tool_gone(v, sid, tool, f"{row}.id")
        return [
            ("branch", alone_in_branch, _branches_changed(v, sid, str(sign))),
            (
                "turn",
                f"{row}.message_type = 'user'",
                [
                    f"UPDATE {SUMMARIES} SET turn_count = turn_count + ({sign}) "
                    f"WHERE session_id = {sid} AND {only_reference}",
                    *title,
                ],
            ),
            ("tool", f"{tool} IS NOT NULL AND {tool} <> ''", tools),
        ]

    new_sid = "NEW.session_id"
    triggers = [
        _Trigger(
            "fv_sessions_ai",
            "agent_sessions",
            "INSERT",
            "",
            [
                *_unbuild_one(v, new_sid),
                *_build(v, one("NEW"), new_sid),
            ],
        ),
        _Trigger(
            "fv_sessions_ad", "agent_sessions", "DELETE", "", _unbuild_one(v, "OLD.session_id")
        ),
        _Trigger(
            "fv_sessions_au_id",
            "agent_sessions",
            "UPDATE OF session_id",
            f"OLD.session_id {distinct} NEW.session_id",
            [
                *_unbuild_one(v, "OLD.session_id"),
                *_unbuild_one(v, new_sid),
                *_build(v, one("NEW"), new_sid),
            ],
        ),
        _Trigger(
            "fv_sessions_au_times",
            "agent_sessions",
            "UPDATE OF created_at, updated_at",
            f"OLD.session_id {same} NEW.session_id",
            [
                f"UPDATE {SUMMARIES} SET created_at = NEW.created_at, updated_at = NEW.updated_at "
                f"WHERE session_id = {new_sid}",
            ],
        ),
        _Trigger(
            "fv_sessions_au_day",
            "agent_sessions",
            "UPDATE OF updated_at",
            f"OLD.session_id {same} NEW.session_id "
            f"AND {_day(v, 'OLD.updated_at')} <> {_day(v, 'NEW.updated_at')}",
            [
                _count_add(v, new_sid, -1),
                f"UPDATE {SUMMARIES} SET day = {_day(v, 'NEW.updated_at')} "
                f"WHERE session_id = {new_sid}",
                f"UPDATE {SESSION_TOOLS} SET day = {_day(v, 'NEW.updated_at')} "
                f"WHERE session_id = {new_sid}",
                _count_add(v, new_sid, 1),
            ],
        ),
        _Trigger(
            "fv_messages_au",
            "agent_messages",
            "UPDATE OF message_data",
            "",
            [
                f"""UPDATE {SUMMARIES} SET title_key = {_title(v, "NEW.message_data")}
                WHERE session_id = {new_sid} AND title_message_id = NEW.id""",
            ],
        ),
        _Trigger("fv_usage_ai", "turn_usage", "INSERT", "", usage_added("NEW")),
        _Trigger(
            "fv_usage_ad",
            "turn_usage",
            "DELETE",
            "",
            _usage_delta(v, "OLD.session_id", usage_key("OLD"), "NULL"),
        ),
        _Trigger(
            "fv_usage_au",
            "turn_usage",
            "UPDATE",
            "",
            [
                *_usage_delta(v, "OLD.session_id", usage_key("OLD"), "NULL"),
                *usage_added("NEW"),
            ],
        ),
    ]
    columns = "session_id, message_id, branch_id, message_type, sequence_number, tool_name"
    inserts = [("fv_structure_ai", "INSERT", structure("NEW", 1))] if v == "sqlite" else []
    for name, event, parts in (
        *inserts,  # PostgreSQL: one statement trigger (_pg_structure_insert_ddl)
        ("fv_structure_ad", "DELETE", structure("OLD", -1)),
        ("fv_structure_au_old", f"UPDATE OF {columns}", structure("OLD", -1)),
        ("fv_structure_au_new", f"UPDATE OF {columns}", structure("NEW", 1)),
    ):
        for suffix, when, statements in parts:
            if suffix == "tool" and event.startswith("UPDATE"):
                # Tools are kept by existence, not counted: the two halves of an update are
                # independent only when the row's tool (or session) changes, so act only then
                # (a branch rename leaves the tool alone).
                when += (
                    f" AND (OLD.tool_name {distinct} NEW.tool_name "
                    f"OR OLD.session_id {distinct} NEW.session_id)"
                )
            triggers.append(
                _Trigger(f"{name}_{suffix}", "message_structure", event, when, statements, True)
            )
    return triggers


def _trigger_ddl(vendor: str, trigger: _Trigger) -> list[str]:
    if vendor == "sqlite":
        when = f" WHEN {trigger.when}" if trigger.when else ""
        body = ";\n".join(trigger.statements)
        return [
            f"CREATE TRIGGER IF NOT EXISTS {trigger.name} AFTER {trigger.event} "
            f"ON {trigger.table} FOR EACH ROW{when} BEGIN\n{body};\nEND"
        ]
    timing = "BEFORE" if trigger.before_on_postgresql else "AFTER"
    result = "OLD" if trigger.event == "DELETE" else "NEW"
    body = ";\n".join(trigger.statements) + ";"
    if trigger.when:
        body = f"IF {trigger.when} THEN\n{body}\nEND IF;"
    return [
        f"CREATE OR REPLACE FUNCTION {trigger.name}() RETURNS trigger LANGUAGE plpgsql AS $fv$\n"
        f"BEGIN\n{body}\nRETURN {result if timing == 'BEFORE' else 'NULL'};\nEND\n$fv$",
        f"DROP TRIGGER IF EXISTS {trigger.name} ON {trigger.table}",
        f"CREATE TRIGGER {trigger.name} {timing} {trigger.event} ON {trigger.table} "
        f"FOR EACH ROW EXECUTE FUNCTION {trigger.name}()",
    ]


def _pg_structure_insert_ddl() -> list[str]:
    """PostgreSQL: rows added to ``message_structure``, one statement at a time.

    The same rules as SQLite's row triggers (``structure("NEW", 1)``), set-based over the
    statement's rows (a transition table): a row trigger per row costs a few statements each,
    which a branch copy of thousands of rows (one INSERT ... SELECT) pays thousands of times.
    "Before this statement" is "not among its rows" (``id NOT IN nr``, hashed once).
    """
    v = "postgresql"
    outside = "m.id NOT IN (SELECT id FROM nr)"
    branches = ";\n".join(_branches_changed(v, "r.session_id", "r.k"))
    tools = ";\n".join(_tool_added(v, "r.session_id", "r.tool_name"))
    body = f"""
DECLARE r record;
BEGIN
FOR r IN
    SELECT b.session_id, count(*) AS k FROM (SELECT DISTINCT session_id, branch_id FROM nr) b
    WHERE NOT EXISTS (SELECT 1 FROM message_structure m WHERE m.session_id = b.session_id
                      AND m.branch_id = b.branch_id AND {outside})
    GROUP BY b.session_id ORDER BY b.session_id
LOOP
{branches};
END LOOP;
UPDATE {SUMMARIES} s SET turn_count = s.turn_count + t.k FROM (
    SELECT n.session_id, count(DISTINCT n.message_id) AS k FROM nr n
    WHERE n.message_type = 'user' AND NOT EXISTS (
        SELECT 1 FROM message_structure m WHERE m.message_id = n.message_id AND {outside})
    GROUP BY n.session_id) t
WHERE s.session_id = t.session_id;
UPDATE {SUMMARIES} s SET title_message_id = f.message_id, title_seq = f.sequence_number,
    title_key = COALESCE((SELECT {_title(v, "m.message_data")} FROM agent_messages m
                          WHERE m.id = f.message_id), '')
FROM (SELECT DISTINCT ON (session_id) session_id, message_id, sequence_number FROM nr
      WHERE message_type = 'user' ORDER BY session_id, sequence_number, id) f
WHERE s.session_id = f.session_id AND (s.title_seq IS NULL OR f.sequence_number < s.title_seq);
FOR r IN
    SELECT DISTINCT session_id, tool_name FROM nr
    WHERE tool_name IS NOT NULL AND tool_name <> '' ORDER BY 1, 2
LOOP
{tools};
END LOOP;
RETURN NULL;
END"""
    return [
        "CREATE OR REPLACE FUNCTION fv_structure_ins() RETURNS trigger LANGUAGE plpgsql "
        f"AS $fv${body}\n$fv$",
        "DROP TRIGGER IF EXISTS fv_structure_ins ON message_structure",
        "CREATE TRIGGER fv_structure_ins AFTER INSERT ON message_structure "
        "REFERENCING NEW TABLE AS nr FOR EACH STATEMENT EXECUTE FUNCTION fv_structure_ins()",
    ]


#: PostgreSQL's TRUNCATE fires no row trigger: one statement trigger per SDK table starts over.
_TRUNCATED = ("agent_sessions", "agent_messages", "message_structure", "turn_usage")


def _truncate_ddl() -> list[str]:
    body = ";\n".join(
        [f"DELETE FROM {table}" for table in TABLES] + _build("postgresql", "{s_id} IS NOT NULL")
    )
    statements = [
        "CREATE OR REPLACE FUNCTION fv_truncated() RETURNS trigger LANGUAGE plpgsql AS $fv$\n"
        f"BEGIN\n{body};\nRETURN NULL;\nEND\n$fv$"
    ]
    for table in _TRUNCATED:
        statements += [
            f"DROP TRIGGER IF EXISTS fv_truncated ON {table}",
            f"CREATE TRIGGER fv_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION fv_truncated()",
        ]
    return statements


def _drop_ddl(vendor: str, trigger: _Trigger) -> list[str]:
    if vendor == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {trigger.name}"]
    return [
        f"DROP TRIGGER IF EXISTS {trigger.name} ON {trigger.table}",
        f"DROP FUNCTION IF EXISTS {trigger.name}()",
    ]


# ---- Costs (migration 0011) ---------------------------------------------------------------------
#
# ``forkview_session_summaries`` also holds what a session's traces recorded: ``cost_nanos``
# (the sum of its model spans' ``cost_nanos``; NULL while it has no model call), ``model_calls``
# and ``unpriced_calls`` (model calls with no price). A model span is a ``forkview_spans`` row of
# kind response or generation; it belongs to the session of its trace (``forkview_traces``, by
# ``trace_id``). Only Forkview writes those two tables, yet through several writers (the trace
# processor in every process, import, copy, delete, the admin, plain SQL in a pinch): triggers
# keep the sums, as for the SDK's tables. A span written before its trace is counted when the
# trace arrives; a trace deleted before its spans takes their costs with it. A summary row
# that is (re)built counts the traces already there (its own insert trigger), so a trace
# recorded before its session exists is counted too.

TRACES = "forkview_traces"
SPANS = "forkview_spans"
_MODEL = "kind IN (" + ", ".join(f"'{kind}'" for kind in MODEL_SPAN_KINDS) + ")"
_COST_COLUMNS = {
    "sqlite": [
        f"ALTER TABLE {SUMMARIES} ADD COLUMN cost_nanos INTEGER",
        f"ALTER TABLE {SUMMARIES} ADD COLUMN model_calls INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE {SUMMARIES} ADD COLUMN unpriced_calls INTEGER NOT NULL DEFAULT 0",
    ],
    "postgresql": [
        f"ALTER TABLE {SUMMARIES} ADD COLUMN IF NOT EXISTS cost_nanos bigint",
        f"ALTER TABLE {SUMMARIES} ADD COLUMN IF NOT EXISTS model_calls integer NOT NULL DEFAULT 0",
        f"ALTER TABLE {SUMMARIES} ADD COLUMN IF NOT EXISTS unpriced_calls integer "
        "NOT NULL DEFAULT 0",
    ],
}


def _cost_add(sid: str, sign: int, calls: str, unpriced: str, nanos: str, when: str = "") -> str:
    """Add (``sign`` 1) or take away (-1) model calls and their cost to session ``sid``'s
    summary (the SET expressions all read the row as it was)."""
    return f"""UPDATE {SUMMARIES} SET
            cost_nanos = CASE WHEN model_calls + ({sign}) * ({calls}) > 0
                THEN COALESCE(cost_nanos, 0) + ({sign}) * ({nanos}) END,
            model_calls = model_calls + ({sign}) * ({calls}),
            unpriced_calls = unpriced_calls + ({sign}) * ({unpriced})
        WHERE session_id = {sid} {when}"""


def _span_change(row: str, sign: int) -> str:
    """Model span ``row`` (NEW/OLD) came (+1) or went (-1): its trace's session."""
    return _cost_add(
        f"(SELECT t.session_id FROM {TRACES} t WHERE t.trace_id = {row}.trace_id)",
        sign,
        "1",
        f"CASE WHEN {row}.cost_nanos IS NULL THEN 1 ELSE 0 END",
        f"COALESCE({row}.cost_nanos, 0)",
    )


def _trace_change(row: str, sign: int) -> str:
    """Trace ``row`` (NEW/OLD) joined (+1) or left (-1) its session: all its model spans."""
    spans = f"FROM {SPANS} s WHERE s.trace_id = {row}.trace_id AND s.{_MODEL}"
    return _cost_add(
        f"{row}.session_id",
        sign,
        f"(SELECT COUNT(*) {spans})",
        f"(SELECT COUNT(*) {spans} AND s.cost_nanos IS NULL)",
        f"(SELECT COALESCE(SUM(s.cost_nanos), 0) {spans})",
        when=f"AND EXISTS (SELECT 1 {spans})",
    )


def _cost_recount(sid: str, *, traced_only: bool = True) -> str:
    """Set session ``sid``'s recorded cost from scratch (a new summary row, the backfill);
    ``traced_only``: leave sessions without traces alone (they hold no cost yet)."""
    spans = (
        f"FROM {TRACES} t JOIN {SPANS} s ON s.trace_id = t.trace_id "
        f"WHERE t.session_id = {sid} AND s.{_MODEL}"
    )
    return f"""UPDATE {SUMMARIES} SET
            cost_nanos = (SELECT CASE WHEN COUNT(*) > 0 THEN COALESCE(SUM(s.cost_nanos), 0) END
                          {spans}),
            model_calls = (SELECT COUNT(*) {spans}),
            unpriced_calls = (SELECT COUNT(*) {spans} AND s.cost_nanos IS NULL)
        WHERE session_id = {sid}{
        f" AND EXISTS (SELECT 1 FROM {TRACES} t WHERE t.session_id = {sid})" if traced_only else ""
    }"""


def _cost_triggers(vendor: str) -> list[_Trigger]:
    distinct = "IS NOT" if vendor == "sqlite" else "IS DISTINCT FROM"
    moved = f"OLD.session_id {distinct} NEW.session_id OR OLD.trace_id {distinct} NEW.trace_id"
    span_moved = (
        f"OLD.cost_nanos {distinct} NEW.cost_nanos OR OLD.kind {distinct} NEW.kind "
        f"OR OLD.trace_id {distinct} NEW.trace_id"
    )
    return [
        _Trigger("fv_summary_cost_ai", SUMMARIES, "INSERT", "", [_cost_recount("NEW.session_id")]),
        _Trigger("fv_spans_cost_ai", SPANS, "INSERT", f"NEW.{_MODEL}", [_span_change("NEW", 1)]),
        _Trigger("fv_spans_cost_ad", SPANS, "DELETE", f"OLD.{_MODEL}", [_span_change("OLD", -1)]),
        _Trigger(
            "fv_spans_cost_au_old",
            SPANS,
            "UPDATE OF cost_nanos, kind, trace_id",
            f"OLD.{_MODEL} AND ({span_moved})",
            [_span_change("OLD", -1)],
        ),
        _Trigger(
            "fv_spans_cost_au_new",
            SPANS,
            "UPDATE OF cost_nanos, kind, trace_id",
            f"NEW.{_MODEL} AND ({span_moved})",
            [_span_change("NEW", 1)],
        ),
        _Trigger(
            "fv_traces_cost_ai",
            TRACES,
            "INSERT",
            "NEW.session_id IS NOT NULL",
            [_trace_change("NEW", 1)],
        ),
        _Trigger(
            "fv_traces_cost_ad",
            TRACES,
            "DELETE",
            "OLD.session_id IS NOT NULL",
            [_trace_change("OLD", -1)],
        ),
        _Trigger(
            "fv_traces_cost_au",
            TRACES,
            "UPDATE OF session_id, trace_id",
            moved,
            [_trace_change("OLD", -1), _trace_change("NEW", 1)],
        ),
    ]


def create_costs(connection: BaseDatabaseWrapper) -> None:
    """Add the cost columns, their sort index and triggers, and fill them (migration 0011)."""
    vendor = connection.vendor
    statements = list(_COST_COLUMNS[vendor])
    statements.append(_SORT_INDEX[vendor].format(c="cost_nanos"))
    for trigger in _cost_triggers(vendor):
        statements += _trigger_ddl(vendor, trigger)
    if vendor == "postgresql":  # TRUNCATE fires no row trigger: count again from scratch
        statements.append(
            "CREATE OR REPLACE FUNCTION fv_cost_truncated() RETURNS trigger LANGUAGE plpgsql "
            f"AS $fv$\nBEGIN\n{_cost_recount(f'{SUMMARIES}.session_id', traced_only=False)};\n"
            "RETURN NULL;\nEND\n$fv$"
        )
        for table in (TRACES, SPANS):
            statements += [
                f"DROP TRIGGER IF EXISTS fv_cost_truncated ON {table}",
                f"CREATE TRIGGER fv_cost_truncated AFTER TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION fv_cost_truncated()",
            ]
    statements.append(_cost_recount(f"{SUMMARIES}.session_id"))
    _run(connection, statements)


def drop_costs(connection: BaseDatabaseWrapper) -> None:
    """Remove what :func:`create_costs` made."""
    vendor = connection.vendor
    statements: list[str] = []
    for trigger in _cost_triggers(vendor):
        statements += _drop_ddl(vendor, trigger)
    if vendor == "postgresql":
        statements += [f"DROP TRIGGER IF EXISTS fv_cost_truncated ON {t}" for t in (TRACES, SPANS)]
        statements.append("DROP FUNCTION IF EXISTS fv_cost_truncated()")
    statements.append("DROP INDEX IF EXISTS fv_summary_cost_nanos")
    statements += [
        f"ALTER TABLE {SUMMARIES} DROP COLUMN {column}"
        for column in ("cost_nanos", "model_calls", "unpriced_calls")
    ]
    _run(connection, statements)


# ---- Entry points -------------------------------------------------------------------------------


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def rebuild(connection: BaseDatabaseWrapper) -> None:
    """Recompute every summary from the SDK's tables (run in a transaction)."""
    vendor = connection.vendor
    _run(
        connection,
        [f"DELETE FROM {table}" for table in TABLES] + _build(vendor, "{s_id} IS NOT NULL"),
    )


def create(connection: BaseDatabaseWrapper) -> None:
    """Create the tables, indexes and triggers, and fill the tables (migration ``0006``)."""
    vendor = connection.vendor
    statements = list(_TABLES_SQL[vendor]) + list(_INDEXES_SQL)
    statements += [_SORT_INDEX[vendor].format(c=column) for column in SORT_COLUMNS]
    for trigger in _triggers(vendor):
        statements += _trigger_ddl(vendor, trigger)
    if vendor == "postgresql":
        statements += _pg_structure_insert_ddl() + _truncate_ddl()
    _run(connection, statements)
    rebuild(connection)


def drop(connection: BaseDatabaseWrapper) -> None:
    """Remove what :func:`create` made (the SDK's tables are untouched)."""
    vendor = connection.vendor
    statements: list[str] = []
    for trigger in _triggers(vendor):
        statements += _drop_ddl(vendor, trigger)
    if vendor == "postgresql":
        statements += [f"DROP TRIGGER IF EXISTS fv_truncated ON {table}" for table in _TRUNCATED]
        statements.append("DROP FUNCTION IF EXISTS fv_truncated()")
        statements.append("DROP TRIGGER IF EXISTS fv_structure_ins ON message_structure")
        statements.append("DROP FUNCTION IF EXISTS fv_structure_ins()")
    statements += [f"DROP TABLE IF EXISTS {table}" for table in TABLES]
    statements.append("DROP INDEX IF EXISTS fv_structure_tool")
    _run(connection, statements)


def recomputed(connection: BaseDatabaseWrapper) -> dict[str, list[tuple[Any, ...]]]:
    """What the summary tables should hold, computed from scratch (for checks): rows per table,
    sorted, as the same queries read the kept tables (see :func:`kept`)."""
    return _snapshot(connection, live=False)


def kept(connection: BaseDatabaseWrapper) -> dict[str, list[tuple[Any, ...]]]:
    """What the summary tables hold now, in :func:`recomputed`'s form."""
    return _snapshot(connection, live=True)


_SNAPSHOT = {
    SUMMARIES: "SELECT session_id, title_message_id, title_seq, title_key, turn_count, "
    "branch_count, branched, total_tokens, day, cost_nanos, model_calls, unpriced_calls, "
    "tools FROM {t} ORDER BY session_id",
    SESSION_TOOLS: "SELECT session_id, tool_name, branched, day FROM {t} ORDER BY 1, 2",
    TOOLS: "SELECT tool_name, sessions FROM {t} WHERE sessions <> 0 ORDER BY 1",
    COUNTS: "SELECT tool, branched, day, n FROM {t} WHERE n <> 0 ORDER BY 1, 2, 3",
    TURN_TOKENS: "SELECT session_id, branch_id, user_turn_number, total_tokens FROM {t} "
    "ORDER BY 1, 2, 3",
}


def _snapshot(connection: BaseDatabaseWrapper, *, live: bool) -> dict[str, list[tuple[Any, ...]]]:
    """Read the tables; ``live=False``: rebuild them in a savepoint first, then roll it back."""
    from django.db import transaction

    out: dict[str, list[tuple[Any, ...]]] = {}

    def read() -> None:
        with connection.cursor() as cursor:
            for table, query in _SNAPSHOT.items():
                cursor.execute(query.format(t=table))
                out[table] = [tuple(row) for row in cursor.fetchall()]
        # ``tools`` holds the same tokens in the order the tools came: compare them as a set.
        out[SUMMARIES] = [
            (*row[:-1], sorted(t for t in row[-1].split("|") if t)) for row in out[SUMMARIES]
        ]

    if live:
        read()
        return out

    class _Rollback(Exception):
        pass

    try:
        with transaction.atomic(using=connection.alias):
            rebuild(connection)
            read()
            raise _Rollback
    except _Rollback:
        pass
    return out
