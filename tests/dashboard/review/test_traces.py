"""Traces on the session page (issue 16 items 3-4): the per-turn figures, branch costs, the
waterfall's JSON twin (trace.json), permissions, query counts and hostile span data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.costs import response_cost
from conversations.models import AgentSpan, AgentTrace
from dashboard.demo.model import MODEL_NAME as OFFLINE_MODEL
from dashboard.links import compare_url, session_url, usage_url
from dashboard.review import selectors
from tests.support.builders import Writer, turn_items

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def trace_url(sid: str, branch: str, turn: int) -> str:
    base = reverse("session_trace", kwargs={"session_id": sid})
    return f"{base}?{urlencode({'branch': branch, 'turn': turn})}"


class Tracer:
    """Writes one trace and its spans as the processor would (times in ms from ``start``)."""

    count = 0

    def __init__(self, sid: str, branch: str, turn: int, *, start: datetime = T0, **trace: Any):
        Tracer.count += 1
        self.trace_id = f"trace_{Tracer.count:032x}"
        self.start = start
        self.spans: list[AgentSpan] = []
        self.trace = AgentTrace(
            trace_id=self.trace_id,
            workflow_name="test",
            group_id=sid,
            session_id=sid,
            branch_id=branch,
            turn=turn,
            started_at=start,
            **trace,
        )

    def span(self, kind: str, name: str, at: float, ms: float, **fields: Any) -> AgentSpan:
        span = AgentSpan(
            span_id=f"span_{Tracer.count:012x}{len(self.spans):012x}",
            trace_id=self.trace_id,
            kind=kind,
            name=name,
            started_at=self.start + timedelta(milliseconds=at),
            ended_at=self.start + timedelta(milliseconds=at + ms),
            duration_ms=ms,
            **fields,
        )
        self.spans.append(span)
        return span

    def model(self, model: str | None, at: float, ms: float, inp: int, out: int, **kw: Any) -> None:
        self.span(
            "response",
            model or "",
            at,
            ms,
            model=model,
            input_tokens=inp,
            output_tokens=out,
            parent_id=self.spans[0].span_id if self.spans else None,
            **kw,
        )

    def save(self, end_ms: float | None) -> None:
        if end_ms is not None:
            self.trace.ended_at = self.start + timedelta(milliseconds=end_ms)
        self.trace.save()
        AgentSpan.objects.bulk_create(self.spans)


def build_traced(sid: str = "traced") -> None:
    """main: 4 turns (turn 3 without a trace); 'alt' forks at turn 3 (2 turns of its own)."""
    w = Writer(sid)
    for n in range(1, 5):
        w.turn(turn_items(n, tool=n == 2), (1000 * n, 100 * n))
    w.branch(3, "alt")
    w.turn(turn_items(3, text="other way"), (500, 50))
    w.turn(turn_items(4, text="cheap"), (600, 60))
    # main 1: one call of gpt-4.1.
    t = Tracer(sid, "main", 1)
    t.span("agent", "assistant", 0, 1500)
    t.model("gpt-4.1", 10, 1400, 1000, 100)
    t.save(1510)
    # main 2: two models, a failing tool and a good one, a handoff.
    t = Tracer(sid, "main", 2, start=T0 + timedelta(minutes=5))
    t.span("agent", "triage", 0, 4000)
    t.model("gpt-4o", 5, 900, 1200, 80, cached_input_tokens=200)
    t.span(
        "function",
        "calculator",
        910,
        300,
        error={"message": "Error running tool", "data": {"error": "ZeroDivisionError"}},
    )
    t.span("function", "calculator", 1220, 100)
    t.span("handoff", "triage → math", 1330, 1)
    t.model("gpt-4o-mini", 1340, 2000, 800, 120)
    t.save(4000)
    # main 3: no trace. main 4: a model nobody prices.
    t = Tracer(sid, "main", 4, start=T0 + timedelta(minutes=9))
    t.model("my-private-model", 0, 700, 4000, 400)
    t.save(None)  # the trace's end never arrived: latency from the spans
    # alt 3: o3-mini (reasoning); alt 4: the offline demo model (free), with time to first token.
    t = Tracer(sid, "alt", 3, start=T0 + timedelta(minutes=20))
    t.model("o3-mini", 0, 2500, 500, 50, reasoning_tokens=30)
    t.save(2600)
    t = Tracer(sid, "alt", 4, metadata={"forkview_ttft_ms": 120.5}, start=T0 + timedelta(hours=1))
    t.model(OFFLINE_MODEL, 0, 300, 600, 60)
    t.save(310)


def price(model: str, inp: int, out: int, cached: int = 0) -> Decimal:
    cost = response_cost(
        model=model, input_tokens=inp, output_tokens=out, cached_input_tokens=cached
    )
    assert cost.usd is not None, model
    return cost.usd


@pytest.fixture
def traced(db):
    build_traced()
    return "traced"


def _figures(sid: str, branch: str) -> dict[int, selectors.TurnTrace]:
    tree = selectors.branch_tree_get(session_id=sid)
    traces = selectors.session_traces_get(tree=tree)
    return {n: traces.turn(branch, n) for n in range(1, tree.nodes[branch].turns + 1)}


# ---- The selector ------------------------------------------------------------------------------


def test_per_turn_models_latency_calls_errors_and_cost(traced):
    turns = _figures(traced, "main")
    one, two, three, four = turns[1], turns[2], turns[3], turns[4]
    assert one.traced and one.models == ("gpt-4.1",) and one.model_calls == 1
    assert one.latency_ms == pytest.approx(1510) and one.latency_text == "1.5 s"
    assert one.cost.usd == price("gpt-4.1", 1000, 100) and one.cost.priced == 1
    assert set(two.models) == {"gpt-4o", "gpt-4o-mini"}
    assert (two.model_calls, two.tool_calls, two.errors) == (2, 2, 1)
    assert two.cost.usd == price("gpt-4o", 1200, 80, 200) + price("gpt-4o-mini", 800, 120)
    assert two.latency_ms == pytest.approx(4000)
    assert not three.traced and three.cost_text == ""
    # Unknown model: "no price", counted, never guessed; latency from its spans.
    assert four.models == ("my-private-model",) and four.cost.unpriced == 1
    assert four.cost_text == "no price" and four.cost_usd is None
    assert four.latency_ms == pytest.approx(700)


def test_shared_turns_read_the_parent_and_own_turns_their_branch(traced):
    alt = _figures(traced, "alt")
    assert alt[1].branch_id == "main" and alt[1].models == ("gpt-4.1",)
    assert alt[3].branch_id == "alt" and alt[3].models == ("o3-mini",)
    assert alt[4].cost.free == 1 and alt[4].cost_text == "free"
    assert alt[4].ttft_ms == pytest.approx(120.5) and alt[4].ttft_text == "120 ms"


def test_branch_cost_since_the_fork(traced):
    tree = selectors.branch_tree_get(session_id=traced)
    traces = selectors.session_traces_get(tree=tree)
    alt, main = traces.branch_cost("alt"), traces.branch_cost("main")
    assert alt.since_fork.usd == price("o3-mini", 500, 50)
    assert alt.traced_turns == 2 and alt.since_fork.free == 1
    assert main.traced_turns == 3 and main.since_fork.unpriced == 1
    assert main.text.endswith("(1 no price)")
    assert [c.branch_id for c in traces.branch_costs()] == list(tree.order)


# ---- The JSON twin -------------------------------------------------------------------------------


def test_trace_json_has_the_turns_spans_on_one_time_axis(reviewer_client, traced):
    data = reviewer_client.get(trace_url(traced, "main", 2)).json()
    assert data["traced"] and data["owner"] == "main" and len(data["traces"]) == 1
    spans = data["spans"]
    assert [s["kind"] for s in spans] == [
        "agent",
        "response",
        "function",
        "function",
        "handoff",
        "response",
    ]
    assert spans[0]["start_ms"] == 0 and spans[0]["duration_ms"] == 4000
    failing = spans[2]
    assert failing["name"] == "calculator" and failing["start_ms"] == pytest.approx(910)
    assert failing["error"] == "Error running tool: ZeroDivisionError"
    assert spans[3]["error"] is None
    assert spans[1]["model"] == "gpt-4o" and spans[1]["cost"].startswith("$")


def test_trace_json_of_a_shared_turn_and_of_an_untraced_turn(reviewer_client, traced):
    shared = reviewer_client.get(trace_url(traced, "alt", 1)).json()
    assert shared["owner"] == "main" and shared["spans"][1]["model"] == "gpt-4.1"
    untraced = reviewer_client.get(trace_url(traced, "main", 3)).json()
    assert untraced["traced"] is False and untraced["spans"] == []


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("branch=main", 400),
        ("branch=main&turn=abc", 400),
        ("branch=main&turn=0", 400),
        ("branch=nope&turn=1", 404),
    ],
)
def test_trace_json_bad_input_is_a_clear_error(reviewer_client, traced, query, status):
    base = reverse("session_trace", kwargs={"session_id": traced})
    response = reviewer_client.get(f"{base}?{query}")
    assert response.status_code == status
    assert b"Traceback" not in response.content


def test_trace_json_of_an_unknown_session_is_404(reviewer_client, traced):
    assert reviewer_client.get(trace_url("no-such-session", "main", 1)).status_code == 404


def test_trace_json_needs_login_and_the_view_permission(client, django_user_model, traced):
    url = trace_url(traced, "main", 1)
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client.force_login(
        django_user_model.objects.create_user(username="nobody", password="x-pass-1")
    )
    assert client.get(url).status_code == 403


# ---- The pages -----------------------------------------------------------------------------------


def test_session_page_shows_the_per_turn_line_no_trace_and_branch_costs(reviewer_client, traced):
    html = reviewer_client.get(session_url(traced, "main")).content.decode()
    assert 'class="turn-trace has-errors"' in html  # turn 2
    assert "2 model calls" in html and "2 tool calls" in html and "1 error" in html
    assert "gpt-4o, gpt-4o-mini" in html
    assert "no trace" in html  # turn 3
    assert trace_url(traced, "main", 2).replace("&", "&amp;") in html
    assert 'class="node-cost"' in html  # the branch tree
    alt = reviewer_client.get(session_url(traced, "alt")).content.decode()
    assert "first token 120 ms" in alt and "free" in alt


def test_turns_fragment_has_the_trace_lines(reviewer_client, traced):
    url = reverse("session_turns", kwargs={"session_id": traced}) + "?branch=main&start=1&end=4"
    html = reviewer_client.get(url).content.decode()
    assert html.count("trace-line") == 3 and "no trace" in html


def test_compare_shows_cost_and_wall_time_of_each_side(reviewer_client, traced):
    html = reviewer_client.get(compare_url(traced, "main", "alt")).content.decode()
    assert 'id="compare-cost"' in html and "no price" in html
    assert html.count('class="cost-badge') >= 3


def test_usage_json_keeps_its_shape_and_adds_costs(reviewer_client, traced):
    data = reviewer_client.get(usage_url(traced, "alt")).json()
    assert {"session_id", "branch", "path_total_tokens", "missing_turns", "per_turn"} <= set(data)
    by_turn = {p["turn"]: p for p in data["per_turn"]}
    assert {"input_tokens", "output_tokens", "owner", "missing"} <= set(by_turn[1])
    assert by_turn[1]["cost_usd"] == pytest.approx(float(price("gpt-4.1", 1000, 100)))
    assert by_turn[4]["cost"] == "free" and by_turn[4]["cost_usd"] == 0
    lines = {line["branch"]: line for line in data["cumulative"]}
    alt_points = lines["alt"]["cost_points"]
    assert alt_points[0]["turn"] == 2  # from the fork turn - 1, like the token line
    assert alt_points[-1]["usd"] == pytest.approx(data["path_cost_usd"], rel=1e-6)
    expected = (
        price("gpt-4.1", 1000, 100)
        + (price("gpt-4o", 1200, 80, 200) + price("gpt-4o-mini", 800, 120))
        + price("o3-mini", 500, 50)
    )
    assert data["path_cost_usd"] == pytest.approx(float(expected), rel=1e-6)
    # main's line: turn 4 has no price, so its cumulative cost stays flat there.
    main_points = {p["turn"]: p["usd"] for p in lines["main"]["cost_points"]}
    assert main_points[4] == main_points[3]


# ---- Query counts --------------------------------------------------------------------------------


def _traced_session(sid: str, turns: int) -> None:
    w = Writer(sid)
    w.turns(turns)
    w.branch(turns // 2, "alt")
    w.turns(2, start=turns // 2)
    for n in range(1, turns + 1):
        t = Tracer(sid, "main", n, start=T0 + timedelta(minutes=n))
        t.span("agent", "assistant", 0, 900)
        t.model("gpt-4o-mini", 1, 500, 100 + n, 20)
        t.span("function", "calculator", 510, 80, error={"message": "x"} if n % 5 == 0 else None)
        t.model("gpt-4.1", 600, 280, 200, 30)
        t.save(900)


def _count(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


@pytest.mark.parametrize(
    "url_for",
    [
        lambda sid: session_url(sid),
        lambda sid: session_url(sid, "alt"),
        lambda sid: trace_url(sid, "main", 3),
        lambda sid: trace_url(sid, "alt", 2),
        lambda sid: usage_url(sid, "alt"),
        lambda sid: compare_url(sid, "main", "alt"),
    ],
    ids=["detail", "detail-branch", "trace-json", "trace-json-shared", "usage-json", "compare"],
)
def test_constant_queries_with_traces(reviewer_client, url_for):
    _traced_session("small", 6)
    _traced_session("large", 80)
    small, large = (_count(reviewer_client, url_for(sid)) for sid in ("small", "large"))
    assert small == large


def test_trace_json_query_budget(reviewer_client):
    _traced_session("s", 4)
    # auth (session, user, 2 permission reads) + the tree (3) + the turn's traces + their spans
    assert _count(reviewer_client, trace_url("s", "main", 2)) == 9


# ---- Hostile data --------------------------------------------------------------------------------


def test_hostile_span_data_never_breaks_the_page(reviewer_client):
    Writer("hostile").turns(2)
    huge = "x" * 100_000
    # PostgreSQL stores no NUL in text or jsonb (the processor strips it); SQLite can hold one.
    nul = "\x00" if connection.vendor == "sqlite" else "\x01"
    t = Tracer("hostile", "main", 1, metadata={"forkview_ttft_ms": "NaN"})
    t.span("agent", f"a{nul}b<script>alert(1)</script>", 0, 10)
    t.span("function", huge, 1, 5, error="just a string, not an object")
    t.span("function", "list-error", 2, 5, error=["odd", {"deep": [1, 2]}])
    t.span("custom", "odd data", 3, 0, data={"k": [None, {nul: "v", "n": 1e308}]})
    t.model(None, 4, 3, 10**12, -5)  # no model, absurd tokens
    t.span("response", "x", 5, 1, model=huge, input_tokens=1)
    bad = t.span("other", "no start", 0, 1)
    bad.started_at = None
    bad.duration_ms = None
    t.save(20)
    t2 = Tracer("hostile", "main", 2, metadata=["not", "a", "dict"])
    t2.span("agent", "late", 0, 5)
    t2.save(None)
    page = reviewer_client.get(session_url("hostile"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert(1)" not in html
    response = reviewer_client.get(trace_url("hostile", "main", 1))
    assert response.status_code == 200
    data = json.loads(response.content)
    names = [s["name"] for s in data["spans"]]
    assert max(len(n) for n in names) <= selectors.traces.MAX_NAME
    assert all("\x00" not in n for n in names)
    errors = [s["error"] for s in data["spans"] if s["error"]]
    assert "just a string, not an object" in errors and len(errors) == 2
    figures = _figures("hostile", "main")
    assert figures[1].ttft_ms is None and figures[1].errors == 2
    assert figures[1].cost.unpriced >= 1  # the model-less call: no price
    assert reviewer_client.get(usage_url("hostile", "main")).status_code == 200
    assert reviewer_client.get(trace_url("hostile", "main", 2)).status_code == 200


def test_untraced_turns_are_estimated_with_the_default_model(reviewer_client, traced, settings):
    """With FORKVIEW_DEFAULT_MODEL, a turn with usage but no trace is priced and says
    "estimated"; without it, it has no cost (never guessed)."""
    assert _figures(traced, "main")[3].cost.count == 0
    settings.FORKVIEW_DEFAULT_MODEL = "gpt-4o-mini"
    three = _figures(traced, "main")[3]
    assert not three.traced and three.cost.estimated == 1
    assert three.cost.usd == price("gpt-4o-mini", 3000, 300)
    assert three.cost_text.endswith("(1 estimated)")
    html = reviewer_client.get(session_url(traced, "main")).content.decode()
    assert "no trace · <span" in html and "estimated" in html
    # Traced turns keep their trace's cost; the branch counts the estimate since its fork.
    tree = selectors.branch_tree_get(session_id=traced)
    main = selectors.session_traces_get(tree=tree).branch_cost("main")
    assert main.traced_turns == 3 and main.since_fork.estimated == 1
