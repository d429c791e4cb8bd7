"""The insights page (issue 16 item 5): its numbers against a direct computation over the
span and trace rows (also after a rolled-up past day gains, loses or changes spans; today
live), the histogram percentiles' stated error, the date range and its errors, permissions,
the empty state, and a constant number of queries at two sizes (both databases)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.costs import FREE_MODELS, MODEL_SPAN_KINDS, from_nanos
from conversations.models import AgentSpan, AgentTrace
from dashboard.insights import rollup
from dashboard.insights.rollup import TABLE, bucket_of
from dashboard.insights.selectors import ERROR_FACTOR, TOP, insights_get, percentile
from dashboard.links import session_url
from tests.conftest import grant

pytestmark = pytest.mark.django_db

END = date(2026, 11, 30)
START = END - timedelta(days=6)
MODELS = [
    "gpt-4o",
    "gpt-4.1-mini",
    "o3",
    "claude-sonnet-4-5",
    "acme-llm-7",
    "forkview-offline-demo",
]
TOOLS = ["get_weather", "search_docs", "explode"]


def build(sessions: int, seed: int = 7) -> list[dict]:
    """Traces over START-2 .. END+2 days (some outside the range), each with 1-3 model calls
    and 0-3 tool calls; returns plain dicts of what was written (the from-scratch truth)."""
    rng = random.Random(seed)
    traces, spans, truth = [], [], []
    day0 = datetime.combine(START - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    for s in range(sessions):
        for turn in range(1, rng.randint(1, 4) + 1):
            tid = f"tr-{seed}-{s}-{turn}"
            started = day0 + timedelta(seconds=rng.randint(0, 10 * 86400 - 60))
            wall = rng.uniform(200, 20_000)
            linked = rng.random() > 0.1
            record = {
                "trace_id": tid,
                "session_id": f"sess-{s}" if linked else None,
                "branch_id": ("main" if turn < 3 else "alt") if linked else None,
                "turn": turn if linked else None,
                "started_at": started,
                "ended_at": started + timedelta(milliseconds=wall),
                "wall_ms": wall,
                "calls": [],
                "tools": [],
            }
            traces.append(
                AgentTrace(
                    trace_id=tid,
                    session_id=record["session_id"],
                    branch_id=record["branch_id"],
                    turn=record["turn"],
                    group_id=record["session_id"],
                    started_at=started,
                    ended_at=record["ended_at"],
                )
            )
            offset = 0.0
            for n in range(rng.randint(1, 3)):
                model = rng.choice(MODELS)
                inp = rng.randint(50, 20_000)
                cached = rng.randint(0, inp) if rng.random() < 0.5 else 0
                out = rng.randint(5, 2_000)
                dur = rng.uniform(100, 5_000)
                at = started + timedelta(milliseconds=offset)
                offset += 1
                record["calls"].append((at, model, inp, out, cached, dur))
                spans.append(
                    AgentSpan(
                        span_id=f"{tid}-m{n}",
                        trace_id=tid,
                        kind="response" if n % 2 == 0 else "generation",
                        name=model,
                        model=model,
                        input_tokens=inp,
                        output_tokens=out,
                        cached_input_tokens=cached,
                        reasoning_tokens=0,
                        started_at=at,
                        ended_at=at + timedelta(milliseconds=dur),
                        duration_ms=dur,
                    )
                )
            for n in range(rng.randint(0, 3)):
                tool = rng.choice(TOOLS)
                failed = rng.random() < (0.6 if tool == "explode" else 0.05)
                at = started + timedelta(milliseconds=offset)
                offset += 1
                record["tools"].append((at, tool, failed))
                spans.append(
                    AgentSpan(
                        span_id=f"{tid}-f{n}",
                        trace_id=tid,
                        kind="function",
                        name=tool,
                        started_at=at,
                        ended_at=at,
                        duration_ms=1.0,
                        error={"message": "boom"} if failed else None,
                    )
                )
            truth.append(record)
    AgentTrace.objects.bulk_create(traces, batch_size=500)
    AgentSpan.objects.bulk_create(spans, batch_size=500)
    return truth


def exact_percentile(values: list[float], p: float) -> float | None:
    """percentile_cont: linear interpolation between the ranks around 1 + p (n - 1)."""
    if not values:
        return None
    values = sorted(values)
    pos = p * (len(values) - 1)
    low = int(pos)
    if low + 1 >= len(values):
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (pos - low)


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-3 * max(1.0, abs(b))


def within_bucket_error(estimate: float | None, exact: float | None) -> bool:
    """The stated error of a histogram percentile: a factor √1.25 either way (from 1 ms)."""
    if estimate is None or exact is None:
        return estimate is exact
    assert exact >= 1
    return exact / ERROR_FACTOR * (1 - 1e-9) <= estimate <= exact * ERROR_FACTOR * (1 + 1e-9)


def direct(start: date, end: date) -> dict:
    """The page's numbers computed straight from the span and trace rows (no rollup)."""

    def inside(at: datetime | None) -> bool:
        return at is not None and start <= at.astimezone(UTC).date() <= end

    traces = [t for t in AgentTrace.objects.all() if inside(t.started_at)]
    spans = list(AgentSpan.objects.all())
    model_spans = [s for s in spans if s.kind in MODEL_SPAN_KINDS and inside(s.started_at)]
    days: dict[date, dict] = {}
    for i in range((end - start).days + 1):
        days[start + timedelta(days=i)] = {
            "turns": 0,
            "walls": [],
            "calls": 0,
            "nanos": 0,
            "unpriced": 0,
            "by": {},
        }
    for t in traces:
        d = days[t.started_at.astimezone(UTC).date()]
        d["turns"] += 1
        if t.ended_at is not None:
            d["walls"].append((t.ended_at - t.started_at).total_seconds() * 1000)
    models: dict[str, dict] = {}
    for s in model_spans:
        d = days[s.started_at.astimezone(UTC).date()]
        m = models.setdefault(
            s.model or "",
            {"calls": 0, "unpriced": 0, "nanos": 0, "in": 0, "cached": 0, "out": 0, "ms": []},
        )
        d["calls"] += 1
        m["calls"] += 1
        m["in"] += s.input_tokens or 0
        m["cached"] += s.cached_input_tokens or 0
        m["out"] += s.output_tokens or 0
        m["ms"].append(s.duration_ms)
        if s.cost_nanos is None:
            d["unpriced"] += 1
            m["unpriced"] += 1
        else:
            d["nanos"] += s.cost_nanos
            d["by"][s.model] = d["by"].get(s.model, 0) + s.cost_nanos
            m["nanos"] += s.cost_nanos
    tools: dict[str, tuple[int, int]] = {}
    for s in spans:
        if s.kind == "function" and s.model is None and inside(s.started_at):
            calls, errors = tools.get(s.name, (0, 0))
            tools[s.name] = (calls + 1, errors + (s.error is not None))
    linked = [t for t in traces if t.session_id and t.turn is not None]
    slowest = sorted(
        (t for t in linked if t.ended_at is not None),
        key=lambda t: (-(t.ended_at - t.started_at).total_seconds(), -t.started_at.timestamp()),
    )[:TOP]
    by_trace: dict[str, int] = {}
    for s in spans:
        if s.kind in MODEL_SPAN_KINDS and s.cost_nanos is not None:
            by_trace[s.trace_id] = by_trace.get(s.trace_id, 0) + s.cost_nanos
    per_turn: dict[tuple, int] = {}
    for t in linked:
        key = (t.session_id, t.branch_id or "", t.turn)
        per_turn[key] = per_turn.get(key, 0) + by_trace.get(t.trace_id, 0)
    costliest = sorted(((v, k) for k, v in per_turn.items() if v > 0), key=lambda x: -x[0])[:TOP]
    return {
        "days": days,
        "models": models,
        "tools": tools,
        "slowest": [
            (
                t.session_id,
                t.branch_id or "",
                t.turn,
                (t.ended_at - t.started_at).total_seconds() * 1000,
            )
            for t in slowest
        ],
        "costliest": [(k, v) for v, k in costliest],
    }


