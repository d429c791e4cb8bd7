"""Trees, JSONL and Markdown exports; tree import (identity, round trip); download views."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.urls import reverse

from conversations.exporters import (
    TreeError,
    export_text,
    jsonl_export,
    markdown_export,
    tree_dumps,
    tree_export,
    tree_import,
)
from conversations.fields import RawJSON
from conversations.models import (
    AgentMessage,
    AgentSession,
    BranchReservation,
    MessageStructure,
    PreferredBranch,
    SessionClearGeneration,
    TurnUsage,
)
from conversations.session import DjangoSession
from tests.conversations.admin_data import call, tree_session
from tests.conversations.sdk_harness import user

pytestmark = pytest.mark.django_db

ALL_MODELS = (
    TurnUsage,
    MessageStructure,
    AgentMessage,
    AgentSession,
    BranchReservation,
    SessionClearGeneration,
    PreferredBranch,
)


def wipe() -> None:
    for model in ALL_MODELS:
        model.objects.all().delete()


def test_tree_round_trip_is_byte_identical():
    old = DjangoSession(session_id="s1")
    call(old, "add_items", [user("old")])
    call(old, "create_branch_from_turn", 1, "gone")
    call(old, "clear_session")  # generation 1; "gone" stays reserved
    tree_session()
    first = export_text(session_id="s1", fmt="json")
    wipe()
    report = tree_import(tree=json.loads(first))
    assert report.imported == ["s1"]
    assert export_text(session_id="s1", fmt="json") == first
    tree = json.loads(first)
    assert tree["clear_generation"] == 1
    assert tree["reservations"] == ["alt", "gone", "main"]
    assert {row["branch_id"] for row in tree["structure"]} == {"main", "alt"}
    assert len(tree["usage"]) == 4


def test_preferred_branch_mark_travels_with_the_tree():
    tree_session()
    assert "preferred_branch" not in tree_export(session_id="s1")  # unmarked: no key
    PreferredBranch.objects.create(session_id="s1", branch_id="alt")
    first = export_text(session_id="s1", fmt="json")
    assert json.loads(first)["preferred_branch"] == "alt"
    wipe()
    assert tree_import(tree=json.loads(first)).imported == ["s1"]
    assert PreferredBranch.objects.get(session_id="s1").branch_id == "alt"
    assert export_text(session_id="s1", fmt="json") == first
    # Importing the same tree again is "unchanged"; one with another mark is a conflict.
    assert tree_import(tree=json.loads(first)).unchanged == ["s1"]
    other = json.loads(first) | {"preferred_branch": "main"}
    assert tree_import(tree=other).conflicts
    assert PreferredBranch.objects.get(session_id="s1").branch_id == "alt"


def test_imported_tree_behaves_like_the_original_session():
    original = tree_session()
    expected = {
        b: call(DjangoSession(session_id="s1", branch_id=b), "get_items") for b in ("main", "alt")
    }
    usage = call(original, "get_session_usage")
    text = export_text(session_id="s1", fmt="json")
    wipe()
    tree_import(tree=json.loads(text))
    for branch, items in expected.items():
        assert call(DjangoSession(session_id="s1", branch_id=branch), "get_items") == items
    assert call(DjangoSession(session_id="s1"), "get_session_usage") == usage
    # Numbering continues: the next item gets the next global sequence number.
    session = DjangoSession(session_id="s1")
    call(session, "add_items", [user("later")])
    assert call(session, "get_conversation_turns")[-1]["turn"] == 4


def test_tree_import_is_idempotent_and_reports_conflicts():
    tree_session()
    tree = tree_export(session_id="s1")
    report = tree_import(tree=tree)
    assert report.unchanged == ["s1"] and not report.imported
    changed = json.loads(tree_dumps(tree))
    changed["messages"][1]["item"]["content"] = "edited elsewhere"
    before = tree_dumps(tree_export(session_id="s1"))
    report = tree_import(tree=changed)
    assert report.conflicts and "different content" in report.conflicts[0][1]
    assert tree_dumps(tree_export(session_id="s1")) == before


def test_tree_import_dry_run_writes_nothing():
    tree_session()
    tree = tree_export(session_id="s1")
    wipe()
    report = tree_import(tree=tree, dry_run=True)
    assert report.imported == ["s1"]
    assert not AgentSession.objects.exists() and not AgentMessage.objects.exists()


@pytest.mark.parametrize(
    "tree",
    [
        {"format": "something else"},
        {"format": "forkview.session-tree", "version": 99},
        {"format": "forkview.session-tree", "version": 1, "session": {}},
        {
            "format": "forkview.session-tree",
            "version": 1,
            "session": {"session_id": "x"},
            "messages": [{"ref": 1, "item": {}}],
            "structure": [{"message": 2}],
            "usage": [],
        },
        *(
            {
                "format": "forkview.session-tree",
                "version": 1,
                "session": {"session_id": "x"},
                "messages": [],
                "structure": [],
                "usage": [],
                "preferred_branch": bad,
            }
            for bad in (None, "", 5, ["alt"])
        ),
    ],
)
def test_tree_import_rejects_malformed_trees(tree):
    with pytest.raises(TreeError):
        tree_import(tree=tree)
    assert not AgentSession.objects.exists()


@pytest.mark.skipif(
    "connection.vendor != 'sqlite'",
    reason="jsonb cannot store undecodable text (PostgreSQL: see the import skip report)",
)
def test_undecodable_message_survives_the_round_trip_on_sqlite():
    session = DjangoSession(session_id="u")
    call(session, "add_items", [user("a")])
    AgentMessage.objects.create(session_id="u", message_data=RawJSON("{broken"))
    text = export_text(session_id="u", fmt="json")
    assert json.loads(text)["messages"][1]["undecodable"] == "{broken"
    wipe()
    tree_import(tree=json.loads(text))
    assert export_text(session_id="u", fmt="json") == text
    with connection.cursor() as cursor:
        cursor.execute("SELECT message_data FROM agent_messages ORDER BY id")
        assert cursor.fetchall()[-1][0] == "{broken"


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
