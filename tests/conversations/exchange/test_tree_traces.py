"""The JSON tree carries a session's traces and spans (issue 16): an optional key, absent when
the session has no linked traces (older trees keep their bytes); an import checks every trace
before the first write and re-identifies ids already present. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agents import Runner
from asgiref.sync import async_to_sync

from conversations import services
from conversations.exchange import TreeError, tree_export, tree_import
from conversations.exchange.tree import MAX_TRACE_JSON_CHARS, tree_chunks, tree_dumps
from conversations.models import AgentSession, AgentSpan, AgentTrace
from conversations.session import DjangoSession
from tests.conversations.test_tracing import agents_with_handoff, install  # noqa: F401
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def add_trace(
    session_id: str, branch: str | None, turn: int | None, tag: str, at: datetime
) -> None:
    """A trace as the processor stores it: an agent span, a response under it, a failed tool."""
    trace_id = f"trace_{tag}"
    AgentTrace.objects.create(
        trace_id=trace_id,
        workflow_name="Agent workflow",
        group_id=session_id,
        session_id=session_id,
        branch_id=branch,
        turn=turn,
        metadata={
            "forkview_turn": turn,
            "forkview_session": session_id,
            "b": [1, {"z": 1, "a": 2}],
        },
        started_at=at,
        ended_at=at + timedelta(seconds=2),
    )
    AgentSpan.objects.bulk_create(
        [
            AgentSpan(
                span_id=f"span_{tag}_a",
                trace_id=trace_id,
                kind="agent",
                name="Helper",
                started_at=at,
                ended_at=at + timedelta(seconds=2),
                duration_ms=2000.0,
                data={"type": "agent", "tools": ["get_weather"], "name": "Helper"},
            ),
            AgentSpan(
                span_id=f"span_{tag}_r",
                trace_id=trace_id,
                parent_id=f"span_{tag}_a",
                kind="response",
                name="gpt-test-1",
                model="gpt-test-1",
                input_tokens=100,
                output_tokens=20,
                cached_input_tokens=10,
                reasoning_tokens=5,
                started_at=at + timedelta(milliseconds=5),
                ended_at=at + timedelta(milliseconds=805),
                duration_ms=800.25,
                data={"type": "response", "withheld": True},
            ),
            AgentSpan(
                span_id=f"span_{tag}_f",
                trace_id=trace_id,
                parent_id=f"span_{tag}_a",
                kind="function",
                name="get_weather",
                started_at=at + timedelta(milliseconds=900),
                ended_at=None,
                error={"message": "Error running tool", "data": {"error": "boom ✓"}},
            ),
        ]
    )


@pytest.fixture
def traced(db):
    """tree_session s1 (main 3 turns, alt) with a trace on main 1, main 2 and alt 2, and one
    linked to the session only (no branch yet), plus another session's trace."""
    tree_session("s1")
    add_trace("s1", "main", 2, "m2", T0 + timedelta(minutes=2))
    add_trace("s1", "main", 1, "m1", T0)
    add_trace("s1", "alt", 2, "a2", T0 + timedelta(minutes=5))
    AgentTrace.objects.create(trace_id="trace_bare", session_id="s1")  # no times, no spans
    add_trace("other", "main", 1, "o1", T0)


def renamed(tree: dict[str, Any], new_id: str) -> dict[str, Any]:
    other = copy.deepcopy(tree)
    other["session"]["session_id"] = new_id
    return other


def rows(session_id: str) -> list[tuple[Any, ...]]:
    out = []
    for trace in AgentTrace.objects.filter(session_id=session_id).order_by("started_at"):
        spans = AgentSpan.objects.filter(trace_id=trace.trace_id).order_by("kind")
        out.append(
            (
                trace.branch_id,
                trace.turn,
                trace.metadata,
                trace.started_at,
                trace.ended_at,
                [
                    (s.kind, s.name, s.model, s.started_at, s.duration_ms, s.error, s.data)
                    + (s.input_tokens, s.output_tokens, s.cached_input_tokens, s.reasoning_tokens)
                    for s in spans
                ],
            )
        )
    return out


# ---- Export ------------------------------------------------------------------------------


def test_no_traces_no_key(db):
    tree_session("s1")
    AgentTrace.objects.create(trace_id="trace_x", session_id="someone else")
    tree = tree_export(session_id="s1")
    assert "traces" not in tree
    assert "".join(tree_chunks(session_id="s1")) == tree_dumps(tree)


