"""The insights page's numbers (issue 16 item 5): latency and cost over days and models, tool
error rates, the slowest and the most expensive turns, for a range of UTC days.

Everything comes from per-day rollups (``dashboard/insights/rollup.py``, table
``forkview_insight_days``): a past day is rolled up in SQL the first time a view needs it and
read back afterwards; yesterday and today (and any later day) are always computed live;
triggers on the span and trace tables drop a day's rollup whenever a span or trace of that
day is written, changed or deleted. So a view runs a constant number of queries (2 when the
days are rolled up) and its cost grows with the number of days and with yesterday's and
today's spans, not with the spans of the other days.

Cost is what was recorded with each model span (``AgentSpan.cost_nanos``, priced once when the
span was written): summed in SQL; model spans with no recorded cost are counted as "no price"
calls, never guessed; the offline demo model is "free". Nothing here prices anything.

Latency percentiles (p50/p95 of a turn's wall time per day, of a model call per model) are
merged from log-bucket histograms (buckets growing by ``RATIO`` = 1.25 from 1 ms): the
estimate interpolates between the buckets' geometric midpoints exactly as ``percentile_cont``
interpolates between the ranked values, so it is within a factor √1.25 (±11.8 %) of the exact
``percentile_cont`` for durations from 1 ms to ~10 h (within 0.5 ms below 1 ms). Shown as "≈".

The slowest turns are exact (every trace is in its start day's top ``TOP``). The most
expensive turns sum, per (session, branch, turn), the stored costs of the model spans of its
traces started in the range; per day the top ``TOP`` are kept, so the ranking is exact when a
turn's traces start on one UTC day (one run, one trace: the usual case).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from conversations.costs import FREE_MODELS, format_usd, from_nanos
from dashboard.links import session_url

from .rollup import BUCKETS, RATIO, TOP, as_date, rows

__all__ = ["ERROR_FACTOR", "TOP", "Insights", "insights_get", "percentile"]

_P = (0.5, 0.95)
#: The largest factor between a histogram percentile and the exact one (from 1 ms up).
ERROR_FACTOR = math.sqrt(RATIO)


@dataclass(frozen=True)
class DayRow:
    day: date
    turns: int  # traces started that day
    p50_ms: float | None  # histogram estimates (≈)
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
    usd: Decimal | None  # None: none of its calls has a price
    free: bool
    unpriced_calls: int = 0

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
            "percentiles": {
                "method": "log-bucket histogram",
                "bucket_ratio": RATIO,
                "max_relative_error": round(ERROR_FACTOR - 1, 4),
            },
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
                    "unpriced_calls": m.unpriced_calls,
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


# ---- histograms ----------------------------------------------------------------------------

Histogram = dict[int, int]  # bucket -> count


def _parse(text: str, into: Histogram) -> None:
    for item in text.split(","):
        if item:
            bucket, count = item.split(":")
            into[int(bucket)] = into.get(int(bucket), 0) + int(count)


def _midpoint(bucket: int) -> float:
    """A bucket's representative value: its geometric midpoint (0.5 ms for [0, 1 ms))."""
    if bucket <= 0:
        return 0.5
    return float(RATIO ** (bucket - 1) * math.sqrt(RATIO))


def percentile(histogram: Histogram, p: float) -> float | None:
    """``percentile_cont(p)`` of the histogram's values, each taken as its bucket's midpoint."""
    n = sum(histogram.values())
    if not n:
        return None
    position = p * (n - 1)
    low = int(position)
    fraction = position - low
    ranks = (low, min(low + 1, n - 1))
    values: list[float] = []
    seen = 0
    for bucket in range(BUCKETS):
        count = histogram.get(bucket, 0)
        while len(values) < 2 and ranks[len(values)] < seen + count:
            values.append(_midpoint(bucket))
        seen += count
        if len(values) == 2:
            break
    return values[0] + (values[1] - values[0]) * fraction


# ---- the page ------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp from a raw row (SQLite: text), aware in UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        from conversations.items import parse_timestamp

        value = parse_timestamp(str(value))
        if value is None:
            return None
    stamp: datetime = value
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _today() -> date:
    return datetime.now(tz=UTC).date()


