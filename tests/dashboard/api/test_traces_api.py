"""``GET /api/v1/sessions/{id}/branches/{branch}/turns/{n}/trace/`` (issue 16): every kind of
caller, the turn read from the branch that wrote it, costs per span, untraced turns, unknown
and hostile ids and numbers, and a constant number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversations.costs import FREE_MODELS, response_cost
from conversations.models import AgentSpan, AgentTrace
from dashboard.api.auth import CANNOT_VIEW, NO_CREDENTIALS
from dashboard.api.traces import NO_TRACE, NO_TURN
from tests.support.builders import Writer

from .conftest import API, KINDS, SID, SID_SEG

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PRICED = "gpt-4o"
FREE = sorted(FREE_MODELS)[0]


def add_trace(session_id: str, branch: str, turn: int, tag: str, *, spans: int = 0) -> str:
    """A trace: an agent span, a priced response, a free one, an unpriced one, a failed tool,
    and ``spans`` more tool spans."""
    trace_id = f"trace_{tag}"
    AgentTrace.objects.create(
        trace_id=trace_id,
        workflow_name="Agent workflow",
        group_id=session_id,
        session_id=session_id,
        branch_id=branch,
        turn=turn,
        metadata={"forkview_session": session_id},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
    )
    agent = f"span_{tag}_agent"
    rows = [
        AgentSpan(
            span_id=agent,
            trace_id=trace_id,
            kind="agent",
            name="Helper",
            started_at=T0,
            ended_at=T0 + timedelta(seconds=3),
            duration_ms=3000.0,
            data={"type": "agent"},
        )
    ]
    for i, model in enumerate((PRICED, FREE, "no-such-model-9")):
        rows.append(
            AgentSpan(
                span_id=f"span_{tag}_r{i}",
                trace_id=trace_id,
                parent_id=agent,
                kind="response",
                name=model,
                model=model,
                input_tokens=1000,
                output_tokens=200,
                cached_input_tokens=100,
                reasoning_tokens=0,
                started_at=T0 + timedelta(milliseconds=10 + i),
                ended_at=T0 + timedelta(milliseconds=500 + i),
                duration_ms=490.0,
                data={"type": "response", "withheld": True},
            )
        )
    rows.append(
        AgentSpan(
            span_id=f"span_{tag}_tool",
            trace_id=trace_id,
            parent_id=agent,
            kind="function",
            name="get_weather",
            started_at=T0 + timedelta(seconds=1),
            ended_at=T0 + timedelta(seconds=1, milliseconds=50),
            duration_ms=50.0,
            error={"message": "Error running tool", "data": {"error": "boom"}},
        )
    )
    rows += [
        AgentSpan(
            span_id=f"span_{tag}_x{i:05d}",
            trace_id=trace_id,
            parent_id=agent,
            kind="function",
            name="calc",
            started_at=T0 + timedelta(seconds=2, microseconds=i),
        )
        for i in range(spans)
    ]
    AgentSpan.objects.bulk_create(rows)
    return trace_id


def url(session: str, branch: str, n: object) -> str:
    return f"{API}/sessions/{session}/branches/{quote(branch, safe='')}/turns/{n}/trace/"


@pytest.fixture
def traced(trip):
    """trip: main 6 turns; tokyo from turn 3. Traces: main 2, tokyo 3 (two: a retry)."""
    add_trace(SID, "main", 2, "m2")
    add_trace(SID, "tokyo", 3, "t3a")
    AgentTrace.objects.create(
        trace_id="trace_t3b", session_id=SID, branch_id="tokyo", turn=3, started_at=None
    )
    add_trace("someone else", "main", 2, "other")
    return trip


# ---- Who may call it -----------------------------------------------------------------------


def test_every_kind_of_caller(traced, caller):
    want = {
        "anonymous": 401,
        "nobody": 403,
        "viewer": 200,
        "annotator": 200,
        "staff": 200,
        "revoked": 401,
        "inactive": 401,
    }
    for kind in KINDS:
        response = caller(kind).get(url(SID_SEG, "main", 2))
        assert response.status_code == want[kind], kind
        assert response["Content-Type"].startswith("application/json")
        if response.status_code == 401:
            assert response.json() == {"detail": NO_CREDENTIALS}
            assert response["WWW-Authenticate"] == "Bearer"
        if response.status_code == 403:
            assert response.json()["detail"] == CANNOT_VIEW


def test_the_session_cookie_works_too(traced, client, users):
    client.force_login(users["viewer"])
    assert client.get(url(SID_SEG, "main", 2)).status_code == 200
    client.force_login(users["nobody"])
    assert client.get(url(SID_SEG, "main", 2)).status_code == 403


# ---- What it answers -----------------------------------------------------------------------


def test_a_traced_turn(traced, caller):
    body = caller("viewer").get(url(SID_SEG, "main", 2)).json()
    assert (body["session_id"], body["branch_id"], body["turn"]) == (SID, "main", 2)
    assert body["owner_branch"] == "main" and body["traced"] is True and body["note"] is None
    assert body["truncated"] is False
    [trace] = body["traces"]
    assert trace["trace_id"] == "trace_m2" and trace["duration_ms"] == 3000.0
    assert trace["started_at"].startswith("2026-03-01T12:00:00")
    assert trace["metadata"] == {"forkview_session": SID}
    spans = trace["spans"]
    assert [s["kind"] for s in spans] == ["agent", "response", "response", "response", "function"]
    assert spans[0]["parent_id"] is None and spans[0]["cost"] is None
    assert {s["parent_id"] for s in spans[1:]} == {"span_m2_agent"}
    tool = spans[4]
    assert tool["error"] == {"message": "Error running tool", "data": {"error": "boom"}}
    assert tool["duration_ms"] == 50.0 and tool["cost"] is None
    priced, free, unknown = spans[1]["cost"], spans[2]["cost"], spans[3]["cost"]
    expected = response_cost(
        model=PRICED, input_tokens=1000, output_tokens=200, cached_input_tokens=100, at=T0
    )
    assert expected.usd is not None and expected.usd > 0
    assert Decimal(priced["usd"]) == expected.usd and priced["model"] == PRICED
    assert priced["text"].startswith("$")
    assert (free["usd"], free["free"], free["text"]) == ("0", True, "free")
    assert (unknown["usd"], unknown["text"]) == (None, "no price")
    assert spans[1]["input_tokens"] == 1000 and spans[1]["cached_input_tokens"] == 100
    assert spans[1]["data"] == {"type": "response", "withheld": True}
    cost = trace["cost"]
    assert (cost["priced"], cost["unpriced"], cost["free"]) == (2, 1, 1)
    assert Decimal(cost["usd"]) == expected.usd
    assert cost["text"].endswith("(1 no price)")
    assert body["cost"] == cost


def test_a_shared_turn_answers_the_branch_that_wrote_it(traced, caller):
    body = caller("viewer").get(url(SID_SEG, "tokyo", 2)).json()
    assert body["branch_id"] == "tokyo" and body["owner_branch"] == "main"
    assert [t["trace_id"] for t in body["traces"]] == ["trace_m2"]


def test_several_traces_of_one_turn(traced, caller):
    body = caller("viewer").get(url(SID_SEG, "tokyo", 3)).json()
    assert body["owner_branch"] == "tokyo"
    # by start (none first), then id
    assert [t["trace_id"] for t in body["traces"]] == ["trace_t3b", "trace_t3a"]
    bare = body["traces"][0]
    assert bare["spans"] == [] and bare["duration_ms"] is None
    assert bare["cost"] == {"usd": "0", "priced": 0, "unpriced": 0, "free": 0, "text": ""}


def test_an_untraced_turn_is_200_and_says_so(traced, caller):
    response = caller("viewer").get(url(SID_SEG, "main", 4))
    assert response.status_code == 200
    body = response.json()
    assert body["traced"] is False and body["traces"] == [] and body["note"] == NO_TRACE
    assert body["cost"]["text"] == ""


def test_a_cycle_in_parent_ids_is_answered_as_stored(traced, caller):
    AgentSpan.objects.filter(span_id="span_m2_agent").update(parent_id="span_m2_tool")
    AgentSpan.objects.filter(span_id="span_m2_tool").update(parent_id="span_m2_agent")
    spans = caller("viewer").get(url(SID_SEG, "main", 2)).json()["traces"][0]["spans"]
    assert spans[0]["parent_id"] == "span_m2_tool"


@pytest.mark.skipif(
    connection.vendor == "postgresql", reason="PostgreSQL's jsonb cannot store a lone surrogate"
)
def test_stored_text_no_client_can_decode_is_sent_display_safe(traced, caller):
    AgentSpan.objects.filter(span_id="span_m2_tool").update(data={"output": "bad \udc80 text"})
    response = caller("viewer").get(url(SID_SEG, "main", 2))
    assert response.status_code == 200
    assert response.json()["traces"][0]["spans"][4]["data"] == {"output": "bad \ufffd text"}


# ---- Unknown and hostile -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session", "branch", "n", "status", "field", "detail"),
    [
        ("no-such-session", "main", 1, 404, "session_id", "No such session."),
        (SID_SEG, "no such branch", 1, 404, "branch_id", "No such branch in this session."),
        (SID_SEG, "main", 7, 404, "n", NO_TURN),
        (SID_SEG, "tokyo", 6, 404, "n", NO_TURN),
        (SID_SEG, "main", 2**31 - 1, 404, "n", NO_TURN),
        ("a%00b", "main", 1, 404, "session_id", "No such session."),
        (SID_SEG, "a%00b", 1, 404, "branch_id", "No such branch."),  # refused by the router
        ("%ED%B2%80", "main", 1, 404, "session_id", "No such session."),  # lone surrogate
        ("~!!", "main", 1, 404, "session_id", "No such session."),
    ],
)
def test_unknown_things_are_404(traced, caller, session, branch, n, status, field, detail):
    path = f"{API}/sessions/{session}/branches/{branch.replace(' ', '%20')}/turns/{n}/trace/"
    response = caller("viewer").get(path)
    assert response.status_code == status, response.content[:300]
    assert response.json() == {"detail": detail, "field": field}


@pytest.mark.parametrize("n", ["0", "-1", "abc", "1.5", str(2**31), "9" * 40, "%00"])
def test_a_turn_that_is_not_a_turn_number_is_422(traced, caller, n):
    response = caller("viewer").get(f"{API}/sessions/{SID_SEG}/branches/main/turns/{n}/trace/")
    assert response.status_code == 422, response.content[:300]
    assert response.json()["detail"][0]["loc"][-1] == "n"


def test_other_methods_are_405(traced, caller):
    response = caller("annotator").send("POST", url(SID_SEG, "main", 2), {})
    assert response.status_code == 405


def test_the_session_id_in_either_form(caller, db, users):
    Writer("plain id").turns(2)
    add_trace("plain id", "main", 1, "p1")
    for form in ("plain%20id", "~cGxhaW4gaWQ"):
        body = caller("viewer").get(url(form, "main", 1)).json()
        assert body["session_id"] == "plain id" and body["traced"] is True


# ---- Queries -------------------------------------------------------------------------------


def _count(who: Any, path: str) -> int:
    who.get(path)  # the token's "last used" write happens once a minute: not counted below
    with CaptureQueriesContext(connection) as queries:
        response = who.get(path)
    assert response.status_code == 200, response.content[:300]
    return len(queries)


def test_queries_are_constant(caller):
    for sid, turns, spans in (("small", 3, 0), ("large", 60, 400)):
        w = Writer(sid)
        w.turns(turns)
        w.branch(2, "alt")
        w.turns(3, start=2)
        for n in range(1, turns + 1):
            add_trace(sid, "main", n, f"{sid}{n}", spans=spans if n == 1 else 0)
        add_trace(sid, "main", 1, f"{sid}-retry")
    viewer = caller("viewer")
    for branch, n in (("main", 1), ("alt", 1), ("alt", 3)):
        small, large = (_count(viewer, url(sid, branch, n)) for sid in ("small", "large"))
        assert small == large, (branch, n, small, large)
    # token, permissions (2), the branch tree (3 with two branches), traces, spans
    assert _count(viewer, url("large", "main", 1)) == 8
    big = viewer.get(url("large", "main", 1)).json()
    assert sum(len(t["spans"]) for t in big["traces"]) == 2 * 5 + 400
    # a turn without a trace: no spans query
    assert _count(viewer, url("large", "alt", 3)) == 7
    # a session with one branch: its tree is 2 queries
    Writer("single").turns(2)
    add_trace("single", "main", 1, "single1")
    assert _count(viewer, url("single", "main", 1)) == 7
    assert _count(viewer, url("single", "main", 2)) == 6