def assert_matches(result, truth: dict) -> None:
    """``insights_get``'s numbers equal the direct computation (percentiles: within the
    histogram's stated error)."""
    assert [d.day for d in result.days] == list(truth["days"])
    for row in result.days:
        d = truth["days"][row.day]
        assert row.turns == d["turns"], row
        assert within_bucket_error(row.p50_ms, exact_percentile(d["walls"], 0.5)), row
        assert within_bucket_error(row.p95_ms, exact_percentile(d["walls"], 0.95)), row
        assert row.model_calls == d["calls"], row
        assert row.usd == from_nanos(d["nanos"]), row
        assert row.unpriced_calls == d["unpriced"], row
        assert {m: v for m, v in row.usd_by_model.items()} == {
            m: from_nanos(v) for m, v in d["by"].items()
        }
    assert result.turns == sum(d["turns"] for d in truth["days"].values())
    assert result.model_calls == sum(d["calls"] for d in truth["days"].values())
    assert result.usd == from_nanos(sum(d["nanos"] for d in truth["days"].values()))
    assert result.unpriced_calls == sum(d["unpriced"] for d in truth["days"].values())

    by_model = {m.model: m for m in result.models}
    assert set(by_model) == set(truth["models"])
    for model, row in by_model.items():
        m = truth["models"][model]
        assert (row.calls, row.unpriced_calls) == (m["calls"], m["unpriced"])
        assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (
            m["in"],
            m["cached"],
            m["out"],
        )
        assert within_bucket_error(row.p50_ms, exact_percentile(m["ms"], 0.5)), row
        assert within_bucket_error(row.p95_ms, exact_percentile(m["ms"], 0.95)), row
        if m["unpriced"] == m["calls"]:
            assert row.usd is None and row.usd_display == "no price"
        else:
            assert row.usd == from_nanos(m["nanos"])
        assert row.free == (model in FREE_MODELS)
        if row.free:
            assert row.usd_display == "free"
    assert result.free_calls == sum(
        m["calls"] - m["unpriced"] for name, m in truth["models"].items() if name in FREE_MODELS
    )

    assert {r.tool: (r.calls, r.errors) for r in result.tools} == truth["tools"]

    assert [(r.session_id, r.branch_id, r.turn) for r in result.slowest] == [
        s[:3] for s in truth["slowest"]
    ]
    for row, expected in zip(result.slowest, truth["slowest"], strict=True):
        assert close(row.duration_ms, expected[3])
    assert [((r.session_id, r.branch_id, r.turn), r.usd) for r in result.costliest] == [
        (k, from_nanos(v)) for k, v in truth["costliest"]
    ]


