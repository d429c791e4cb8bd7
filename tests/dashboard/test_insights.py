"""The insights page (issue 16 item 5): its numbers against a from-scratch computation over
built traces, the date range and its errors, permissions, the empty state, and a constant
number of queries at two sizes (both databases)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.costs import FREE_MODELS, response_cost
from conversations.models import AgentSpan, AgentTrace
from dashboard.insights.selectors import TOP, insights_get
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


def percentile(values: list[float], p: float) -> float | None:
    """percentile_cont: linear interpolation between the ranks around 1 + p (n - 1)."""
    if not values:
        return None
    values = sorted(values)
    pos = p * (len(values) - 1)
    low = int(pos)
    if low + 1 >= len(values):
        return values[low]
    return values[low] + (values[low + 1] - values[low]) * (pos - low)


def in_range(at: datetime) -> bool:
    return START <= at.date() <= END


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-3 * max(1.0, abs(b))


def day_cost(model: str, day: date, inp: int, out: int, cached: int) -> Decimal | None:
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    return response_cost(
        model=model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached, at=at
    ).usd


def test_the_numbers_match_a_computation_from_scratch():
    truth = build(60)
    result = insights_get(start=START, end=END)

    # Per day: turn latency percentiles and counts over traces started that day.
    assert [d.day for d in result.days] == [START + timedelta(days=i) for i in range(7)]
    for row in result.days:
        walls = [t["wall_ms"] for t in truth if t["started_at"].date() == row.day]
        assert row.turns == len(walls)
        assert close(row.p50_ms, percentile(walls, 0.5)), row
        assert close(row.p95_ms, percentile(walls, 0.95)), row
        calls = [c for t in truth for c in t["calls"] if c[0].date() == row.day]
        assert row.model_calls == len(calls)
        usd = Decimal(0)
        for _, model, inp, out, cached, _ in calls:
            usd += day_cost(model, row.day, inp, out, cached) or 0
        assert row.usd == usd
        assert row.unpriced_calls == sum(1 for c in calls if c[1] == "acme-llm-7")
    assert result.turns == sum(1 for t in truth if in_range(t["started_at"]))

    # Per model: calls, tokens, latency percentiles, cost; unknown: no price; the demo: free.
    calls = [c for t in truth for c in t["calls"] if in_range(c[0])]
    by_model = {m.model: m for m in result.models}
    assert set(by_model) == {c[1] for c in calls}
    for model, row in by_model.items():
        mine = [c for c in calls if c[1] == model]
        assert row.calls == len(mine)
        assert row.input_tokens == sum(c[2] for c in mine)
        assert row.output_tokens == sum(c[3] for c in mine)
        assert row.cached_input_tokens == sum(c[4] for c in mine)
        assert close(row.p50_ms, percentile([c[5] for c in mine], 0.5))
        assert close(row.p95_ms, percentile([c[5] for c in mine], 0.95))
        if model == "acme-llm-7":
            assert row.usd is None and row.usd_display == "no price"
        else:
            assert row.usd == sum(
                (day_cost(model, c[0].date(), c[2], c[3], c[4]) for c in mine), Decimal(0)
            )
        assert row.free == (model in FREE_MODELS)
    assert result.unpriced_calls == sum(1 for c in calls if c[1] == "acme-llm-7")
    assert result.free_calls == sum(1 for c in calls if c[1] in FREE_MODELS)
    assert result.usd == sum((d.usd for d in result.days), Decimal(0))

    # Tools: calls and errors per tool.
    tools = [x for t in truth for x in t["tools"] if in_range(x[0])]
    assert {r.tool: (r.calls, r.errors) for r in result.tools} == {
        name: (
            sum(1 for x in tools if x[1] == name),
            sum(1 for x in tools if x[1] == name and x[2]),
        )
        for name in {x[1] for x in tools}
    }
    assert result.tools[0].tool == "explode"  # sorted by error rate

    # The slowest linked turns.
    linked = [t for t in truth if t["session_id"] and in_range(t["started_at"])]
    slow = sorted(linked, key=lambda t: -t["wall_ms"])[:TOP]
    assert [(r.session_id, r.branch_id, r.turn) for r in result.slowest] == [
        (t["session_id"], t["branch_id"], t["turn"]) for t in slow
    ]
    assert all(
        close(r.duration_ms, t["wall_ms"]) for r, t in zip(result.slowest, slow, strict=True)
    )
    assert result.slowest[0].url == session_url(
        slow[0]["session_id"], slow[0]["branch_id"], slow[0]["turn"]
    )

    # The most expensive linked turns: their model calls in the range, priced at the last day.
    per_turn: dict[tuple, Decimal] = {}
    for t in truth:
        if not t["session_id"]:
            continue
        key = (t["session_id"], t["branch_id"], t["turn"])
        for at, model, inp, out, cached, _ in t["calls"]:
            if not in_range(at):
                continue
            per_turn[key] = per_turn.get(key, Decimal(0)) + (
                day_cost(model, END, inp, out, cached) or 0
            )
    ranked = sorted(((v, k) for k, v in per_turn.items() if v > 0), reverse=True)[:TOP]
    assert [(r.session_id, r.branch_id, r.turn) for r in result.costliest] == [k for _, k in ranked]
    for row, (usd, _) in zip(result.costliest, ranked, strict=True):
        assert abs(row.usd - usd) < Decimal("1e-8")


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


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"from": START.isoformat(), "to": END.isoformat()})
    assert response.status_code == 200
    return len(queries)


def test_constant_number_of_queries_at_two_sizes(client, reviewer):
    client.force_login(reviewer)
    build(3, seed=1)
    small = (_count(client, reverse("insights")), _count(client, reverse("insights_json")))
    build(300, seed=2)
    assert AgentSpan.objects.count() > 1000
    large = (_count(client, reverse("insights")), _count(client, reverse("insights_json")))
    assert small == large
    with CaptureQueriesContext(connection) as queries:
        insights_get(start=START, end=END)
    assert len(queries) == 6
