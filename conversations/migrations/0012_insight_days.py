"""Per-day rollups of the insights page (``dashboard/insights/rollup.py``, issue 16 item 5).

``forkview_insight_days`` holds, per UTC day, what ``/insights/`` shows (turn and model-call
counts, stored cost sums, no-price calls, tokens, tool errors, log-bucket latency histograms
and the day's top slowest / most expensive turns). A past day is rolled up the first time a
view needs it. Triggers on ``forkview_spans`` and ``forkview_traces``: for every day before
the current UTC day that a written, changed or deleted span or trace touches (its own day
and, for a span, its trace's), delete that day's rollup rows (it is rolled up again on the
next view) and add one to its counter in ``forkview_insight_changes`` (a view stores a day
it computed only if the counter did not move meanwhile). Writes of today's spans touch
neither table. Raw SQL only: no Django model, so ``makemigrations`` has nothing to say.
Trigger names start with ``fv_insight_`` (the cost triggers of 0011 are ``fv_spans_cost_*``).
"""

from typing import Any

from django.db import migrations

TABLE = "forkview_insight_days"
CHANGES = "forkview_insight_changes"

_COLUMNS_SQLITE = """
    day TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    calls BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    unpriced BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    cached_input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    latency TEXT NOT NULL DEFAULT '',
    branch_id TEXT NULL,
    turn INTEGER NULL,
    started_at DATETIME NULL,
    value REAL NULL
"""

_COLUMNS_POSTGRES = """
    day DATE NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    calls BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    unpriced BIGINT NOT NULL DEFAULT 0,
    cost_nanos BIGINT NULL,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    cached_input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    latency TEXT NOT NULL DEFAULT '',
    branch_id TEXT NULL,
    turn INTEGER NULL,
    started_at TIMESTAMP WITH TIME ZONE NULL,
    value DOUBLE PRECISION NULL
"""


def _sqlite_body(row: str, table: str) -> str:
    """Row trigger body: each past day the row touches (its own; a span's trace's) loses its
    rollup and counts one more change."""
    days = [f"date({row}.started_at)"]
    if table == "forkview_spans":
        days.append(
            f"(SELECT date(t.started_at) FROM forkview_traces t WHERE t.trace_id = {row}.trace_id)"
        )
    statements = []
    for day in days:
        statements += [
            f"DELETE FROM {TABLE} WHERE day = {day} AND {day} < date('now');",
            f"INSERT INTO {CHANGES} (day, gen) SELECT {day}, 1 WHERE {day} < date('now') "
            "ON CONFLICT (day) DO UPDATE SET gen = gen + 1;",
        ]
    return " ".join(statements)


def _postgres_function(name: str, table: str) -> str:
    """Statement trigger function: the past days of the written rows (and, for spans, of
    their traces) lose their rollups and count one more change (in day order)."""

    def days(rows: str) -> str:
        select = f"SELECT (r.started_at AT TIME ZONE 'UTC')::date AS day FROM {rows} r"
        if table == "forkview_spans":
            select += (
                " UNION SELECT (t.started_at AT TIME ZONE 'UTC')::date FROM forkview_traces t"
                f" WHERE t.trace_id IN (SELECT r.trace_id FROM {rows} r)"
            )
        return select

    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      touched date[];
      today date := (clock_timestamp() AT TIME ZONE 'UTC')::date;
    BEGIN
      IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT x.day) INTO touched FROM ({days("new_rows")}) x
        WHERE x.day < today;
      ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT x.day) INTO touched FROM ({days("old_rows")}) x
        WHERE x.day < today;
      ELSE
        SELECT array_agg(DISTINCT x.day) INTO touched
        FROM ({days("new_rows")} UNION {days("old_rows")}) x WHERE x.day < today;
      END IF;
      IF touched IS NOT NULL THEN
        DELETE FROM {TABLE} WHERE day = ANY(touched);
        INSERT INTO {CHANGES} (day, gen) SELECT d, 1 FROM unnest(touched) AS d ORDER BY d
        ON CONFLICT (day) DO UPDATE SET gen = {CHANGES}.gen + 1;
      END IF;
      RETURN NULL;
    END $$
    """


def create(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    statements: list[str] = []
    if connection.vendor == "postgresql":
        statements += [
            f"CREATE TABLE {TABLE} ({_COLUMNS_POSTGRES})",
            f"CREATE INDEX fv_insight_day ON {TABLE} (day, kind)",
            f"CREATE TABLE {CHANGES} (day DATE PRIMARY KEY, gen BIGINT NOT NULL)",
            _postgres_function("fv_insight_spans_changed", "forkview_spans"),
            _postgres_function("fv_insight_traces_changed", "forkview_traces"),
            f"""
            CREATE FUNCTION fv_insight_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              DELETE FROM {TABLE};
              UPDATE {CHANGES} SET gen = gen + 1;
              RETURN NULL;
            END $$
            """,
        ]
        for table, function in (
            ("forkview_spans", "fv_insight_spans_changed"),
            ("forkview_traces", "fv_insight_traces_changed"),
        ):
            short = "spans" if table == "forkview_spans" else "traces"
            statements += [
                f"CREATE TRIGGER fv_insight_{short}_ai AFTER INSERT ON {table} "
                "REFERENCING NEW TABLE AS new_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                f"CREATE TRIGGER fv_insight_{short}_ad AFTER DELETE ON {table} "
                "REFERENCING OLD TABLE AS old_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                f"CREATE TRIGGER fv_insight_{short}_au AFTER UPDATE ON {table} "
                "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                f"CREATE TRIGGER fv_insight_{short}_at AFTER TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION fv_insight_truncated()",
            ]
    else:
        statements += [
            f"CREATE TABLE {TABLE} ({_COLUMNS_SQLITE})",
            f"CREATE INDEX fv_insight_day ON {TABLE} (day, kind)",
            f"CREATE TABLE {CHANGES} (day TEXT PRIMARY KEY, gen BIGINT NOT NULL)",
        ]
        for table, short in (("forkview_spans", "spans"), ("forkview_traces", "traces")):
            new, old = _sqlite_body("NEW", table), _sqlite_body("OLD", table)
            statements += [
                f"CREATE TRIGGER fv_insight_{short}_ai AFTER INSERT ON {table} BEGIN {new} END",
                f"CREATE TRIGGER fv_insight_{short}_ad AFTER DELETE ON {table} BEGIN {old} END",
                f"CREATE TRIGGER fv_insight_{short}_au AFTER UPDATE ON {table} "
                f"BEGIN {old} {new} END",
            ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def drop(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    statements: list[str] = []
    postgres = connection.vendor == "postgresql"
    for table, short in (("forkview_spans", "spans"), ("forkview_traces", "traces")):
        for event in ("ai", "ad", "au", "at") if postgres else ("ai", "ad", "au"):
            on = f" ON {table}" if postgres else ""
            statements.append(f"DROP TRIGGER IF EXISTS fv_insight_{short}_{event}{on}")
    if postgres:
        statements += [
            "DROP FUNCTION IF EXISTS fv_insight_spans_changed()",
            "DROP FUNCTION IF EXISTS fv_insight_traces_changed()",
            "DROP FUNCTION IF EXISTS fv_insight_truncated()",
        ]
    statements += [f"DROP TABLE IF EXISTS {TABLE}", f"DROP TABLE IF EXISTS {CHANGES}"]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0011_span_costs")]

    operations = [migrations.RunPython(create, drop)]
