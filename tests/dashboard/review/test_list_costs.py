"""The session list's cost column: what the sessions' traces recorded, sortable and filterable.

Sessions from ``test_session_list_plans._build`` (plain SQL, summarised by the triggers), then
traces and spans written through the ORM (priced when written). Every sort direction, the
cost range alone and with the list's other filters, both read paths (``sessions.FEW``) and every
page must equal a computation here from the spans themselves; the column's text says "no
price" and "free" where it should; the API lists the same; the page stays at its query count.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.costs import FREE_MODELS, from_nanos, response_cost, to_nanos
from conversations.models import AgentSpan, AgentTrace
from dashboard.review.selectors import sessions
from tests.dashboard.review.test_session_list_plans import TOOLS, _build
from tests.dashboard.review.test_session_list_plans import _expected as _base_expected

pytestmark = pytest.mark.django_db

MODELS = ("gpt-4o", "gpt-4.1-mini", "o3", "acme-llm-7", next(iter(FREE_MODELS)))
WHEN = datetime(2025, 3, 1, tzinfo=UTC)


def _trace(truth: list[dict[str, Any]]) -> dict[str, tuple[int | None, int, int]]:
    """Traces on about two sessions in three (some of them twice), a few model calls each,
    and a trace of a session that does not exist; per session (cost, calls, unpriced)."""
    rng = random.Random(11)
    spans: list[AgentSpan] = []
    record: dict[str, tuple[int | None, int, int]] = {}
    n = 0
    for t in [*truth, {"session_id": "not-a-session"}]:
        if rng.random() < 0.33:
            continue
        sid = t["session_id"]
        cost, calls, unpriced = 0, 0, 0
        for k in range(rng.choice((1, 1, 2))):
            trace_id = f"tr-{sid}-{k}"
            AgentTrace.objects.create(trace_id=trace_id, session_id=sid, turn=1, started_at=WHEN)
            for _ in range(rng.randint(0, 3)):
                n += 1
                model = rng.choice(MODELS)
                inp, out = rng.randint(10, 20_000), rng.randint(1, 900)
                spans.append(
                    AgentSpan(
                        span_id=f"sp{n}",
                        trace_id=trace_id,
                        kind=rng.choice(("response", "generation")),
                        model=model,
                        input_tokens=inp,
                        output_tokens=out,
                        started_at=WHEN,
                    )
                )
                usd = response_cost(model=model, input_tokens=inp, output_tokens=out, at=WHEN).usd
                calls += 1
                if usd is None:
                    unpriced += 1
                else:
                    cost += to_nanos(usd) or 0
            spans.append(AgentSpan(span_id=f"fn-{trace_id}", trace_id=trace_id, kind="function"))
        record[sid] = (cost if calls else None, calls, unpriced)
    AgentSpan.objects.bulk_create(spans)
    return record


def _expected(truth, record, filters: sessions.SessionListFilters, sort: str) -> list[str]:
    if sort.lstrip("-") != "cost":
        selected = _base_expected(truth, filters.base(), sort)
    else:
        selected = [t["session_id"] for t in truth]
        allowed = set(_base_expected(truth, filters.base(), "title"))
        selected = [sid for sid in selected if sid in allowed]

        def order(sid: str) -> Any:
            cost = record.get(sid, (None, 0, 0))[0]
            return (cost is not None, cost or 0, sid)

        selected.sort(key=order, reverse=sort.startswith("-"))
    low = None if filters.cost_min is None else to_nanos(Decimal(str(filters.cost_min)))
    high = None if filters.cost_max is None else to_nanos(Decimal(str(filters.cost_max)))
    if low is None and high is None:
        return selected

    def within(sid: str) -> bool:
        cost = record.get(sid, (None, 0, 0))[0]
        if cost is None:
            return False
        return (low is None or cost >= low) and (high is None or cost <= high)

    return [sid for sid in selected if within(sid)]


COST_FILTERS = [{}, {"cost_min": 0.01}, {"cost_max": 0.005}, {"cost_min": 0.0, "cost_max": 0}]
BASE_FILTERS = [
    {},
    {"tool": TOOLS[0]},
    {"has_branches": True},
    {"updated_from": date(2025, 1, 11), "updated_to": date(2025, 2, 20)},
]


@pytest.mark.parametrize("few", [0, 10**9], ids=["along-the-sort", "through-the-filters"])
def test_cost_sorts_and_filters_read_what_the_spans_say(monkeypatch, few):
    truth = _build(90)
    record = _trace(truth)
    assert any(c is None for c, _, _ in record.values()) or len(record) < len(truth)
    monkeypatch.setattr(sessions, "FEW", few)
    for cost, base in itertools.product(COST_FILTERS, BASE_FILTERS):
        filters = sessions.SessionListFilters(**base, **cost)
        for sort in ("-cost", "cost", "-updated"):
            expected = _expected(truth, record, filters, sort)
            page = sessions.session_list(filters=filters, sort=sort, per_page=13)
            assert page.total == len(expected), (filters, sort)
            got = [row.session_id for row in page.rows]
            for number in range(2, page.num_pages + 1):
                more = sessions.session_list(filters=filters, sort=sort, page=number, per_page=13)
                got += [row.session_id for row in more.rows]
            assert got == expected, (filters, sort)


def test_the_column_says_what_was_recorded():
    truth = _build(40)
    record = _trace(truth)
    page = sessions.session_list(sort="-cost", per_page=100)
    for row in page.rows:
        cost, calls, unpriced = record.get(row.session_id, (None, 0, 0))
        if not calls:
            assert row.cost is None and row.cost_text == ""
            continue
        assert row.cost is not None
        assert (row.cost.usd, row.cost.priced, row.cost.unpriced) == (
            from_nanos(cost),
            calls - unpriced,
            unpriced,
        )
        if unpriced == calls:
            assert row.cost_text == "no price"
        elif unpriced:
            assert row.cost_text.endswith(f"({unpriced} no price)")
        elif cost == 0:
            assert row.cost_text == "free"


def test_cost_parameters_parse_or_are_ignored():
    parse = sessions.SessionListFilters.from_query
    assert parse({"cost_min": "$1,250.5", "cost_max": "2"}).cost_min == 1250.5
    assert parse({"cost_max": "0.02"}).cost_max == 0.02
    for bad in ("abc", "-1", "nan", "inf", "1e99", ""):
        assert parse({"cost_min": bad, "cost_max": bad}) == sessions.SessionListFilters()


@pytest.mark.parametrize("size", [10, 60])
def test_the_page_runs_a_constant_number_of_queries(size, reviewer_client):
    truth = _build(size)
    _trace(truth)
    with CaptureQueriesContext(connection) as queries:
        response = reviewer_client.get(reverse("home"), {"sort": "-cost", "cost_min": "0.0001"})
    assert response.status_code == 200
    assert len(queries) <= 13, [q["sql"] for q in queries]
    body = response.content.decode()
    assert ">Cost</a> ▼" in body


def test_the_list_page_and_the_api_show_the_cost(reviewer_client):
    truth = _build(12)
    record = _trace(truth)
    top = max((sid for sid in record if record[sid][0]), key=lambda sid: record[sid][0] or 0)
    response = reviewer_client.get(reverse("home"), {"sort": "-cost"})
    body = response.content.decode()
    assert f'data-session="{top}"' in body.split("<tbody>")[1].split("</tr>")[0]
    api = reviewer_client.get("/api/v1/sessions/", {"sort": "-cost", "per_page": 3}).json()
    first = api["items"][0]
    assert first["session_id"] == top
    assert Decimal(first["cost"]["usd"]) == from_nanos(record[top][0])
    untraced = reviewer_client.get("/api/v1/sessions/", {"sort": "cost", "per_page": 1}).json()
    assert untraced["items"][0]["cost"] is None  # ascending: sessions without traces first
    bad = reviewer_client.get(reverse("home"), {"cost_min": "<script>", "cost_max": "1e400"})
    assert bad.status_code == 200  # ignored: the filter fields come back empty
    assert 'name="cost_min" value=""' in bad.content.decode()
