"""Per-day rollups behind ``/insights/`` (tables ``forkview_insight_days`` and
``forkview_insight_changes``, migration 0012).

One SQL shape, two uses: :func:`day_rows_sql` computes a set of UTC days' rows from the spans
and traces; :func:`rows` reads a range: the stored rows of the days before yesterday, plus,
computed in the same query, the days among those that are not stored yet and yesterday and
today (always live); it then stores what it computed for the missing days.

Triggers (migration 0012) keep the stored days right: when a span or trace of a day before
the current UTC day is written, changed or deleted, that day (and, for a span, its trace's
day) loses its rows and its counter in ``forkview_insight_changes`` goes up by one. A view
stores a day only if its counter has not moved since before the day was computed, so a span
written while a view computes its day is never lost. Writes of yesterday's and today's spans
touch the counters only from the next UTC day on, which is why those two days stay live.

Rows (``kind``):

- ``day``: marker, the day is rolled up (a day with nothing traced has only this row).
- ``turns``: traces started that day: ``calls`` = how many, ``latency`` = the histogram of
  their wall time (start to end, finished ones).
- ``model`` (``name`` = model): response/generation spans started that day: calls, summed
  ``cost_nanos`` (NULL if none priced), ``unpriced`` (calls with NULL cost), tokens, latency
  histogram of ``duration_ms``.
- ``tool`` (``name`` = tool): function spans without a model: calls, ``errors``.
- ``slow``: the day's ``TOP`` slowest linked traces (``name`` = session, ``branch_id``,
  ``turn``, ``started_at``, ``value`` = wall ms).
- ``costly``: the day's ``TOP`` most expensive linked turns: per (session, branch, turn), the
  summed ``cost_nanos`` of the model spans of its traces started that day.

Latency histograms are ``"bucket:count,..."`` over :data:`BUCKETS` log buckets: bucket 0 is
[0, 1 ms), bucket k (1..BUCKETS-2) is [RATIO^(k-1), RATIO^k) ms, the last is everything above
(RATIO^(BUCKETS-2) ms, about 10 hours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction

from conversations.models import MODEL_SPAN_KINDS, AgentSpan, AgentTrace, SpanKind

__all__ = ["BUCKETS", "COLUMNS", "RATIO", "TABLE", "TOP", "bucket_of", "rows"]

TABLE = "forkview_insight_days"
CHANGES = "forkview_insight_changes"
#: Yesterday and today are always computed live (never stored): the triggers skip them.
LIVE_DAYS = 2
TOP = 10
RATIO = 1.25
BUCKETS = 80
COLUMNS = (
    "day",
    "kind",
    "name",
    "calls",
    "errors",
    "unpriced",
    "cost_nanos",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "latency",
    "branch_id",
    "turn",
    "started_at",
    "value",
)


def bucket_of(ms: float) -> int:
    """The histogram bucket of a duration (the SQL's rule, in Python)."""
    if ms < 1:
        return 0
    return min(BUCKETS - 1, 1 + int(math.floor(math.log(ms) / math.log(RATIO))))


# ---- SQL per database --------------------------------------------------------------------


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _day(column: str) -> str:
    if _postgres():
        return f"(({column}) AT TIME ZONE 'UTC')::date"
    return f"date({column})"


def _duration_ms(start: str, end: str) -> str:
    if _postgres():
        return f"(EXTRACT(EPOCH FROM ({end} - {start})) * 1000.0)"
    return f"((julianday({end}) - julianday({start})) * 86400000.0)"


def _bucket(x: str) -> str:
    least = "LEAST" if _postgres() else "MIN"
    return (
        f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} < 1 THEN 0 ELSE {least}({BUCKETS - 1}, "
        f"1 + CAST(FLOOR(LN({x}) / LN({RATIO})) AS INTEGER)) END"
    )


def _histogram(bucket: str, count: str) -> str:
    """Aggregate (bucket, count) rows into ``"b:n,b:n"`` (NULL buckets left out)."""
    item = (
        f"CASE WHEN {bucket} IS NOT NULL "
        f"THEN CAST({bucket} AS TEXT) || ':' || CAST({count} AS TEXT) END"
    )
    if _postgres():
        return f"COALESCE(string_agg({item}, ','), '')"
    return f"COALESCE(group_concat({item}, ','), '')"


def _null(kind: str) -> str:
    types = {
        "text": "TEXT",
        "int": "BIGINT",
        "float": "DOUBLE PRECISION" if _postgres() else "REAL",
        "time": "TIMESTAMP WITH TIME ZONE" if _postgres() else "DATETIME",
    }
    return f"CAST(NULL AS {types[kind]})"


def _text(value: str) -> str:
    return f"CAST('{value}' AS TEXT)"


def _quoted(model: type[Any]) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _bound(day: date) -> datetime | str:
    """Midnight UTC of ``day`` as the database compares it (SQLite: the stored text form, so
    a span at exactly midnight is inside its day)."""
    if _postgres():
        return datetime.combine(day, time(0), tzinfo=UTC)
    return f"{day.isoformat()} 00:00:00"


def day_rows_sql(days: Sequence[date]) -> list[tuple[str, list[Any]]]:
    """SELECTs giving the rows (:data:`COLUMNS`) of ``days`` (not empty), one per kind."""
    low = _bound(min(days))
    high = _bound(max(days) + timedelta(days=1))
    marks = ", ".join(["%s"] * len(days))
    day_list = list(days)
    traces, spans = _quoted(AgentTrace), _quoted(AgentSpan)
    kinds = list(MODEL_SPAN_KINDS)
    kind_marks = ", ".join(["%s"] * len(kinds))
    trace_day, span_day = _day("t.started_at"), _day("s.started_at")
    wall = _duration_ms("t.started_at", "t.ended_at")
    in_trace_days = f"t.started_at >= %s AND t.started_at < %s AND {trace_day} IN ({marks})"
    in_span_days = f"s.started_at >= %s AND s.started_at < %s AND {span_day} IN ({marks})"
    linked = "t.session_id IS NOT NULL AND t.turn IS NOT NULL"
    no_trace = (
        f"{_null('text')}, {_null('int')}, {_null('time')}, {_null('float')}"  # branch..value
    )
    queries: list[tuple[str, list[Any]]] = []

    # Turns: traces started that day, the histogram of their wall time.
    queries.append(
        (
            f"SELECT d, {_text('turns')}, {_text('')}, SUM(n), 0, 0, {_null('int')}, 0, 0, 0, "
            f"{_histogram('b', 'n')}, {no_trace} FROM (SELECT {trace_day} AS d, "
            f"{_bucket(f'CASE WHEN t.ended_at IS NULL THEN NULL ELSE {wall} END')} AS b, "
            f"COUNT(*) AS n FROM {traces} t WHERE {in_trace_days} GROUP BY 1, 2) q GROUP BY d",
            [low, high, *day_list],
        )
    )
    # Model calls per model: calls, stored costs, no-price calls, tokens, latency histogram.
    queries.append(
        (
            f"SELECT d, {_text('model')}, m, SUM(n), 0, SUM(u), SUM(c), SUM(i), SUM(ci), SUM(o), "
            f"{_histogram('b', 'n')}, {no_trace} FROM (SELECT {span_day} AS d, "
            f"COALESCE(s.model, '') AS m, {_bucket('s.duration_ms')} AS b, COUNT(*) AS n, "
            "SUM(CASE WHEN s.cost_nanos IS NULL THEN 1 ELSE 0 END) AS u, SUM(s.cost_nanos) AS c, "
            "SUM(COALESCE(s.input_tokens, 0)) AS i, SUM(COALESCE(s.cached_input_tokens, 0)) AS ci, "
            f"SUM(COALESCE(s.output_tokens, 0)) AS o FROM {spans} s WHERE s.kind IN ({kind_marks}) "
            f"AND {in_span_days} GROUP BY 1, 2, 3) q GROUP BY d, m",
            [*kinds, low, high, *day_list],
        )
    )
    # Tools (function spans carry no model: the fv_span_kind_model index's prefix).
    queries.append(
        (
            f"SELECT {span_day}, {_text('tool')}, COALESCE(s.name, ''), COUNT(*), "
            "SUM(CASE WHEN s.error IS NULL THEN 0 ELSE 1 END), 0, "
            f"{_null('int')}, 0, 0, 0, {_text('')}, {no_trace} FROM {spans} s "
            f"WHERE s.kind = %s AND s.model IS NULL AND {in_span_days} "
            f"GROUP BY 1, COALESCE(s.name, '')",
            [SpanKind.FUNCTION.value, low, high, *day_list],
        )
    )
    # The day's slowest linked traces.
    queries.append(
        (
            f"SELECT d, {_text('slow')}, sid, 1, 0, 0, {_null('int')}, 0, 0, 0, {_text('')}, "
            f"bid, turn, at, ms FROM (SELECT {trace_day} AS d, t.session_id AS sid, "
            "COALESCE(t.branch_id, '') AS bid, t.turn AS turn, t.started_at AS at, "
            f"{wall} AS ms, ROW_NUMBER() OVER (PARTITION BY {trace_day} ORDER BY {wall} DESC, "
            f"t.started_at DESC, t.trace_id) AS rn FROM {traces} t WHERE {in_trace_days} "
            f"AND t.ended_at IS NOT NULL AND {linked}) q WHERE rn <= {TOP}",
            [low, high, *day_list],
        )
    )
    # The day's most expensive linked turns: the stored costs of their traces' model spans.
    queries.append(
        (
            f"SELECT d, {_text('costly')}, sid, 1, 0, 0, c, 0, 0, 0, {_text('')}, bid, turn, at, "
            f"{_null('float')} FROM (SELECT d, sid, bid, turn, at, c, ROW_NUMBER() OVER "
            "(PARTITION BY d ORDER BY c DESC, at DESC, sid, bid, turn) AS rn FROM "
            f"(SELECT {trace_day} AS d, t.session_id AS sid, COALESCE(t.branch_id, '') AS bid, "
            "t.turn AS turn, MIN(t.started_at) AS at, SUM(s.cost_nanos) AS c "
            f"FROM {traces} t JOIN {spans} s ON s.trace_id = t.trace_id "
            f"AND s.kind IN ({kind_marks}) WHERE {in_trace_days} AND {linked} "
            f"GROUP BY 1, 2, 3, 4 HAVING SUM(s.cost_nanos) > 0) g) q WHERE rn <= {TOP}",
            [*kinds, low, high, *day_list],
        )
    )
    return queries


def _store(days: Sequence[date], changes: dict[date, int], computed: list[tuple[Any, ...]]) -> None:
    """Store the ``computed`` rows of ``days`` (past days), except those of a day whose change
    counter moved since ``changes`` was read (a span or trace of it was written while the rows
    were computed: they may miss it). The check and the writes are atomic: PostgreSQL takes a
    SHARE ROW EXCLUSIVE lock on the counters (NOWAIT: a span write in flight holds them; then
    nothing is stored this time); SQLite's write lock, taken by the DELETE, fails if another
    connection wrote since the counters were read in this transaction. Either way a failure
    only means the days are computed again next time."""
    marks = ", ".join(["%s"] * len(days))
    columns = ", ".join(COLUMNS)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            if _postgres():
                cursor.execute(f"LOCK TABLE {CHANGES} IN SHARE ROW EXCLUSIVE MODE NOWAIT")
            cursor.execute(f"SELECT day, gen FROM {CHANGES} WHERE day IN ({marks})", list(days))
            now = {as_date(d): int(g) for d, g in cursor.fetchall()}
            keep = [d for d in days if now.get(d) == changes.get(d)]
            if not keep:
                return
            kept = set(keep)
            # Replaces the rows of a view that stored the same days meanwhile.
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE day IN ({', '.join(['%s'] * len(keep))})", keep
            )
            marker = (None, "day", "", 0, 0, 0, None, 0, 0, 0, "", None, None, None, None)
            cursor.executemany(
                f"INSERT INTO {TABLE} ({columns}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                [row for row in computed if as_date(row[0]) in kept]
                + [(day, *marker[1:]) for day in keep],
            )
    except DatabaseError:
        return