def test_export_carries_traces_with_spans_in_order(traced):
    tree = tree_export(session_id="s1")
    assert list(tree)[-1] == "traces"
    traces = tree["traces"]
    # by start (a trace without one first), then id; another session's is not there
    assert [t["trace_id"] for t in traces] == ["trace_bare", "trace_m1", "trace_m2", "trace_a2"]
    assert traces[0] == {
        "trace_id": "trace_bare",
        "workflow_name": "",
        "group_id": None,
        "branch_id": None,
        "turn": None,
        "metadata": None,
        "started_at": None,
        "ended_at": None,
        "spans": [],
    }
    m1 = traces[1]
    assert (m1["branch_id"], m1["turn"], m1["group_id"]) == ("main", 1, "s1")
    assert m1["started_at"] == "2026-03-01T12:00:00.123456+00:00"
    assert list(m1["metadata"]) == ["b", "forkview_session", "forkview_turn"]  # sorted keys
    assert list(m1["metadata"]["b"][1]) == ["a", "z"]
    assert [s["span_id"] for s in m1["spans"]] == ["span_m1_a", "span_m1_r", "span_m1_f"]
    assert m1["spans"][1] == {
        "span_id": "span_m1_r",
        "parent_id": "span_m1_a",
        "kind": "response",
        "name": "gpt-test-1",
        "started_at": "2026-03-01T12:00:00.128456+00:00",
        "ended_at": "2026-03-01T12:00:00.928456+00:00",
        "duration_ms": 800.25,
        "error": None,
        "model": "gpt-test-1",
        "input_tokens": 100,
        "output_tokens": 20,
        "cached_input_tokens": 10,
        "reasoning_tokens": 5,
        "data": {"type": "response", "withheld": True},
    }
    assert m1["spans"][2]["error"] == {"data": {"error": "boom ✓"}, "message": "Error running tool"}
    assert m1["spans"][2]["ended_at"] is None


def test_streamed_export_is_the_same_text(traced):
    text = "".join(tree_chunks(session_id="s1"))
    assert text == tree_dumps(tree_export(session_id="s1"))
    assert len(json.loads(text)["traces"]) == 4


