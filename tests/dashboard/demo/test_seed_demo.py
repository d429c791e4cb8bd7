"""``manage.py seed_demo``: real Runner-written demo data, idempotent, dev-only account."""

from __future__ import annotations

import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from conversations.models import (
    AgentMessage,
    AgentSession,
    AgentSpan,
    AgentTrace,
    MessageStructure,
    TurnUsage,
)
from conversations.permissions import CHAT, VIEW
from dashboard.demo.seed import (
    FAILING_TOOL,
    HANDOFF,
    LONG_SESSION_ID,
    LONG_SESSION_TURNS,
    UNTRACED,
    seed_traces,
)
from dashboard.review import selectors

pytestmark = pytest.mark.django_db(transaction=True)


def _counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count()
        for m in (AgentSession, AgentMessage, MessageStructure, TurnUsage, AgentTrace, AgentSpan)
    )


@pytest.fixture
def seeded():
    started = time.perf_counter()
    out = io.StringIO()
    with override_settings(DEBUG=True):
        call_command("seed_demo", stdout=out)
    return out.getvalue(), time.perf_counter() - started


def test_seed_demo_creates_sessions_fast(seeded):
    _, seconds = seeded
    assert AgentSession.objects.count() >= 6
    assert seconds < 20


def test_seed_demo_is_idempotent(seeded):
    before = _counts()
    with override_settings(DEBUG=True):
        call_command("seed_demo", stdout=io.StringIO())
    assert _counts() == before


def test_seed_demo_has_branches_tools_reasoning_and_hosted_items(seeded):
    types = set(MessageStructure.objects.values_list("message_type", flat=True))
    assert {
        "function_call",
        "function_call_output",
        "reasoning",
        "web_search_call",
        "file_search_call",
    } <= types
    tools = set(
        MessageStructure.objects.exclude(tool_name=None).values_list("tool_name", flat=True)
    )
    assert {"calculator", "get_weather", "web_search", "current_time"} <= tools
    tree = selectors.branch_tree_get(session_id="demo/trip-planning")
    assert len(tree.order) == 4 and max(n.depth for n in tree.nodes.values()) == 2


def test_seed_demo_long_session_and_missing_usage(seeded):
    tree = selectors.branch_tree_get(session_id=LONG_SESSION_ID)
    assert tree.nodes["main"].turns == LONG_SESSION_TURNS
    math = selectors.usage_series_get(session_id="demo/math-homework", branch_id="main")
    assert math.missing_turns == (2, 3)


def test_seed_demo_debug_user_may_browse_and_chat(seeded):
    out, _ = seeded
    user = get_user_model().objects.get(username="demo")
    assert user.has_perm(VIEW)
    assert user.has_perm(CHAT)
    assert not user.is_staff
    assert "password" in out


def test_seed_demo_without_debug_creates_no_user():
    with override_settings(DEBUG=False):
        call_command("seed_demo", stdout=io.StringIO())
    assert not get_user_model().objects.filter(username="demo").exists()


# ---- The review workflow's demo data (issue 15) ------------------------------------------------


def test_seed_demo_adds_review_definitions_and_annotations(seeded):
    from conversations.models import Annotation, ScoreDefinition, SessionReview
    from dashboard.demo.seed import REVIEWS

    assert dict(ScoreDefinition.objects.values_list("name", "kind")) == {
        "helpful": "boolean",
        "quality": "numeric",
        "failure-mode": "categorical",
    }
    assert ScoreDefinition.objects.get(name="failure-mode").labels == [
        "hallucination",
        "wrong tool",
        "incomplete",
        "tone",
        "other",
    ]
    # Every planned annotation landed (none refused), by two reviewers who cannot log in.
    assert Annotation.objects.count() == sum(len(notes) for _, _, notes in REVIEWS.values())
    assert "not annotated" not in seeded[0]
    authors = get_user_model().objects.filter(pk__in=Annotation.objects.values("author"))
    assert sorted(u.username for u in authors) == ["ana", "ben"]
    assert not any(u.has_usable_password() for u in authors)
    assert all(u.has_perm("conversations.annotate") for u in authors)
    statuses = dict(SessionReview.objects.values_list("session_id", "status"))
    assert {"reviewed", "in_review", "needs_fix"} <= set(statuses.values())
    assert "demo/weather-café ☕" not in statuses  # unreviewed: no row
    kinds = set(Annotation.objects.values_list("kind", flat=True))
    assert kinds == {"score", "comment", "tag"}
    assert Annotation.objects.filter(kind="comment", body__contains="**").exists()
    # Branches of one session scored differently: the compare view has a winner.
    quality = dict(
        Annotation.objects.filter(
            session_id="demo/trip-planning",
            definition__name="quality",
            turn=0,
            author__username="ana",
        ).values_list("branch_id", "value")
    )
    assert quality["bigger budget"] > quality["main"] > quality["tokyo/nikko-day-trip"]


