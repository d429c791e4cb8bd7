"""``manage.py seed_demo``: real Runner-written demo data, idempotent, dev-only account."""

from __future__ import annotations

import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from conversations.models import AgentMessage, AgentSession, MessageStructure, TurnUsage
from conversations.permissions import CHAT, VIEW
from dashboard.demo.seed import LONG_SESSION_ID, LONG_SESSION_TURNS
from dashboard.review import selectors

pytestmark = pytest.mark.django_db(transaction=True)


def _counts() -> tuple[int, ...]:
    return tuple(
        m.objects.count() for m in (AgentSession, AgentMessage, MessageStructure, TurnUsage)
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
