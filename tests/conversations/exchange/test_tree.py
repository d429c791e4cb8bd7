"""The JSON session tree: byte-identical round trips, identity on import, malformed trees."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from conversations.exchange import TreeError, export_text, tree_dumps, tree_export, tree_import
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
from tests.support.sdk_harness import user
from tests.support.trees import call, tree_session

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