def test_seed_demo_reviews_are_idempotent_and_leave_user_changes(seeded):
    from conversations import reviews
    from conversations.models import Annotation, AuditEntry, SessionReview

    before = (Annotation.objects.count(), AuditEntry.objects.count())
    with override_settings(DEBUG=True):
        out = io.StringIO()
        call_command("seed_demo", stdout=out)
    assert (Annotation.objects.count(), AuditEntry.objects.count()) == before
    assert "0 session(s) annotated (already present)" in out.getvalue()
    # A user's change survives a re-run.
    demo = get_user_model().objects.get(username="demo")
    reviews.review_status_set(user=demo, session_id="demo/trip-planning", status="needs_fix")
    with override_settings(DEBUG=True):
        call_command("seed_demo", stdout=io.StringIO())
    assert SessionReview.objects.get(pk="demo/trip-planning").status == "needs_fix"


def test_seed_demo_debug_user_may_annotate(seeded):
    from conversations.permissions import can_annotate

    assert can_annotate(get_user_model().objects.get(username="demo"))


def test_seed_demo_records_traces_with_models_timings_an_error_and_a_handoff(seeded):
    """Every turn a demo branch wrote has a trace (but the ones meant to show "no trace"),
    linked to its session, branch and turn; realistic models and timings; idempotent."""
    traces = AgentTrace.objects.exclude(session_id=None)
    assert traces.count() == AgentTrace.objects.count() > 300
    models = set(AgentSpan.objects.exclude(model=None).values_list("model", flat=True))
    assert {"gpt-4.1", "gpt-4o-mini", "o3-mini"} <= models
    calls = AgentSpan.objects.filter(kind="response")
    assert all(
        ms is not None and 400 <= ms <= 3000 for ms in calls.values_list("duration_ms", flat=True)
    )
    tools = AgentSpan.objects.filter(kind="function")
    assert all(
        ms is not None and 50 <= ms <= 800 for ms in tools.values_list("duration_ms", flat=True)
    )
    failed = list(AgentSpan.objects.filter(error__isnull=False).values_list("trace_id", flat=True))
    sid, branch, turn = FAILING_TOOL
    assert failed == [AgentTrace.objects.get(session_id=sid, branch_id=branch, turn=turn).pk]
    sid, branch, turn = HANDOFF
    handoff = AgentSpan.objects.get(kind="handoff")
    assert AgentTrace.objects.get(pk=handoff.trace_id).turn == turn
    for sid, branch, turn in UNTRACED:
        assert not AgentTrace.objects.filter(session_id=sid, branch_id=branch, turn=turn).exists()
    # Each traced turn is one the branch wrote (not a copied one), and the page finds it.
    trip = selectors.branch_tree_get(session_id="demo/trip-planning")
    figures = selectors.session_traces_get(tree=trip)
    for (owner, number), figure in figures.turns.items():
        assert number >= trip.nodes[owner].fork_turn and figure.model_calls >= 1
    main, cheaper = figures.branch_cost("main"), figures.branch_cost("tokyo-instead")
    assert main.since_fork.usd > cheaper.since_fork.usd > 0  # gpt-4.1 vs gpt-4o-mini
    assert seed_traces() == []  # idempotent: sessions with traces are left alone