def test_the_numbers_match_a_direct_computation():
    build(60)
    result = insights_get(start=START, end=END)
    assert_matches(result, direct(START, END))
    assert {m.model: m.usd_display for m in result.models}["acme-llm-7"] == "no price"
    assert {m.model: m.usd_display for m in result.models}["forkview-offline-demo"] == "free"
    assert result.tools[0].tool == "explode"  # sorted by error rate
    assert result.slowest[0].url == session_url(
        result.slowest[0].session_id, result.slowest[0].branch_id, result.slowest[0].turn
    )
    assert result.usd == sum((d.usd for d in result.days), Decimal(0))
    # Read back from the rollups: the same numbers, in 2 queries.
    with CaptureQueriesContext(connection) as queries:
        again = insights_get(start=START, end=END)
    assert len(queries) == 2
    assert again == result


def _rolled_days() -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT day FROM {TABLE} WHERE kind = 'day'")
        return {
            d if isinstance(d, date) else date.fromisoformat(str(d)) for (d,) in cursor.fetchall()
        }


def test_a_rolled_up_day_that_changes_is_rolled_up_again():
    build(40)
    insights_get(start=START, end=END)
    assert _rolled_days() == {START + timedelta(days=i) for i in range(7)}
    day = START + timedelta(days=3)

    # New spans and a new trace on a past day, after it was rolled up.
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23, minutes=59)
    AgentTrace.objects.create(
        trace_id="late",
        session_id="sess-late",
        branch_id="main",
        turn=1,
        started_at=at,
        ended_at=at + timedelta(minutes=40),
    )
    assert day not in _rolled_days()
    insights_get(start=START, end=END)
    assert day in _rolled_days()
    AgentSpan.objects.bulk_create(
        [
            AgentSpan(
                span_id="late-m",
                trace_id="late",
                kind="response",
                model="gpt-4o",
                name="gpt-4o",
                input_tokens=900_000,
                output_tokens=50_000,
                started_at=at,
                ended_at=at + timedelta(seconds=3),
                duration_ms=3000.0,
            ),
            # A span of the late trace that starts the next day: both days change.
            AgentSpan(
                span_id="late-f",
                trace_id="late",
                kind="function",
                name="get_weather",
                started_at=at + timedelta(minutes=2),
                duration_ms=1.0,
                error={"message": "x"},
            ),
        ]
    )
    assert not {day, day + timedelta(days=1)} & _rolled_days()
    result = insights_get(start=START, end=END)
    assert_matches(result, direct(START, END))
    assert result.slowest[0].session_id == "sess-late"
    assert result.costliest[0].session_id == "sess-late"

    # Deleted spans, a changed cost, a trace linked to another turn: the same.
    insights_get(start=START, end=END)
    victim = AgentSpan.objects.filter(kind="response", started_at__date=day - timedelta(days=1))
    victim.filter(span_id__in=list(victim.values_list("span_id", flat=True)[:3])).delete()
    AgentSpan.objects.filter(span_id="late-m").update(cost_nanos=1)
    AgentTrace.objects.filter(trace_id="late").update(turn=2)
    assert not {day - timedelta(days=1), day} & _rolled_days()
    result = insights_get(start=START, end=END)
    assert_matches(result, direct(START, END))
    assert result.costliest[0].session_id != "sess-late"


