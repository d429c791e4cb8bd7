"""The message search index, kept by the database itself (DDL run by migration ``0005``).

The index holds each message's text *as the page shows it* (``conversations.items.item_text``:
content, reasoning summary, tool name, arguments, query, output), never its JSON keys, and the
database keeps it current for every writer: Forkview, the SDK's own ``AdvancedSQLiteSession``
on the same file, or plain SQL. Nothing in Forkview's write path touches it.

- **SQLite**: an FTS5 table, :data:`SQLITE_TABLE` (``rowid`` = ``agent_messages.id``), filled
  by triggers on ``agent_messages`` (insert, update of ``id``/``message_data``, delete). The
  text is extracted in SQL with the JSON functions (which decode the SDK's ``\\u`` escapes),
  guarded so that a row that is not JSON text (malformed, a BLOB, nested past SQLite's JSON
  depth) is simply not indexed: a trigger never makes a write fail. Tokenizer: ``porter
  unicode61 remove_diacritics 2``: words, English stemming (as PostgreSQL's ``english``
  configuration), case and diacritics folded (``creme`` finds ``crème``).
- **PostgreSQL**: a side table, :data:`PG_TABLE` (message id, session id, the stored
  ``to_tsvector('english', item text)``; GIN on the document), filled by statement-level
  triggers on ``agent_messages`` (insert, update, delete, truncate; transition tables, so a
  multi-row INSERT or COPY is one set-based statement). The item text comes from
  :data:`PG_ITEM_TEXT` (plpgsql, the same rules). The tsvector is *stored* so that a
  newest-first scan checks a row in ~1 µs; an expression index would make the planner
  recompute the text of every row it scans (~30-130 µs each), which is what made a common
  word slow. It replaces migration ``0003``'s index over the whole JSON text (keys
  included), which nothing reads any more.

Every statement is idempotent (``IF NOT EXISTS`` / ``OR REPLACE``), so applying it to a
database that already has it changes nothing. A writer on SQLite needs FTS5 in its SQLite
library (the standard builds of Python's ``sqlite3`` have it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.db.backends.base.schema import BaseDatabaseSchemaEditor

__all__ = [
    "PG_ITEM_TEXT",
    "PG_TABLE",
    "SQLITE_TABLE",
    "create",
    "drop",
    "sqlite_create_statements",
    "sqlite_drop_statements",
]

# ---- SQLite ------------------------------------------------------------------------------------

#: The FTS5 table (Forkview's own; ``rowid`` is the message id).
SQLITE_TABLE = "forkview_message_search"
_TOKENIZER = "porter unicode61 remove_diacritics 2"
_KEYS = ("content", "summary", "name", "arguments", "query", "output")


def _sqlite_content_text(data: str, path: str) -> str:
    """SQL: the text of the content value at ``path`` of ``data`` (``items.content_text``)."""
    at = f"json_type({data}, '{path}')"
    part = (
        "CASE e.type WHEN 'text' THEN e.value WHEN 'null' THEN NULL WHEN 'object' THEN COALESCE("
        "CASE json_type(e.value, '$.text') WHEN 'text' THEN json_extract(e.value, '$.text') END, "
        "CASE json_type(e.value, '$.refusal') WHEN 'text' "
        "THEN json_extract(e.value, '$.refusal') END, "
        "'[' || COALESCE(NULLIF(json_extract(e.value, '$.type'), ''), 'part') || ']') "
        "ELSE e.value END"
    )
    return (
        f"CASE {at} WHEN 'text' THEN json_extract({data}, '{path}') "
        f"WHEN 'array' THEN (SELECT group_concat({part}, char(10)) "
        f"FROM json_each({data}, '{path}') e) "
        "WHEN 'null' THEN NULL WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE json_extract({data}, '{path}') END"
    )


def sqlite_item_text(data: str) -> str:
    """SQL: the searchable text of the stored item ``data`` (a column expression), or NULL
    when it is not JSON text. Never raises, whatever the row holds."""
    parts = [_sqlite_content_text(data, f"$.{key}") for key in _KEYS]
    parts.append(
        f"CASE json_type({data}, '$.action.query') WHEN 'text' "
        f"THEN json_extract({data}, '$.action.query') END"
    )
    obj = " || char(10) || ".join(f"COALESCE({p}, '')" for p in parts)
    return (
        f"CASE WHEN typeof({data}) = 'text' THEN CASE WHEN json_valid({data}) THEN "
        f"CASE json_type({data}) WHEN 'object' THEN {obj} "
        f"ELSE {_sqlite_content_text(data, '$')} END END END"
    )


def _sqlite_index_row(rowid: str, data: str) -> str:
    return (
        f"INSERT INTO {SQLITE_TABLE} (rowid, body) SELECT {rowid}, body FROM "
        f"(SELECT {sqlite_item_text(data)} AS body) WHERE body <> ''"
    )


def sqlite_create_statements() -> list[str]:
    """The FTS5 table, its three triggers and the backfill of the rows already stored."""
    unindex_new = f"DELETE FROM {SQLITE_TABLE} WHERE rowid = new.id"
    unindex_old = f"DELETE FROM {SQLITE_TABLE} WHERE rowid = old.id"
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {SQLITE_TABLE} USING fts5("
        f"body, tokenize = '{_TOKENIZER}', columnsize = 0)",
        # A replaced row (INSERT OR REPLACE) fires no delete trigger: drop its entry first.
        f"CREATE TRIGGER IF NOT EXISTS {SQLITE_TABLE}_insert AFTER INSERT ON agent_messages "
        f"BEGIN {unindex_new}; {_sqlite_index_row('new.id', 'new.message_data')}; END",
        f"CREATE TRIGGER IF NOT EXISTS {SQLITE_TABLE}_update "
        "AFTER UPDATE OF id, message_data ON agent_messages "
        f"BEGIN {unindex_old}; {unindex_new}; "
        f"{_sqlite_index_row('new.id', 'new.message_data')}; END",
        f"CREATE TRIGGER IF NOT EXISTS {SQLITE_TABLE}_delete AFTER DELETE ON agent_messages "
        f"BEGIN {unindex_old}; END",
        # Backfill (a database written before this migration, e.g. by the SDK alone).
        f"DELETE FROM {SQLITE_TABLE}",
        f"INSERT INTO {SQLITE_TABLE} (rowid, body) SELECT id, body FROM (SELECT id, "
        f"{sqlite_item_text('message_data')} AS body FROM agent_messages) WHERE body <> ''",
        f"INSERT INTO {SQLITE_TABLE} ({SQLITE_TABLE}) VALUES ('optimize')",
    ]


def sqlite_drop_statements() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {SQLITE_TABLE}_insert",
        f"DROP TRIGGER IF EXISTS {SQLITE_TABLE}_update",
        f"DROP TRIGGER IF EXISTS {SQLITE_TABLE}_delete",
        f"DROP TABLE IF EXISTS {SQLITE_TABLE}",
    ]


# ---- PostgreSQL --------------------------------------------------------------------------------

#: The side table: one row per message (``id`` = ``agent_messages.id``), its session and its
#: stored ``tsvector``; GIN on the document, the primary key for newest-first scans.
PG_TABLE = "forkview_message_search"
#: ``forkview_item_text(jsonb)``: an item's searchable text (``items.item_text``).
PG_ITEM_TEXT = "forkview_item_text"
#: Text past this many characters of one item is not indexed (a tsvector holds < 1 MB: a
#: longer document would make the trigger, and so the writer's INSERT, fail).
PG_MAX_CHARS = 100_000
#: Migration 0003's index (the whole JSON text, keys included), replaced by :data:`PG_TABLE`.
PG_OLD_INDEX = "idx_agent_messages_fts"


def _pg_document(data: str) -> str:
    return f"to_tsvector('english'::regconfig, left({PG_ITEM_TEXT}({data}), {PG_MAX_CHARS}))"


_PG_INDEX_ROWS = (
    f"INSERT INTO {PG_TABLE} (id, session_id, document) "
    f"SELECT n.id, n.session_id, {_pg_document('n.message_data')} FROM new_rows n "
    "ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id, "
    "document = EXCLUDED.document"
)
_PG_TRIGGERS = {
    # name: (event, REFERENCING, body)
    "insert": ("INSERT", "NEW TABLE AS new_rows", f"{_PG_INDEX_ROWS};"),
    "update": (
        "UPDATE",
        "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        f"DELETE FROM {PG_TABLE} s USING old_rows o WHERE s.id = o.id; {_PG_INDEX_ROWS};",
    ),
    "delete": (
        "DELETE",
        "OLD TABLE AS old_rows",
        f"DELETE FROM {PG_TABLE} s USING old_rows o WHERE s.id = o.id;",
    ),
    "truncate": ("TRUNCATE", "", f"TRUNCATE {PG_TABLE};"),
}

_PG_CREATE = [
    # The text of an item, by the rules of ``items.item_text`` (plpgsql: 4x faster per row
    # than the same in SQL functions, and it runs on every write).
    rf"""
    CREATE OR REPLACE FUNCTION {PG_ITEM_TEXT}(d jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    DECLARE
      out text := '';
      k text;
      v jsonb;
      p jsonb;
    BEGIN
      IF jsonb_typeof(d) IS DISTINCT FROM 'object' THEN
        d := jsonb_build_object('content', d);  -- a bare value reads as a content value
      END IF;
      FOREACH k IN ARRAY ARRAY['content', 'summary', 'name', 'arguments', 'query', 'output'] LOOP
        v := d -> k;
        CONTINUE WHEN v IS NULL OR jsonb_typeof(v) = 'null';
        IF jsonb_typeof(v) = 'string' THEN
          out := out || E'\n' || (v #>> '{{}}');
        ELSIF jsonb_typeof(v) = 'array' THEN
          FOR p IN SELECT jsonb_array_elements(v) LOOP
            IF jsonb_typeof(p) = 'string' THEN
              out := out || E'\n' || (p #>> '{{}}');
            ELSIF jsonb_typeof(p) = 'object' THEN
              IF jsonb_typeof(p -> 'text') = 'string' THEN
                out := out || E'\n' || (p ->> 'text');
              ELSIF jsonb_typeof(p -> 'refusal') = 'string' THEN
                out := out || E'\n' || (p ->> 'refusal');
              ELSE
                out := out || E'\n[' || COALESCE(NULLIF(p ->> 'type', ''), 'part') || ']';
              END IF;
            ELSIF jsonb_typeof(p) <> 'null' THEN
              out := out || E'\n' || p::text;
            END IF;
          END LOOP;
        ELSE
          out := out || E'\n' || v::text;
        END IF;
      END LOOP;
      IF jsonb_typeof(d -> 'action' -> 'query') = 'string' THEN
        out := out || E'\n' || (d -> 'action' ->> 'query');
      END IF;
      RETURN out;
    END
    $$
    """.replace("{{}}", "{}"),
    f"CREATE TABLE IF NOT EXISTS {PG_TABLE} ("
    "id bigint PRIMARY KEY, session_id text NOT NULL, document tsvector NOT NULL)",
    f"CREATE INDEX IF NOT EXISTS {PG_TABLE}_document ON {PG_TABLE} USING GIN (document)",
    *(
        f"CREATE OR REPLACE FUNCTION {PG_TABLE}_{name}() RETURNS trigger "
        f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
        for name, (_, _, body) in _PG_TRIGGERS.items()
    ),
    *(f"DROP TRIGGER IF EXISTS {PG_TABLE}_{name} ON agent_messages" for name in _PG_TRIGGERS),
    *(
        f"CREATE TRIGGER {PG_TABLE}_{name} AFTER {event} ON agent_messages "
        + (f"REFERENCING {referencing} " if referencing else "")
        + f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_TABLE}_{name}()"
        for name, (event, referencing, _) in _PG_TRIGGERS.items()
    ),
    # Backfill (rows written before this migration, by anyone).
    f"TRUNCATE {PG_TABLE}",
    f"INSERT INTO {PG_TABLE} (id, session_id, document) "
    f"SELECT id, session_id, {_pg_document('message_data')} FROM agent_messages",
    f"ANALYZE {PG_TABLE}",
    f"DROP INDEX IF EXISTS {PG_OLD_INDEX}",
]

_PG_DROP = [
    *(f"DROP TRIGGER IF EXISTS {PG_TABLE}_{name} ON agent_messages" for name in _PG_TRIGGERS),
    *(f"DROP FUNCTION IF EXISTS {PG_TABLE}_{name}()" for name in _PG_TRIGGERS),
    f"DROP TABLE IF EXISTS {PG_TABLE}",
    f"DROP FUNCTION IF EXISTS {PG_ITEM_TEXT}(jsonb)",
    f"CREATE INDEX IF NOT EXISTS {PG_OLD_INDEX} ON agent_messages USING GIN "
    "(to_tsvector('english'::regconfig, COALESCE((message_data)::text, '')))",
]


# ---- Migration entry points --------------------------------------------------------------------


def create(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Create the index for the connection's vendor (and index every stored message)."""
    vendor = schema_editor.connection.vendor
    statements = (
        sqlite_create_statements()
        if vendor == "sqlite"
        else _PG_CREATE
        if vendor == "postgresql"
        else []
    )
    for statement in statements:
        schema_editor.execute(statement)


def drop(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Remove it again (PostgreSQL: back to migration ``0003``'s index)."""
    vendor = schema_editor.connection.vendor
    statements = (
        sqlite_drop_statements()
        if vendor == "sqlite"
        else _PG_DROP
        if vendor == "postgresql"
        else []
    )
    for statement in statements:
        schema_editor.execute(statement)
