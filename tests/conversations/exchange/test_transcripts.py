"""JSONL and Markdown exports of one branch, and the download view of every format."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from conversations.exchange import export_text, jsonl_export, markdown_export
from conversations.session import DjangoSession
from tests.support.sdk_harness import user
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db


def test_jsonl_is_the_branch_items_ready_for_add_items():
    tree_session()
    text = jsonl_export(session_id="s1", branch_id="alt")
    items = [json.loads(line) for line in text.splitlines()]
    assert items == call(DjangoSession(session_id="s1", branch_id="alt"), "get_items")
    fresh = DjangoSession(session_id="replay")
    call(fresh, "add_items", items)
    assert call(fresh, "get_items") == items


def test_markdown_transcript_shows_text_tools_and_usage():
    tree_session()
    text = markdown_export(session_id="s1")
    assert text.startswith("# Session s1\n")
    assert "## Before the first user message" in text and "## Turn 3" in text
    assert "**User:**\n\nWhat's the weather in Paris?" in text
    assert (
        '**Tool call** `get_weather` (call `c1`):\n\n```json\n{\n  "city": "Paris"\n}\n```' in text
    )
    assert "**Tool output** (call `c1`):\n\n```\nsunny\n```" in text
    assert "_Usage: 2 request(s), 100 input + 20 output = 120 tokens_" in text
    alt = markdown_export(session_id="s1", branch_id="alt")
    assert "What about Lyon?" in alt and "Thanks" not in alt


def test_markdown_fences_survive_backticks_in_outputs():
    session = DjangoSession(session_id="f")
    call(
        session,
        "add_items",
        [user("x"), {"type": "function_call_output", "call_id": "c", "output": "```\ncode\n```"}],
    )
    assert "````\n```\ncode\n```\n````" in markdown_export(session_id="f")


# ---- download views ----------------------------------------------------------------------


@pytest.fixture
def viewer(client):
    user_obj = User.objects.create_user("viewer", password="pw", is_staff=False)
    user_obj.user_permissions.add(Permission.objects.get(codename="view_agentsession"))
    client.force_login(user_obj)
    return client


@pytest.mark.parametrize("fmt", ["json", "jsonl", "markdown"])
def test_export_view_downloads_each_format(viewer, fmt):
    tree_session("team/42")
    url = reverse("session_export", args=["team/42", fmt])
    response = viewer.get(url + "?branch=alt")
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    assert response.content.decode() == export_text(session_id="team/42", fmt=fmt, branch_id="alt")


def test_export_view_requires_login_and_permission(client):
    tree_session()
    url = reverse("session_export", args=["s1", "json"])
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get(url).status_code == 403


def test_export_view_404s(viewer):
    assert viewer.get(reverse("session_export", args=["missing", "json"])).status_code == 404
    tree_session()
    assert viewer.get(reverse("session_export", args=["s1", "pdf"])).status_code == 404