def test_yesterday_and_today_are_always_live(client, reviewer):
    today = datetime.now(tz=UTC).date()
    now = datetime.now(tz=UTC).replace(microsecond=0)
    first = now - timedelta(seconds=30)
    AgentTrace.objects.create(
        trace_id="now-1",
        session_id="s-now",
        branch_id="main",
        turn=1,
        started_at=first,
        ended_at=first + timedelta(seconds=2),
    )
    AgentSpan.objects.bulk_create(
        [
            AgentSpan(
                span_id="now-1-m",
                trace_id="now-1",
                kind="response",
                model="gpt-4o",
                name="gpt-4o",
                input_tokens=1000,
                output_tokens=100,
                started_at=first,
                duration_ms=1500.0,
            )
        ]
    )
    start = today - timedelta(days=2)
    result = insights_get(start=start, end=today)
    assert result.days[-1].turns == 1 and result.days[-1].model_calls == 1
    assert today not in _rolled_days() and start in _rolled_days()
    assert today - timedelta(days=1) not in _rolled_days()  # yesterday is live too
    AgentTrace.objects.create(
        trace_id="now-2",
        session_id="s-now",
        branch_id="main",
        turn=2,
        started_at=first,
        ended_at=first + timedelta(seconds=9),
    )
    with CaptureQueriesContext(connection) as queries:
        result = insights_get(start=start, end=today)
    assert len(queries) == 2
    assert result.days[-1].turns == 2
    assert_matches(result, direct(start, today))


def test_histogram_percentiles_stay_within_the_stated_error():
    rng = random.Random(3)
    for n in (1, 2, 3, 10, 101, 1000):
        values = [rng.lognormvariate(7, 2) + 1 for _ in range(n)]
        hist: dict[int, int] = {}
        for v in values:
            hist[bucket_of(v)] = hist.get(bucket_of(v), 0) + 1
        for p in (0.0, 0.5, 0.95, 1.0):
            assert within_bucket_error(percentile(hist, p), exact_percentile(values, p))
    assert percentile({}, 0.5) is None


def test_the_triggers_exist_and_truncate_empties_the_rollups():
    build(5)
    insights_get(start=START, end=END)
    traced = {t.started_at.date() for t in AgentTrace.objects.all()} & _rolled_days()
    assert traced
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE forkview_spans")
        assert not _rolled_days()  # all of them, even days with no span
    else:
        AgentSpan.objects.all().delete()
        AgentTrace.objects.all().delete()
        assert not traced & _rolled_days()  # days with nothing stay rolled up (empty)