def as_date(value: Any) -> date:
    """A day as the database returns it (a date, a datetime, or ISO text on SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def rows(start: date, end: date, today: date) -> list[tuple[Any, ...]]:
    """The rows (:data:`COLUMNS`, markers left out) of the days ``start``..``end``: stored
    ones for the days before yesterday (computed and stored first if missing), computed live
    for yesterday and today (and any later day: the triggers leave them alone).

    Queries: 2 when every storable day is stored (which are, with their change counters; the
    read, with the live days computed in it); when some are missing, whatever their number,
    5 more (6 on PostgreSQL: the lock): a savepoint, the counters, a DELETE, one
    ``executemany`` INSERT, the release."""
    last_stored = min(end, today - timedelta(days=LIVE_DAYS))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT day, 0 FROM {TABLE} WHERE kind = 'day' AND day >= %s AND day <= %s "
            f"UNION ALL SELECT day, gen FROM {CHANGES} WHERE day >= %s AND day <= %s",
            [start, last_stored, start, last_stored],
        )
        stored: set[date] = set()
        changes: dict[date, int] = {}
        for day, gen in cursor.fetchall():
            if int(gen):
                changes[as_date(day)] = int(gen)
            else:
                stored.add(as_date(day))
    storable = [start + timedelta(days=i) for i in range((last_stored - start).days + 1)]
    missing = [d for d in storable if d not in stored]
    first_live = max(start, last_stored + timedelta(days=1))
    live = [first_live + timedelta(days=i) for i in range((end - first_live).days + 1)]
    compute = missing + live
    columns = ", ".join(COLUMNS)
    parts = [f"SELECT {columns} FROM {TABLE} WHERE kind <> 'day' AND day >= %s AND day <= %s"]
    params: list[Any] = [start, last_stored]
    if missing:
        parts[0] += f" AND day NOT IN ({', '.join(['%s'] * len(missing))})"
        params += missing
    if compute:
        for sql, more in day_rows_sql(compute):
            parts.append(sql)
            params += more
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        result = list(cursor.fetchall())
    if missing:
        wanted = set(missing)
        _store(missing, changes, [row for row in result if as_date(row[0]) in wanted])
    return result
