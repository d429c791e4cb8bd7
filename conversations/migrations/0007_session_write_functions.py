"""``DjangoSession``'s writes in one statement each on PostgreSQL; SQLite's message_id index.

PostgreSQL: ``forkview_append`` and ``forkview_pop`` do a whole ``add_items`` / ``pop_item``
server-side (the writer lock, the branch the mutation acts on after a clear, every row), so
each is one statement and one round trip instead of seven to nine (BEGIN, lock, ..., COMMIT).
PL/pgSQL runs each of its statements on a new snapshot (READ COMMITTED), so the numbers read
after the lock see every row the previous writer committed, exactly as the statements did when
``writes.py`` sent them one by one. The rules themselves are ``writes.py``'s (it calls these
functions and documents them); this file only installs them.

SQLite: an index on ``message_structure(message_id)`` (PostgreSQL has had it from the start,
``conversations/schema.py``). Without it, deleting a message (a pop, a branch delete) scans the
whole table twice: for the "still referenced?" check and for the foreign key's cascade, which
SQLite checks on every delete from ``agent_messages`` (Django turns foreign keys on). The SDK
opens a file with the extra index as before (it checks tables and foreign keys, not indexes).
"""

from typing import Any

from django.db import migrations

# The branch a mutation acts on, as ``DjangoSession._write_target`` decides it: the branch it
# was called on, unless a clear committed since the call (the generation it expected differs):
# then the instance's branch after observing that clear (main if the clear is news to it).
_TARGET = """
    target := p_branch;
    IF p_expect IS NOT NULL AND g <> p_expect THEN
        target := CASE WHEN p_seen IS NOT NULL AND p_seen <> g THEN 'main' ELSE p_current END;
    END IF;
"""

_LOCK = """
    INSERT INTO session_clear_generations (session_id, generation) VALUES (p_session, 0)
    ON CONFLICT (session_id) DO UPDATE SET generation = session_clear_generations.generation
    RETURNING session_clear_generations.generation INTO g;
"""

APPEND = f"""
CREATE OR REPLACE FUNCTION forkview_append(
    p_session text, p_branch text, p_expect bigint, p_seen bigint, p_current text,
    p_data text[], p_types text[], p_tools text[], p_user boolean[]
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    g bigint;
    target text;
    seq bigint;
    turn bigint;
    branch_turn bigint;
BEGIN
    {_LOCK}
    {_TARGET}
    INSERT INTO agent_sessions (session_id) VALUES (p_session)
    ON CONFLICT (session_id) DO UPDATE SET updated_at = CURRENT_TIMESTAMP;
    SELECT MAX(sequence_number) INTO seq FROM message_structure WHERE session_id = p_session;
    -- The branch's newest row carries its current numbers (one index entry).
    SELECT s.user_turn_number, s.branch_turn_number INTO turn, branch_turn
    FROM message_structure s
    WHERE s.session_id = p_session AND s.branch_id >= target AND s.branch_id <= target
    ORDER BY s.branch_id DESC, s.sequence_number DESC LIMIT 1;
    IF seq IS NULL OR (turn IS NULL AND branch_turn IS NULL) THEN
        INSERT INTO branch_reservations (session_id, branch_id) VALUES (p_session, target)
        ON CONFLICT DO NOTHING;
    END IF;
    WITH inserted AS (
        INSERT INTO agent_messages (session_id, message_data)
        SELECT p_session, CAST(d.data AS jsonb)
        FROM unnest(p_data) WITH ORDINALITY AS d(data, n) ORDER BY d.n
        RETURNING id
    ), numbered AS (
        SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM inserted
    ), labels AS (
        SELECT l.n, l.message_type, l.tool_name,
               SUM(CASE WHEN l.is_user THEN 1 ELSE 0 END) OVER (ORDER BY l.n) AS opened
        FROM unnest(p_types, p_tools, p_user) WITH ORDINALITY
             AS l(message_type, tool_name, is_user, n)
    )
    INSERT INTO message_structure (session_id, message_id, branch_id, message_type,
        sequence_number, user_turn_number, branch_turn_number, tool_name)
    SELECT p_session, numbered.id, target, labels.message_type,
        COALESCE(seq, 0) + labels.n, COALESCE(turn, 0) + labels.opened,
        COALESCE(branch_turn, 0) + labels.opened, labels.tool_name
    FROM numbered JOIN labels ON labels.n = numbered.n
    ORDER BY labels.n;
    RETURN g;
END
$fn$
"""

POP = f"""
CREATE OR REPLACE FUNCTION forkview_pop(
    p_session text, p_branch text, p_expect bigint, p_seen bigint, p_current text,
    OUT generation bigint, OUT item text
) LANGUAGE plpgsql AS $fn$
DECLARE
    g bigint;
    target text;
    row_id bigint;
    row_message bigint;
    row_turn bigint;
BEGIN
    {_LOCK}
    {_TARGET}
    generation := g;
    INSERT INTO branch_reservations (session_id, branch_id) VALUES (p_session, target)
    ON CONFLICT DO NOTHING;
    LOOP
        SELECT s.id, s.message_id, s.user_turn_number, CAST(m.message_data AS text)
        INTO row_id, row_message, row_turn, item
        FROM message_structure s LEFT JOIN agent_messages m ON m.id = s.message_id
        WHERE s.session_id = p_session AND s.branch_id >= target AND s.branch_id <= target
        ORDER BY s.branch_id DESC, s.sequence_number DESC LIMIT 1;
        IF NOT FOUND THEN
            item := NULL;
            RETURN;
        END IF;
        DELETE FROM message_structure WHERE id = row_id;
        DELETE FROM agent_messages WHERE id = row_message AND session_id = p_session
            AND NOT EXISTS (SELECT 1 FROM message_structure
                            WHERE message_id = row_message AND session_id = p_session);
        IF row_turn IS NOT NULL THEN
            DELETE FROM turn_usage WHERE session_id = p_session AND branch_id = target
                AND user_turn_number = row_turn
                AND NOT EXISTS (SELECT 1 FROM message_structure WHERE session_id = p_session
                                AND branch_id = target AND user_turn_number = row_turn);
        END IF;
        IF item IS NOT NULL THEN
            RETURN;  -- a row whose message is missing is removed and skipped, as the SDK does
        END IF;
    END LOOP;
END
$fn$
"""

DROP_POSTGRESQL = [
    "DROP FUNCTION IF EXISTS forkview_append(text, text, bigint, bigint, text, text[], text[], "
    "text[], boolean[])",
    "DROP FUNCTION IF EXISTS forkview_pop(text, text, bigint, bigint, text)",
]
SQLITE_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_structure_message_id ON message_structure (message_id)"
)


def create(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(APPEND)
        schema_editor.execute(POP)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_INDEX)


def drop(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for statement in DROP_POSTGRESQL:
            schema_editor.execute(statement)
    elif vendor == "sqlite":
        schema_editor.execute("DROP INDEX IF EXISTS idx_structure_message_id")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0006_session_summaries")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