def test_json_twin_has_the_same_numbers(client, reviewer):
    build(20)
    client.force_login(reviewer)
    response = client.get(
        reverse("insights_json"), {"from": START.isoformat(), "to": END.isoformat()}
    )
    assert response.status_code == 200
    data = response.json()
    result = insights_get(start=START, end=END)
    assert data == result.as_json()
    assert data["from"] == START.isoformat() and len(data["days"]) == 7
    assert data["slowest_turns"][0]["url"].startswith("/sessions/")


def test_page_shows_the_tables_and_links_to_the_turns(client, reviewer):
    build(20)
    client.force_login(reviewer)
    response = client.get(reverse("insights"), {"from": START.isoformat(), "to": END.isoformat()})
    assert response.status_code == 200
    page = response.content.decode()
    result = insights_get(start=START, end=END)
    assert 'id="insights-models"' in page and 'id="insights-tools"' in page
    assert result.slowest[0].url.replace("&", "&amp;") in page
    assert result.costliest[0].url.replace("&", "&amp;") in page
    assert "no price" in page and "acme-llm-7" in page
    assert 'data-json-url="/insights.json?from=' in page
    assert "<script>" not in page  # CSP: no inline scripts
    assert 'id="insights-link"' in page  # the nav link


def test_default_range_is_the_last_30_days(client, reviewer):
    client.force_login(reviewer)
    data = client.get(reverse("insights_json")).json()
    today = datetime.now(tz=UTC).date()
    assert data["to"] == today.isoformat()
    assert data["from"] == (today - timedelta(days=29)).isoformat()
    assert len(data["days"]) == 30


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "yesterday"}, "“from” must be a date"),
        ({"to": "2026-13-01"}, "“to” must be a date"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "must not be after"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"from": "\x00<script>"}, "must be a date"),
    ],
)
def test_bad_ranges_are_a_clear_400(client, reviewer, params, message):
    client.force_login(reviewer)
    response = client.get(reverse("insights_json"), params)
    assert response.status_code == 400 and message in response.json()["error"]
    page = client.get(reverse("insights"), params)
    assert page.status_code == 400
    text = page.content.decode()
    assert message.replace("“", "&ldquo;")[:5] in text or message in text
    assert "<script>" not in text.split("</main>")[0]


def test_empty_state(client, reviewer):
    client.force_login(reviewer)
    page = client.get(reverse("insights")).content.decode()
    assert 'id="insights-empty"' in page and "Nothing traced" in page
    assert "chart.umd" not in page  # no charts to draw
    empty = insights_get(start=START, end=END)
    assert empty.empty and empty.usd == 0 and empty.slowest == () and empty.costliest == ()


@pytest.mark.parametrize("name", ["insights", "insights_json"])
def test_permissions(client, django_user_model, name):
    url = reverse(name)
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    nobody = django_user_model.objects.create_user(username="nobody", password="x-pass-123")
    client.force_login(nobody)
    assert client.get(url).status_code == 403
    viewer = grant(
        django_user_model.objects.create_user(username="v", password="x-pass-123"),
        "view_agentsession",
    )
    client.force_login(viewer)
    assert client.get(url).status_code == 200
    assert client.post(url).status_code in (403, 405)


def test_nav_link_only_for_those_who_may_view(client, django_user_model):
    nobody = django_user_model.objects.create_user(username="nobody", password="x-pass-123")
    client.force_login(nobody)
    assert 'id="insights-link"' not in client.get(reverse("api_tokens")).content.decode()


def _count(client: Client, url: str, start: date = START, end: date = END) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"from": start.isoformat(), "to": end.isoformat()})
    assert response.status_code == 200
    return len(queries)


def _counts(client: Client) -> tuple[int, ...]:
    """Cold (days to roll up) and warm, for a week and for a year up to today (live)."""
    today = datetime.now(tz=UTC).date()
    year = today - timedelta(days=365)
    return (
        _count(client, reverse("insights")),
        _count(client, reverse("insights")),
        _count(client, reverse("insights"), year, today),
        _count(client, reverse("insights"), year, today),
        _count(client, reverse("insights_json"), year, today),
    )


