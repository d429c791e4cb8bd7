"""The insights page's numbers (issue 16 item 5): latency and cost over days and models, tool
error rates, the slowest and the most expensive turns, for a range of days (UTC).

Everything is aggregated in SQL over the indexed time ranges (``fv_trace_started`` on traces,
``fv_span_kind_model`` on spans: ``kind`` = and, for tools, ``model IS NULL``, then the
``started_at`` range): 6 queries whatever the number of sessions, traces or models, and every
query returns a bounded number of rows (one per day, model or tool, or the top ``TOP``).

Percentiles are ``percentile_cont`` (linear interpolation): PostgreSQL computes them itself;
on SQLite a window query returns only the (at most 4) ranked values around p50 and p95 of each
group and Python interpolates, so both databases give the same numbers.

Cost: ``conversations.costs`` prices are linear below any long-context tier, so each model's
per-token rates (input, cached input, output; probed at 1,000 tokens, at the day of the calls)
times the summed tokens of a day give that day's cost. The most expensive turns are ranked in
SQL with the same rates (at the range's last day). Models without a price are counted as
"no price" calls, never guessed; the offline demo model is free.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import connection

from conversations.costs import FREE_MODELS, format_usd, response_cost
from conversations.models import AgentSpan, AgentTrace, SpanKind
from dashboard.links import session_url

__all__ = ["TOP", "Insights", "insights_get"]

TOP = 10
_PROBE = 1000
_MODEL_KINDS = (SpanKind.RESPONSE.value, SpanKind.GENERATION.value)
_P = (0.5, 0.95)


@dataclass(frozen=True)
class Rates:
    """Dollars per token."""

    input: Decimal
    cached_input: Decimal
    output: Decimal

    def cost(self, input_tokens: int, output_tokens: int, cached: int) -> Decimal:
        cached = min(cached, input_tokens)
        return (
            (input_tokens - cached) * self.input
            + cached * self.cached_input
            + output_tokens * self.output
        )


@lru_cache(maxsize=4096)
def rates(model: str, day: date | None = None) -> Rates | None:
    """The per-token rates of ``model`` (None: no price)."""
    at = datetime.combine(day, time(12), tzinfo=UTC) if day else None

    def probe(inp: int, out: int, cached: int) -> Decimal | None:
        return response_cost(
            model=model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached, at=at
        ).usd

    values = (probe(_PROBE, 0, 0), probe(_PROBE, 0, _PROBE), probe(0, _PROBE, 0))
    if any(v is None for v in values):
        return None
    inp, cached, out = (v / _PROBE for v in values if v is not None)
    return Rates(input=inp, cached_input=cached, output=out)


@dataclass(frozen=True)
class DayRow:
    day: date
    turns: int  # traces started that day
    p50_ms: float | None
    p95_ms: float | None
    model_calls: int
    usd: Decimal
    usd_by_model: dict[str, Decimal]
    unpriced_calls: int

    @property
    def usd_display(self) -> str:
        return format_usd(self.usd)


@dataclass(frozen=True)
class ModelRow:
    model: str
    calls: int
    p50_ms: float | None
    p95_ms: float | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    usd: Decimal | None  # None: no price
    free: bool

    @property
    def usd_display(self) -> str:
        return "free" if self.free else format_usd(self.usd)


@dataclass(frozen=True)
class ToolRow:
    tool: str
    calls: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class TurnRow:
    session_id: str
    branch_id: str
    turn: int
    started_at: datetime | None
    duration_ms: float | None = None
    usd: Decimal | None = None

    @property
    def url(self) -> str:
        return session_url(self.session_id, self.branch_id, self.turn)

    @property
    def usd_display(self) -> str:
        return format_usd(self.usd)


@dataclass(frozen=True)
class Insights:
    start: date
    end: date  # inclusive
    days: tuple[DayRow, ...]
    models: tuple[ModelRow, ...]
    tools: tuple[ToolRow, ...]
    slowest: tuple[TurnRow, ...]
    costliest: tuple[TurnRow, ...]
    turns: int = 0
    model_calls: int = 0
    usd: Decimal = Decimal(0)
    unpriced_calls: int = 0
    free_calls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usd_display(self) -> str:
        return format_usd(self.usd)

    @property
    def empty(self) -> bool:
        return not self.turns and not self.model_calls and not self.tools

    def as_json(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        def usd(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        def turn(row: TurnRow) -> dict[str, Any]:
            return {
                "session_id": row.session_id,
                "branch": row.branch_id,
                "turn": row.turn,
                "started_at": row.started_at.isoformat() if row.started_at else None,
                "duration_ms": ms(row.duration_ms),
                "usd": usd(row.usd),
                "url": row.url,
            }

        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "totals": {
                "turns": self.turns,
                "model_calls": self.model_calls,
                "usd": str(self.usd),
                "usd_display": format_usd(self.usd),
                "unpriced_calls": self.unpriced_calls,
                "free_calls": self.free_calls,
            },
            "days": [
                {
                    "day": d.day.isoformat(),
                    "turns": d.turns,
                    "p50_ms": ms(d.p50_ms),
                    "p95_ms": ms(d.p95_ms),
                    "model_calls": d.model_calls,
                    "usd": str(d.usd),
                    "usd_by_model": {m: str(v) for m, v in sorted(d.usd_by_model.items())},
                    "unpriced_calls": d.unpriced_calls,
                }
                for d in self.days
            ],
            "models": [
                {
                    "model": m.model,
                    "calls": m.calls,
                    "p50_ms": ms(m.p50_ms),
                    "p95_ms": ms(m.p95_ms),
                    "input_tokens": m.input_tokens,
                    "cached_input_tokens": m.cached_input_tokens,
                    "output_tokens": m.output_tokens,
                    "usd": usd(m.usd),
                    "free": m.free,
                }
                for m in self.models
            ],
            "tools": [
                {
                    "tool": t.tool,
                    "calls": t.calls,
                    "errors": t.errors,
                    "error_rate": round(t.error_rate, 6),
                }
                for t in self.tools
            ],
            "slowest_turns": [turn(r) for r in self.slowest],
            "costliest_turns": [turn(r) for r in self.costliest],
        }


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


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    from conversations.items import parse_timestamp

    return parse_timestamp(str(value))


def _interpolate(ranked: dict[int, float], n: int, p: float) -> float | None:
    if n == 0:
        return None
    position = 1 + p * (n - 1)
    low = int(position)
    fraction = position - low
    lo = ranked.get(low)
    if lo is None:
        return None
    if fraction == 0 or low >= n:
        return lo
    hi = ranked.get(low + 1, lo)
    return lo + (hi - lo) * fraction


_Stats = tuple[int, float | None, float | None]  # (count, p50, p95)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _percentiles(inner: str, params: list[Any]) -> dict[Any, _Stats]:
    """group -> (count, p50, p95) of ``inner``'s (g, x) rows (x not NULL): one query."""
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute(
                "SELECT g, COUNT(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY x), "
                f"percentile_cont(0.95) WITHIN GROUP (ORDER BY x) FROM ({inner}) q GROUP BY g",
                params,
            )
            return {g: (int(n), _num(p50), _num(p95)) for g, n, p50, p95 in cursor.fetchall()}
        # SQLite: only the ranked values around each percentile's position leave the database.
        lows = [f"CAST(1 + {p} * (n - 1) AS INTEGER)" for p in _P]
        wanted = " OR ".join(f"rn = {low} OR rn = {low} + 1" for low in lows)
        cursor.execute(
            "SELECT g, n, rn, x FROM (SELECT g, x, ROW_NUMBER() OVER (PARTITION BY g ORDER BY x) "
            f"AS rn, COUNT(*) OVER (PARTITION BY g) AS n FROM ({inner}) q) r WHERE {wanted}",
            params,
        )
        ranked: dict[Any, dict[int, float]] = defaultdict(dict)
        counts: dict[Any, int] = {}
        for g, n, rn, x in cursor.fetchall():
            ranked[g][int(rn)] = float(x)
            counts[g] = int(n)
        return {
            g: (n, _interpolate(ranked[g], n, _P[0]), _interpolate(ranked[g], n, _P[1]))
            for g, n in counts.items()
        }


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(start, time(0), tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC),
    )