def insights_get(*, start: date, end: date, today: date | None = None) -> Insights:
    """The insights of the days ``start``..``end`` (inclusive, UTC); days before yesterday
    (``today``: the current UTC day) from their rollups. 2 queries when they are rolled up."""
    day_turns: dict[date, int] = defaultdict(int)
    day_hist: dict[date, Histogram] = defaultdict(dict)
    day_calls: dict[date, int] = defaultdict(int)
    day_nanos: dict[date, int] = defaultdict(int)
    day_by_model: dict[date, dict[str, int]] = defaultdict(dict)
    day_unpriced: dict[date, int] = defaultdict(int)
    models: dict[str, dict[str, int]] = {}
    model_hist: dict[str, Histogram] = defaultdict(dict)
    tools: dict[str, list[int]] = {}
    slow: list[tuple[float, datetime | None, str, str, int]] = []
    costly: dict[tuple[str, str, int], list[Any]] = {}

    for row in rows(start, end, today or _today()):
        raw_day, kind, name, calls, errors, unpriced, nanos = row[:7]
        inp, cached, out, latency, branch, turn, at, value = row[7:]
        day, calls = as_date(raw_day), int(calls or 0)
        if kind == "turns":
            day_turns[day] += calls
            _parse(latency or "", day_hist[day])
        elif kind == "model":
            nanos, unpriced = int(nanos or 0), int(unpriced or 0)
            day_calls[day] += calls
            day_unpriced[day] += unpriced
            if calls > unpriced:
                day_nanos[day] += nanos
                day_by_model[day][name] = day_by_model[day].get(name, 0) + nanos
            entry = models.setdefault(
                name, {"calls": 0, "unpriced": 0, "nanos": 0, "in": 0, "cached": 0, "out": 0}
            )
            entry["calls"] += calls
            entry["unpriced"] += unpriced
            entry["nanos"] += nanos
            entry["in"] += int(inp or 0)
            entry["cached"] += int(cached or 0)
            entry["out"] += int(out or 0)
            _parse(latency or "", model_hist[name])
        elif kind == "tool":
            counts = tools.setdefault(name, [0, 0])
            counts[0] += calls
            counts[1] += int(errors or 0)
        elif kind == "slow":
            slow.append((float(value), _as_datetime(at), name, branch or "", int(turn)))
        elif kind == "costly":
            key = (name, branch or "", int(turn))
            started = _as_datetime(at)
            candidate = costly.setdefault(key, [0, started])
            candidate[0] += int(nanos or 0)
            if started is not None and (candidate[1] is None or started < candidate[1]):
                candidate[1] = started

    day_rows = []
    current = start
    while current <= end:
        hist = day_hist.get(current, {})
        day_rows.append(
            DayRow(
                day=current,
                turns=day_turns.get(current, 0),
                p50_ms=percentile(hist, _P[0]),
                p95_ms=percentile(hist, _P[1]),
                model_calls=day_calls.get(current, 0),
                usd=from_nanos(day_nanos.get(current, 0)) or Decimal(0),
                usd_by_model={
                    m: from_nanos(v) or Decimal(0) for m, v in day_by_model.get(current, {}).items()
                },
                unpriced_calls=day_unpriced.get(current, 0),
            )
        )
        current += timedelta(days=1)

    model_rows = tuple(
        sorted(
            (
                ModelRow(
                    model=model,
                    calls=e["calls"],
                    p50_ms=percentile(model_hist.get(model, {}), _P[0]),
                    p95_ms=percentile(model_hist.get(model, {}), _P[1]),
                    input_tokens=e["in"],
                    cached_input_tokens=e["cached"],
                    output_tokens=e["out"],
                    usd=from_nanos(e["nanos"]) if e["calls"] > e["unpriced"] else None,
                    free=model.lower() in FREE_MODELS
                    and e["calls"] > e["unpriced"]
                    and e["nanos"] == 0,
                    unpriced_calls=e["unpriced"],
                )
                for model, e in models.items()
            ),
            key=lambda m: (-(m.usd or 0), -m.calls, m.model),
        )
    )
    tool_rows = tuple(
        sorted(
            (ToolRow(tool=name, calls=c, errors=e) for name, (c, e) in tools.items()),
            key=lambda t: (-t.error_rate, -t.calls, t.tool),
        )
    )
    epoch = datetime.min.replace(tzinfo=UTC)
    slow.sort(key=lambda r: (-r[0], -(((r[1] or epoch) - epoch).total_seconds())))
    slowest = tuple(
        TurnRow(sid, branch, turn, at, duration_ms=ms) for ms, at, sid, branch, turn in slow[:TOP]
    )
    ranked = sorted(
        costly.items(),
        key=lambda kv: (-kv[1][0], -(((kv[1][1] or epoch) - epoch).total_seconds()), kv[0]),
    )
    costliest = tuple(
        TurnRow(sid, branch, turn, started, usd=from_nanos(nanos))
        for (sid, branch, turn), (nanos, started) in ranked[:TOP]
        if nanos > 0
    )
    free_calls = sum(
        e["calls"] - e["unpriced"] for m, e in models.items() if m.lower() in FREE_MODELS
    )
    return Insights(
        start=start,
        end=end,
        days=tuple(day_rows),
        models=model_rows,
        tools=tool_rows,
        slowest=slowest,
        costliest=costliest,
        turns=sum(d.turns for d in day_rows),
        model_calls=sum(d.model_calls for d in day_rows),
        usd=from_nanos(sum(day_nanos.values())) or Decimal(0),
        unpriced_calls=sum(d.unpriced_calls for d in day_rows),
        free_calls=free_calls,
    )