def test_constant_number_of_queries_at_two_sizes(client, reviewer):
    client.force_login(reviewer)
    build(3, seed=1)
    small = _counts(client)
    build(300, seed=2)  # its days' rollups are dropped by the triggers
    assert AgentSpan.objects.count() > 1000
    large = _counts(client)
    assert small == large
    # The same for a week and for a year (cold: 5 more to store the missing days).
    more = 6 if connection.vendor == "postgresql" else 5  # + the lock
    assert small[0] == small[2] and small[1] == small[3] == small[0] - more
    with CaptureQueriesContext(connection) as queries:
        insights_get(start=START, end=END)
    assert len(queries) == 2  # the days' rows (all rolled up) and the read


def _changes() -> dict[date, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT day, gen FROM forkview_insight_changes")
        return {
            d if isinstance(d, date) else date.fromisoformat(str(d)): int(g)
            for d, g in cursor.fetchall()
        }


def test_a_day_written_while_it_is_computed_is_not_stored():
    """A view reads the change counters, computes the day, then stores it: a span of that day
    written in between moves the counter, so the computed rows (which may miss the span) are
    not stored and the next view computes the day again."""
    build(10)
    day = START + timedelta(days=2)
    before = _changes()
    computed = []
    for sql, params in rollup.day_rows_sql([day]):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            computed += cursor.fetchall()
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=5)
    AgentSpan.objects.bulk_create(
        [AgentSpan(span_id="mid", trace_id="tr-7-0-1", kind="function", name="x", started_at=at)]
    )
    assert _changes()[day] == before.get(day, 0) + 1
    rollup._store([day], before, computed)
    assert day not in _rolled_days()
    rollup._store([day], _changes(), computed)  # the counter as read now: stored
    assert day in _rolled_days()
    AgentSpan.objects.filter(span_id="mid").delete()  # and dropped again
    assert day not in _rolled_days()
    assert_matches(insights_get(start=START, end=END), direct(START, END))


def test_writes_of_todays_spans_touch_no_counter():
    now = datetime.now(tz=UTC)
    AgentTrace.objects.create(trace_id="t-now", started_at=now, ended_at=now)
    AgentSpan.objects.bulk_create(
        [AgentSpan(span_id="s-now", trace_id="t-now", kind="function", name="x", started_at=now)]
    )
    assert now.date() not in _changes()


@pytest.mark.django_db(transaction=True)
def test_a_busy_counter_table_means_computed_live_and_not_stored():
    """PostgreSQL: a span write in flight holds the counters; the view does not wait (NOWAIT),
    shows the day computed live and stores nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one writer at a time: its store fails on the write lock")
    import psycopg

    build(10)
    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user=s["USER"], password=s["PASSWORD"], dbname=s["NAME"]
    ) as other:
        other.execute("LOCK TABLE forkview_insight_changes IN ROW EXCLUSIVE MODE")
        result = insights_get(start=START, end=END)
        assert not _rolled_days()
        other.rollback()
    assert_matches(result, direct(START, END))
    insights_get(start=START, end=END)
    assert _rolled_days() == {START + timedelta(days=i) for i in range(7)}


def test_the_rollup_command_stores_past_days_ahead_of_the_first_view():
    from io import StringIO

    from django.core.management import call_command
    from django.utils import timezone

    build(30)
    today = timezone.now().date()
    days = (today - START).days + 3
    out = StringIO()
    call_command("rollup_insights", days=days, stdout=out)
    assert {START + timedelta(days=i) for i in range(7)} <= _rolled_days()
    assert len(_rolled_days()) == days - rollup.LIVE_DAYS
    assert f"Rolled up {days - rollup.LIVE_DAYS} days" in out.getvalue()
    # The first view is then a read of stored days (2 queries), with the direct numbers.
    with CaptureQueriesContext(connection) as queries:
        result = insights_get(start=START, end=END)
    assert len(queries) == 2
    assert_matches(result, direct(START, END))
    again = StringIO()
    call_command("rollup_insights", days=days, stdout=again)
    assert "Rolled up 0 days" in again.getvalue()