def insights_get(*, start: date, end: date) -> Insights:
    """The insights of the days ``start``..``end`` (inclusive, UTC): 6 queries."""
    low, high = _bounds(start, end)
    traces = connection.ops.quote_name(AgentTrace._meta.db_table)
    spans = connection.ops.quote_name(AgentSpan._meta.db_table)
    kinds = list(_MODEL_KINDS)

    # 1. Tokens and calls per (day, model) of the model spans.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_day('s.started_at')}, s.model, COUNT(*), SUM(COALESCE(s.input_tokens, 0)), "
            "SUM(COALESCE(s.cached_input_tokens, 0)), SUM(COALESCE(s.output_tokens, 0)) "
            f"FROM {spans} s WHERE s.kind IN (%s, %s) AND s.started_at >= %s "
            "AND s.started_at < %s GROUP BY 1, 2",
            [*kinds, low, high],
        )
        day_model = cursor.fetchall()

    # 2. Latency per day (traces: a turn's wall time) and 3. per model (model calls).
    by_day_latency = {
        _as_date(g): v
        for g, v in _percentiles(
            f"SELECT {_day('t.started_at')} AS g, "
            f"{_duration_ms('t.started_at', 't.ended_at')} AS x FROM {traces} t "
            "WHERE t.started_at >= %s AND t.started_at < %s AND t.ended_at IS NOT NULL",
            [low, high],
        ).items()
    }
    by_model_latency = _percentiles(
        f"SELECT COALESCE(s.model, '') AS g, s.duration_ms AS x FROM {spans} s "
        "WHERE s.kind IN (%s, %s) AND s.started_at >= %s AND s.started_at < %s "
        "AND s.duration_ms IS NOT NULL",
        [*kinds, low, high],
    )

    # 4. Tool calls and errors per tool (function spans carry no model: the index's prefix).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.name, COUNT(*), SUM(CASE WHEN s.error IS NULL THEN 0 ELSE 1 END) "
            f"FROM {spans} s WHERE s.kind = %s AND s.model IS NULL AND s.started_at >= %s "
            "AND s.started_at < %s GROUP BY s.name",
            [SpanKind.FUNCTION.value, low, high],
        )
        tools = tuple(
            sorted(
                (
                    ToolRow(tool=name or "", calls=int(n), errors=int(e or 0))
                    for name, n, e in cursor.fetchall()
                ),
                key=lambda t: (-t.error_rate, -t.calls, t.tool),
            )
        )

    # 5. The slowest linked turns.
    duration = _duration_ms("t.started_at", "t.ended_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.session_id, t.branch_id, t.turn, t.started_at, {duration} AS d "
            f"FROM {traces} t WHERE t.started_at >= %s AND t.started_at < %s "
            "AND t.ended_at IS NOT NULL AND t.session_id IS NOT NULL AND t.turn IS NOT NULL "
            f"ORDER BY d DESC, t.started_at DESC LIMIT {TOP}",
            [low, high],
        )
        slowest = tuple(
            TurnRow(sid, branch or "", int(turn), _as_datetime(at), duration_ms=float(d))
            for sid, branch, turn, at, d in cursor.fetchall()
        )

    # Prices: per (day, model) rates; the model totals.
    days: dict[date, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}
    total_usd, unpriced, free_calls, calls_total = Decimal(0), 0, 0, 0
    for raw_day, raw_model, n, inp, cached, out in day_model:
        day, model = _as_date(raw_day), raw_model or ""
        n, inp, cached, out = int(n), int(inp or 0), int(cached or 0), int(out or 0)
        calls_total += n
        bucket = days.setdefault(day, {"calls": 0, "usd": Decimal(0), "by": {}, "unpriced": 0})
        entry = models.setdefault(
            model, {"calls": 0, "in": 0, "cached": 0, "out": 0, "usd": Decimal(0), "priced": True}
        )
        bucket["calls"] += n
        entry["calls"] += n
        entry["in"] += inp
        entry["cached"] += cached
        entry["out"] += out
        rate = rates(model, day) if model else None
        if rate is None:
            bucket["unpriced"] += n
            entry["priced"] = False
            unpriced += n
            continue
        if model.lower() in FREE_MODELS:
            free_calls += n
        usd = rate.cost(inp, out, cached)
        bucket["usd"] += usd
        bucket["by"][model] = bucket["by"].get(model, Decimal(0)) + usd
        entry["usd"] += usd
        total_usd += usd

    # 6. The most expensive linked turns (their model calls in the range), ranked in SQL with
    # the models' rates.
    cases: list[str] = []
    case_params: list[Any] = []
    for model in sorted(models):
        r = rates(model, end) if model else None
        if r is None or not (r.input or r.cached_input or r.output):
            continue
        cases.append(
            "WHEN %s THEN (COALESCE(s.input_tokens, 0) - COALESCE(s.cached_input_tokens, 0)) * %s"
            " + COALESCE(s.cached_input_tokens, 0) * %s + COALESCE(s.output_tokens, 0) * %s"
        )
        case_params += [model, float(r.input), float(r.cached_input), float(r.output)]
    cost_sql = f"CASE s.model {' '.join(cases)} ELSE 0 END" if cases else "0"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.session_id, t.branch_id, t.turn, MIN(t.started_at), SUM(c.usd) AS total "
            f"FROM (SELECT s.trace_id, SUM({cost_sql}) AS usd FROM {spans} s "
            "WHERE s.kind IN (%s, %s) AND s.started_at >= %s AND s.started_at < %s "
            f"GROUP BY s.trace_id) c JOIN {traces} t ON t.trace_id = c.trace_id "
            "WHERE t.session_id IS NOT NULL AND t.turn IS NOT NULL "
            "GROUP BY t.session_id, t.branch_id, t.turn HAVING SUM(c.usd) > 0 "
            f"ORDER BY total DESC, MIN(t.started_at) DESC LIMIT {TOP}",
            [*case_params, *kinds, low, high],
        )
        costliest = tuple(
            TurnRow(
                sid,
                branch or "",
                int(turn),
                _as_datetime(at),
                usd=Decimal(str(round(float(c), 10))),
            )
            for sid, branch, turn, at, c in cursor.fetchall()
        )

    day_rows = []
    turns_total = 0
    current = start
    while current <= end:
        n_turns, p50, p95 = by_day_latency.get(current, (0, None, None))
        turns_total += n_turns
        bucket = days.get(current, {"calls": 0, "usd": Decimal(0), "by": {}, "unpriced": 0})
        day_rows.append(
            DayRow(
                day=current,
                turns=n_turns,
                p50_ms=p50,
                p95_ms=p95,
                model_calls=bucket["calls"],
                usd=bucket["usd"],
                usd_by_model=bucket["by"],
                unpriced_calls=bucket["unpriced"],
            )
        )
        current += timedelta(days=1)

    model_rows = tuple(
        sorted(
            (
                ModelRow(
                    model=model,
                    calls=entry["calls"],
                    p50_ms=by_model_latency.get(model, (0, None, None))[1],
                    p95_ms=by_model_latency.get(model, (0, None, None))[2],
                    input_tokens=entry["in"],
                    cached_input_tokens=entry["cached"],
                    output_tokens=entry["out"],
                    usd=entry["usd"] if entry["priced"] else None,
                    free=model.lower() in FREE_MODELS,
                )
                for model, entry in models.items()
            ),
            key=lambda m: (-(m.usd or 0), -m.calls, m.model),
        )
    )
    return Insights(
        start=start,
        end=end,
        days=tuple(day_rows),
        models=model_rows,
        tools=tools,
        slowest=slowest,
        costliest=costliest,
        turns=turns_total,
        model_calls=calls_total,
        usd=total_usd,
        unpriced_calls=unpriced,
        free_calls=free_calls,
    )
