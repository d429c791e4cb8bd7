"""Traces follow their session (issue 16): deleted with the session or branch, moved with a
renamed branch, copied (with new ids) with a duplicated session; through the staff services
and ``DjangoSession.clear_session``, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conversations import services, trace_follow
from conversations.models import AgentSpan, AgentTrace
from conversations.session import DjangoSession
from tests.support.builders import Writer, async_to_sync, turn_items

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add_trace(session_id: str | None, branch: str | None, turn: int | None, tag: str) -> str:
    """One linked trace with an agent span, a response span under it and a tool span."""
    trace_id = f"trace_{tag}"
    AgentTrace.objects.create(
        trace_id=trace_id,
        workflow_name="Agent workflow",
        group_id=session_id,
        session_id=session_id,
        branch_id=branch,
        turn=turn,
        metadata={"forkview_session": session_id, "forkview_branch": branch, "x": 1},
        started_at=T0,
        ended_at=T0 + timedelta(seconds=2),
    )
    AgentSpan.objects.bulk_create(
        [
            AgentSpan(span_id=f"span_{tag}_a", trace_id=trace_id, kind="agent", name="Helper"),
            AgentSpan(
                span_id=f"span_{tag}_r",
                trace_id=trace_id,
                parent_id=f"span_{tag}_a",
                kind="response",
                name="gpt-test-1",
                model="gpt-test-1",
                input_tokens=100,
                output_tokens=20,
                started_at=T0,
                ended_at=T0 + timedelta(milliseconds=800),
                duration_ms=800.0,
                data={"type": "response"},
            ),
            AgentSpan(
                span_id=f"span_{tag}_f",
                trace_id=trace_id,
                parent_id=f"span_{tag}_a",
                kind="function",
                name="get_weather",
                error={"message": "boom", "data": None},
            ),
        ]
    )
    return trace_id


@pytest.fixture
def session():
    """main: 3 turns; 'alt' from turn 2 (+1 turn); a trace on every turn of both."""
    w = Writer("s1")
    w.turns(3)
    w.branch(2, "alt")
    w.turn(turn_items(2, text="alt"))
    for n in (1, 2, 3):
        add_trace("s1", "main", n, f"m{n}")
    add_trace("s1", "alt", 2, "a2")
    add_trace("other", "main", 1, "o1")  # another session's: never touched
    add_trace(None, None, None, "free")  # unlinked: never touched
    return w


def _traces(session_id: str) -> list[tuple[str | None, int | None]]:
    return sorted(
        AgentTrace.objects.filter(session_id=session_id).values_list("branch_id", "turn"),
        key=str,
    )


def _untouched() -> None:
    assert AgentTrace.objects.filter(trace_id__in=["trace_o1", "trace_free"]).count() == 2
    assert AgentSpan.objects.filter(trace_id__in=["trace_o1", "trace_free"]).count() == 6


def test_deleting_a_branch_deletes_its_traces_and_spans(session):
    services.branch_delete(session_id="s1", branch_id="alt")
    assert _traces("s1") == [("main", 1), ("main", 2), ("main", 3)]
    assert not AgentSpan.objects.filter(trace_id="trace_a2").exists()
    assert AgentSpan.objects.filter(trace_id="trace_m2").count() == 3
    _untouched()


def test_renaming_a_branch_moves_its_traces(session):
    services.branch_rename(session_id="s1", old="alt", new="plan b")
    assert AgentTrace.objects.get(trace_id="trace_a2").branch_id == "plan b"
    assert _traces("s1").count(("main", 2)) == 1
    assert AgentSpan.objects.filter(trace_id="trace_a2").count() == 3
    _untouched()


def test_deleting_the_session_deletes_every_trace(session):
    services.session_delete(session_id="s1")
    assert _traces("s1") == []
    assert not AgentSpan.objects.filter(trace_id__startswith="trace_m").exists()
    assert not AgentSpan.objects.filter(trace_id="trace_a2").exists()
    _untouched()


def test_clear_session_through_the_sdk_api_deletes_them_too(session):
    async_to_sync(DjangoSession(session_id="s1").clear_session)()
    assert _traces("s1") == []
    _untouched()


def test_duplicating_copies_traces_with_new_ids_linked_to_the_copy(session):
    services.session_duplicate(session_id="s1", new_session_id="s1 copy")
    assert _traces("s1 copy") == _traces("s1")
    copies = list(AgentTrace.objects.filter(session_id="s1 copy"))
    originals = {t.trace_id for t in AgentTrace.objects.filter(session_id="s1")}
    assert len(copies) == 4 and not {t.trace_id for t in copies} & originals
    for copy in copies:
        assert copy.trace_id.startswith("trace_") and len(copy.trace_id) == 38
        assert copy.group_id == "s1 copy"
        assert copy.metadata == {
            "forkview_session": "s1 copy",
            "forkview_branch": copy.branch_id,
            "x": 1,
        }
        assert (copy.started_at, copy.ended_at) == (T0, T0 + timedelta(seconds=2))
        spans = {s.kind: s for s in AgentSpan.objects.filter(trace_id=copy.trace_id)}
        assert set(spans) == {"agent", "response", "function"}
        agent = spans["agent"]
        assert agent.span_id.startswith("span_") and not agent.span_id.startswith("span_m")
        # the tree is kept, on the new ids
        assert spans["response"].parent_id == agent.span_id
        assert spans["function"].parent_id == agent.span_id
        assert spans["response"].input_tokens == 100 and spans["response"].duration_ms == 800.0
        assert spans["function"].error == {"message": "boom", "data": None}
    # the source keeps its own
    assert AgentSpan.objects.filter(trace_id="trace_m1").count() == 3
    # and deleting the copy leaves the source's traces alone
    services.session_delete(session_id="s1 copy")
    assert _traces("s1 copy") == []
    assert len(_traces("s1")) == 4
    _untouched()


def test_a_session_without_traces_is_copied_without_queries_for_spans(
    django_assert_num_queries,
):
    Writer("plain").turns(1)
    with django_assert_num_queries(1):
        assert (
            trace_follow.follow_copy(session_id="plain", new_session_id="x", using="default") == 0
        )


def test_a_popped_turn_keeps_its_trace(session):
    async_to_sync(DjangoSession(session_id="s1").pop_item)()
    assert ("main", 3) in _traces("s1")