def test_export_queries_are_constant(traced, django_assert_num_queries):
    """Traces and spans: two queries, whatever their number (the rest is the session's)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as before:
        "".join(tree_chunks(session_id="s1"))
    for n in range(20):
        add_trace("s1", "main", 3, f"more{n}", T0 + timedelta(hours=n))
    with CaptureQueriesContext(connection) as after:
        "".join(tree_chunks(session_id="s1"))
    assert len(before) == len(after)


# ---- Round trip ----------------------------------------------------------------------------


def _recorded(session_id: str) -> tuple[int | None, int, int]:
    from conversations.models import SessionSummary

    row = SessionSummary.objects.get(session_id=session_id)
    return row.cost_nanos, row.model_calls, row.unpriced_calls


def test_round_trip_keeps_ids_in_an_empty_database(traced, settings):
    tree = tree_export(session_id="s1")
    text = tree_dumps(tree)
    cost_before = _recorded("s1")
    assert cost_before[1] > 0 and cost_before[2] == cost_before[1]  # gpt-test-1: no price
    services.session_delete(session_id="s1")  # its traces go with it
    assert not AgentTrace.objects.filter(session_id="s1").exists()
    # The import prices its model calls as they are written (with today's prices).
    settings.FORKVIEW_PRICES = {"gpt-test-1": {"input": 1, "output": 4}}
    report = tree_import(tree=renamed(json.loads(text), "s1-new"))
    cost_after = _recorded("s1-new")
    assert cost_after[1:] == (cost_before[1], 0) and cost_after[0]
    assert cost_after[0] == sum(
        n or 0
        for n in AgentSpan.objects.filter(
            trace_id__in=AgentTrace.objects.filter(session_id="s1-new").values("trace_id")
        ).values_list("cost_nanos", flat=True)
    )
    assert report.counts["traces"] == 4 and report.counts["spans"] == 9
    assert "traces re-identified (ids already present)" not in report.counts
    assert tree_dumps(renamed(tree_export(session_id="s1-new"), "s1")) == text
    # the ids are the file's; the traces are linked to the imported session
    assert AgentTrace.objects.get(trace_id="trace_m1").session_id == "s1-new"
    # importing again: unchanged, nothing duplicated
    again = tree_import(tree=renamed(json.loads(text), "s1-new"))
    assert again.unchanged == ["s1-new"]
    assert AgentTrace.objects.filter(session_id="s1-new").count() == 4


def test_ids_already_present_are_reidentified(traced):
    tree = tree_export(session_id="s1")
    report = tree_import(tree=renamed(tree, "s1-copy"))
    assert report.imported == ["s1-copy"]
    assert report.counts["traces re-identified (ids already present)"] == 4
    assert rows("s1-copy") == rows("s1")  # the same content, new ids
    copies = AgentTrace.objects.filter(session_id="s1-copy")
    assert not set(copies.values_list("trace_id", flat=True)) & {
        t["trace_id"] for t in tree["traces"]
    }
    for trace in copies.exclude(trace_id__in=[]):
        spans = {s.kind: s for s in AgentSpan.objects.filter(trace_id=trace.trace_id)}
        if spans:
            assert spans["response"].parent_id == spans["agent"].span_id
            assert not spans["agent"].span_id.startswith("span_m")
    # the source is untouched
    assert AgentSpan.objects.filter(trace_id="trace_m1").count() == 3
    # a copy's export is the source's but for the ids
    exported = tree_export(session_id="s1-copy")["traces"]
    assert [t["turn"] for t in exported] == [t["turn"] for t in tree["traces"]]


def test_only_a_clashing_span_reidentifies_its_trace(traced):
    tree = renamed(tree_export(session_id="s1"), "s2")
    for n, trace in enumerate(tree["traces"]):
        trace["trace_id"] = f"trace_new{n}"
        for span in trace["spans"]:
            if not span["span_id"].startswith("span_m1"):
                span["span_id"] = "fresh_" + span["span_id"]
                if span["parent_id"]:
                    span["parent_id"] = "fresh_" + span["parent_id"]
    report = tree_import(tree=tree)
    assert report.counts["traces re-identified (ids already present)"] == 1
    kept = set(AgentTrace.objects.filter(session_id="s2").values_list("trace_id", flat=True))
    assert kept >= {"trace_new0", "trace_new2", "trace_new3"} and "trace_new1" not in kept


def test_dry_run_writes_no_traces(traced):
    tree = renamed(tree_export(session_id="s1"), "dry")
    report = tree_import(tree=tree, dry_run=True)
    assert report.counts["traces"] == 4
    assert not AgentTrace.objects.filter(session_id="dry").exists()


def test_a_cycle_in_parent_ids_is_stored_as_is(traced):
    tree = renamed(tree_export(session_id="s1"), "cyc")
    spans = tree["traces"][1]["spans"]
    for n, span in enumerate(spans):
        span["span_id"] = f"c{n}"
        span["parent_id"] = f"c{(n + 1) % len(spans)}"  # c0 -> c1 -> c2 -> c0
    spans.append({**spans[0], "span_id": "self", "parent_id": "self"})
    spans.append({**spans[0], "span_id": "orphan", "parent_id": "no such span"})
    tree["traces"] = [tree["traces"][1]]
    tree["traces"][0]["trace_id"] = "trace_cycle"
    tree_import(tree=tree)
    exported = tree_export(session_id="cyc")["traces"][0]["spans"]
    assert {(s["span_id"], s["parent_id"]) for s in exported} == {
        ("c0", "c1"),
        ("c1", "c2"),
        ("c2", "c0"),
        ("self", "self"),
        ("orphan", "no such span"),
    }


# ---- Hostile input -------------------------------------------------------------------------

HUGE = "x" * (MAX_TRACE_JSON_CHARS + 1)


def _trace_change(tree: dict[str, Any], change: dict[str, Any]) -> None:
    tree["traces"][1].update(change)


def _span_change(tree: dict[str, Any], change: dict[str, Any]) -> None:
    tree["traces"][1]["spans"][1].update(change)


@pytest.mark.parametrize(
    ("where", "change", "needle"),
    [
        ("trace", {"trace_id": "trace\x00x"}, "trace_id holds"),
        ("trace", {"trace_id": "trace\udc80"}, "trace_id holds"),
        ("trace", {"trace_id": ""}, "trace_id is empty"),
        ("trace", {"trace_id": 7}, "trace_id must be a string, not int"),
        ("trace", {"trace_id": "t" * 300}, "trace_id is longer than 256"),
        ("trace", {"trace_id": "trace_bare"}, "a second trace with this id"),
        ("trace", {"turn": "3"}, "turn must be an integer, not str"),
        ("trace", {"turn": 2**40}, "turn 1099511627776 is out of range"),
        ("trace", {"branch_id": "a\x00b"}, "branch_id holds"),
        ("trace", {"workflow_name": None}, "workflow_name is missing"),
        ("trace", {"metadata": [1, 2]}, "metadata must be an object or null, not list"),
        ("trace", {"metadata": {"k": "v\x00"}}, "metadata holds"),
        ("trace", {"metadata": {"k": HUGE}}, "metadata is larger than"),
        ("trace", {"started_at": "yesterday"}, "started_at 'yesterday' is not a date"),
        ("trace", {"ended_at": 5}, "ended_at must be an ISO 8601 date or null, not int"),
        ("trace", {"spans": {}}, "'spans' must be a list"),
        ("trace", {"session_id": "elsewhere"}, "unknown key 'session_id'"),
        ("span", {"span_id": None}, "span_id is missing"),
        ("span", {"span_id": "span_m1_a"}, "a second span with this id"),
        ("span", {"span_id": "s\ud800"}, "span_id holds"),
        ("span", {"parent_id": 3}, "parent_id must be a string, not int"),
        ("span", {"kind": "bogus"}, "kind must be one of agent, task"),
        ("span", {"kind": None}, "kind must be one of"),
        ("span", {"name": "n\x00"}, "name holds"),
        ("span", {"model": ["gpt"]}, "model must be a string, not list"),
        ("span", {"duration_ms": float("nan")}, "duration_ms must be a finite number"),
        ("span", {"duration_ms": "800"}, "duration_ms must be a finite number"),
        ("span", {"duration_ms": True}, "duration_ms must be a finite number"),
        ("span", {"input_tokens": 1.5}, "input_tokens must be an integer, not float"),
        ("span", {"output_tokens": 2**64}, "output_tokens 18446744073709551616 is out of range"),
        ("span", {"error": "boom"}, "error must be an object or null, not str"),
        ("span", {"data": None}, "data must be an object, not NoneType"),
        ("span", {"data": [1]}, "data must be an object, not list"),
        ("span", {"data": {"out": HUGE}}, "data is larger than"),
        ("span", {"data": {"out": "\udfff"}}, "data holds"),
        ("span", {"data": {"x": float("inf")}}, "data holds NaN or Infinity"),
        ("span", {"trace_id": "x"}, "unknown key 'trace_id'"),
    ],
)
def test_hostile_traces_are_refused_before_any_write(traced, where, change, needle):
    tree = renamed(tree_export(session_id="s1"), "hostile")
    (_trace_change if where == "trace" else _span_change)(tree, change)
    with pytest.raises(TreeError) as caught:
        tree_import(tree=tree)
    message = str(caught.value)
    assert needle in message and message.startswith("session 'hostile', trace 2"), message
    assert "\n" not in message
    assert not AgentSession.objects.filter(pk="hostile").exists()
    assert not AgentTrace.objects.filter(session_id="hostile").exists()


@pytest.mark.parametrize(
    ("traces", "needle"),
    [
        ({"a": 1}, "'traces' must be a list"),
        ([None], "trace 1: must be an object"),
        ([{"trace_id": "t", "spans": [7]}], "trace 1 ('t'), span 1: must be an object"),
    ],
)
def test_hostile_shapes_are_refused(traced, traces, needle):
    tree = renamed(tree_export(session_id="s1"), "hostile")
    tree["traces"] = traces
    with pytest.raises(TreeError, match=None) as caught:
        tree_import(tree=tree)
    assert needle in str(caught.value)


def test_an_empty_list_is_accepted(db):
    tree_session("s1")
    tree = renamed(tree_export(session_id="s1"), "empty")
    tree["traces"] = []
    report = tree_import(tree=tree)
    assert report.imported == ["empty"] and "traces" not in report.counts


def test_big_but_allowed_data_round_trips(traced):
    AgentSpan.objects.filter(span_id="span_m1_f").update(data={"output": "y" * 1_000_000})
    tree = tree_export(session_id="s1")
    services.session_delete(session_id="s1")
    tree_import(tree=renamed(tree, "big"))
    assert AgentSpan.objects.get(span_id="span_m1_f").data == {"output": "y" * 1_000_000}


# ---- Under the real Runner -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_real_runs_traces_round_trip(install):  # noqa: F811  (the tracing tests' fixture)
    """The processor records a real run (tools, a failing tool, a handoff); the tree carries it
    and an import into an empty database gives the same bytes and the same span tree."""
    processor = install(include_model_data=True, include_tool_data=True)
    session = DjangoSession(session_id="real")
    for question in ("Weather in Paris?", "And tomorrow?"):
        triage, _model = agents_with_handoff()
        config = async_to_sync(session.run_config)(workflow_name="Weather desk")
        async_to_sync(Runner.run)(triage, question, session=session, run_config=config)
    processor.force_flush()
    tree = tree_export(session_id="real")
    assert [(t["branch_id"], t["turn"]) for t in tree["traces"]] == [("main", 1), ("main", 2)]
    first = tree["traces"][0]
    kinds = sorted(s["kind"] for s in first["spans"])
    assert kinds.count("response") == 3 and "handoff" in kinds and kinds.count("function") == 2
    ids = {s["span_id"] for s in first["spans"]}
    assert all(s["parent_id"] in ids for s in first["spans"] if s["parent_id"] is not None)
    text = tree_dumps(tree)
    assert "".join(tree_chunks(session_id="real")) == text
    services.session_delete(session_id="real")
    assert not AgentSpan.objects.exists()
    tree_import(tree=renamed(json.loads(text), "real again"))
    assert tree_dumps(renamed(tree_export(session_id="real again"), "real")) == text
