"""The JSON tree carries a session's annotations and review status (issue 15): optional keys,
absent when there is nothing, so unreviewed sessions keep their bytes; an import checks every
annotation before the first write. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from conversations import reviews
from conversations.exchange import TreeError, tree_export, tree_import
from conversations.exchange.tree import tree_chunks, tree_dumps
from conversations.models import (
    AgentSession,
    Annotation,
    AuditEntry,
    ScoreDefinition,
    SessionReview,
)
from conversations.reviews import Target
from tests.support.trees import tree_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    return {
        name: django_user_model.objects.create_user(username=name, password=f"pw-{name}-1")
        for name in ("alice", "bob")
    }


@pytest.fixture
def definitions(db):
    return {
        "helpful": ScoreDefinition.objects.create(name="helpful", kind="boolean"),
        "quality": ScoreDefinition.objects.create(
            name="quality", kind="numeric", min_value=1, max_value=5
        ),
        "failure": ScoreDefinition.objects.create(
            name="failure", kind="categorical", labels=["hallucination", "wrong tool", "tone"]
        ),
    }


@pytest.fixture
def reviewed(people, definitions):
    """s1 with scores of every kind by two people, comments, tags, on every kind of target,
    and a review status with an assignee."""
    tree_session("s1")
    alice, bob = people["alice"], people["bob"]
    reviews.score_set(user=alice, target=Target("s1"), definition="quality", value=4)
    reviews.score_set(user=bob, target=Target("s1"), definition="quality", value=2.5)
    reviews.score_set(
        user=alice, target=Target("s1", "main", 1), definition="helpful", value=1, comment="ok"
    )
    reviews.score_set(user=bob, target=Target("s1", "alt", 2), definition="helpful", value=0)
    reviews.score_set(user=bob, target=Target("s1", "alt", 2), definition="failure", value="tone")
    reviews.comment_add(
        user=alice, target=Target("s1", "alt"), body="**Lyon** is _not_ asked for.\n\n- a\n- b"
    )
    reviews.comment_add(user=bob, target=Target("s1", "main", 3), body="Polite. ✓ ünïcode")
    reviews.tag_add(user=alice, target=Target("s1", "main"), tag="golden")
    reviews.tag_add(user=bob, target=Target("s1", "alt", 2), tag="off-topic")
    reviews.review_status_set(user=alice, session_id="s1", status="needs_fix", assignee=bob)
    return people


def content(session_id: str) -> list[tuple[Any, ...]]:
    return list(
        Annotation.objects.filter(session_id=session_id)
        .order_by("created_at", "id")
        .values_list(
            "kind",
            "branch_id",
            "turn",
            "author__username",
            "definition__name",
            "value",
            "label",
            "body",
            "created_at",
            "updated_at",
        )
    )


def renamed(tree: dict[str, Any], new_id: str) -> dict[str, Any]:
    other = copy.deepcopy(tree)
    other["session"]["session_id"] = new_id
    return other


# ---- Export ------------------------------------------------------------------------------


def test_no_annotations_no_keys(db):
    tree_session("s1")
    tree = tree_export(session_id="s1")
    assert "annotations" not in tree and "review" not in tree
    # A review row that says nothing ("unreviewed", nobody) is no review either.
    reviews.review_status_set(user=None, session_id="s1", status="unreviewed")
    assert "review" not in tree_export(session_id="s1")
    assert "".join(tree_chunks(session_id="s1")) == tree_dumps(tree)


def test_export_carries_them_in_order(reviewed):
    tree = tree_export(session_id="s1")
    assert list(tree)[-2:] == ["annotations", "review"]
    assert tree["review"] == {"status": "needs_fix", "assignee": "bob"}
    notes = tree["annotations"]
    assert len(notes) == 9
    assert notes[0] == {
        "kind": "score",
        "branch_id": "",
        "turn": 0,
        "definition": "quality",
        "value": 4.0,
        "label": "",
        "body": "",
        "author": "alice",
        "created_at": notes[0]["created_at"],
        "updated_at": notes[0]["updated_at"],
    }
    assert [(n["kind"], n["branch_id"], n["turn"], n["label"]) for n in notes] == [
        ("score", "", 0, ""),
        ("score", "", 0, ""),
        ("score", "main", 1, ""),
        ("score", "alt", 2, ""),
        ("score", "alt", 2, "tone"),
        ("comment", "alt", 0, ""),
        ("comment", "main", 3, ""),
        ("tag", "main", 0, "golden"),
        ("tag", "alt", 2, "off-topic"),
    ]
    assert notes[4]["value"] == 2.0  # the categorical label's index


def test_streamed_export_is_the_same_text(reviewed):
    text = "".join(tree_chunks(session_id="s1"))
    assert text == tree_dumps(tree_export(session_id="s1"))
    assert json.loads(text)["annotations"][5]["body"].startswith("**Lyon**")


def test_review_only(people):
    tree_session("s1")
    reviews.review_status_set(user=None, session_id="s1", assignee=people["alice"])
    tree = tree_export(session_id="s1")
    assert "annotations" not in tree
    assert tree["review"] == {"status": "unreviewed", "assignee": "alice"}
    assert "".join(tree_chunks(session_id="s1")) == tree_dumps(tree)


# ---- Round trip ----------------------------------------------------------------------------


def test_round_trip_into_a_new_id(reviewed):
    tree = tree_export(session_id="s1")
    report = tree_import(tree=renamed(json.loads(tree_dumps(tree)), "s1-copy"))
    assert report.imported == ["s1-copy"]
    assert report.counts["annotations"] == 9
    assert "unknown authors (imported as nobody)" not in report.counts
    assert content("s1-copy") == content("s1")
    assert renamed(tree_export(session_id="s1-copy"), "s1") == tree
    review = SessionReview.objects.get(pk="s1-copy")
    assert (review.status, review.assignee_id) == ("needs_fix", reviewed["bob"].pk)
    # Each imported row is audited, with no actor.
    imported = AuditEntry.objects.filter(session_id="s1-copy", action="imported")
    assert imported.count() == 10
    assert not imported.exclude(actor=None).exists()
    # Importing it again changes nothing.
    again = tree_import(tree=renamed(tree, "s1-copy"))
    assert again.unchanged == ["s1-copy"]
    assert Annotation.objects.filter(session_id="s1-copy").count() == 9


def test_round_trip_keeps_old_times(reviewed):
    long_ago = timezone.now() - timedelta(days=400)
    Annotation.objects.filter(session_id="s1", kind="tag").update(
        created_at=long_ago, updated_at=long_ago + timedelta(hours=1)
    )
    tree = tree_export(session_id="s1")
    tree_import(tree=renamed(tree, "copy"))
    tags = Annotation.objects.filter(session_id="copy", kind="tag")
    assert {(t.created_at, t.updated_at) for t in tags} == {
        (long_ago, long_ago + timedelta(hours=1))
    }
    assert tree_dumps(renamed(tree_export(session_id="copy"), "s1")) == tree_dumps(tree)


def test_unknown_people_are_imported_as_nobody(reviewed):
    tree = renamed(tree_export(session_id="s1"), "elsewhere")
    tree["annotations"][0]["author"] = "carol"
    tree["review"]["assignee"] = "dave"
    report = tree_import(tree=tree)
    assert report.counts["unknown authors (imported as nobody)"] == 2
    first = Annotation.objects.filter(session_id="elsewhere").order_by("created_at", "id")[0]
    assert first.author_id is None and first.value == 4.0
    assert SessionReview.objects.get(pk="elsewhere").assignee_id is None


def test_dry_run_writes_nothing(reviewed):
    tree = renamed(tree_export(session_id="s1"), "dry")
    report = tree_import(tree=tree, dry_run=True)
    assert report.imported == ["dry"]
    assert not Annotation.objects.filter(session_id="dry").exists()
    assert not SessionReview.objects.filter(pk="dry").exists()


def test_an_empty_list_is_accepted(db):
    tree_session("s1")
    tree = renamed(tree_export(session_id="s1"), "empty") | {"annotations": []}
    assert tree_import(tree=tree).imported == ["empty"]
    assert "annotations" not in tree_export(session_id="empty")


# ---- Refusals: checked before the first write ----------------------------------------------


def test_unknown_definition_is_refused(reviewed):
    tree = renamed(tree_export(session_id="s1"), "other")
    ScoreDefinition.objects.create(name="unused", kind="boolean")
    tree["annotations"][3]["definition"] = "helpfulness"
    with pytest.raises(TreeError) as caught:
        tree_import(tree=tree)
    assert str(caught.value) == (
        "session 'other', annotation 4 (score on 'alt', turn 2): there is no score definition "
        "'helpfulness' here; create it in the admin (Score definitions) before importing"
    )
    assert not AgentSession.objects.filter(pk="other").exists()


def _bad(note: dict[str, Any], **change: Any) -> dict[str, Any]:
    return {**note, **change}


@pytest.mark.parametrize(
    ("index", "change", "needle"),
    [
        (0, {"kind": "vote"}, "kind must be one of score, comment, tag"),
        (0, {"extra": 1}, "unknown key 'extra'"),
        (2, {"branch_id": "ghost"}, "branch 'ghost' has no rows in this tree"),
        (2, {"turn": 9}, "branch 'main' has no turn 9 in this tree"),
        (2, {"turn": -1}, "turn -1 is out of range"),
        (2, {"turn": "1"}, "turn must be an integer"),
        (0, {"turn": 1}, "a turn belongs to a branch"),
        (0, {"value": 7}, "'quality' takes a number from 1 to 5"),
        (0, {"value": float("nan")}, "'quality' takes a number from 1 to 5"),
        (0, {"value": "4"}, "a score's value must be a number"),
        (0, {"value": True}, "a score's value must be a number"),
        (0, {"value": 10**400}, "'quality' takes a number from 1 to 5"),
        (2, {"value": 2}, "thumbs score"),
        (4, {"value": 1.0}, "do not match the definition 'failure'"),
        (4, {"label": "rude"}, "'failure' takes one of: hallucination, wrong tool, tone"),
        (0, {"definition": None}, "a score names its definition"),
        (5, {"definition": "quality"}, "a comment has no definition nor value"),
        (5, {"body": "  "}, "body: The comment is empty."),
        (5, {"body": "nul \x00"}, "NUL"),
        (5, {"body": "x" * (reviews.MAX_BODY_CHARS + 1)}, "longer than 20,000"),
        (7, {"label": " golden"}, "without spaces at either end"),
        (7, {"body": "x"}, "a tag has no body"),
        (0, {"author": 7}, "author must be a username or null"),
        (0, {"created_at": "yesterday"}, "created_at 'yesterday' is not a date"),
    ],
)
def test_hostile_annotations_are_refused(reviewed, index, change, needle):
    tree = renamed(json.loads(tree_dumps(tree_export(session_id="s1"))), "hostile")
    tree["annotations"][index] = _bad(tree["annotations"][index], **change)
    with pytest.raises(TreeError, match="^session 'hostile'") as caught:
        tree_import(tree=tree)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not AgentSession.objects.filter(pk="hostile").exists()
    assert not Annotation.objects.filter(session_id="hostile").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"annotations": {"kind": "tag"}}, "'annotations' must be a list"),
        ({"annotations": ["x"]}, "annotation 1: must be an object"),
        ({"review": "reviewed"}, "'review' must be an object"),
        ({"review": {"status": "done"}}, "review status must be one of"),
        ({"review": {"status": "reviewed", "who": "x"}}, "'review' must be an object"),
        ({"review": {"status": "reviewed", "assignee": ["bob"]}}, "assignee must be a username"),
    ],
)
def test_hostile_shapes_are_refused(reviewed, change, needle):
    tree = renamed(tree_export(session_id="s1"), "hostile") | change
    with pytest.raises(TreeError, match=needle):
        tree_import(tree=tree)
    assert not AgentSession.objects.filter(pk="hostile").exists()


def test_duplicates_are_refused(reviewed):
    tree = renamed(tree_export(session_id="s1"), "dup")
    tree["annotations"].append(dict(tree["annotations"][7]))
    with pytest.raises(TreeError, match="a second tag 'golden' on the same target"):
        tree_import(tree=tree)
    tree = renamed(tree_export(session_id="s1"), "dup")
    tree["annotations"].append(dict(tree["annotations"][0], value=1))
    with pytest.raises(TreeError, match="a second 'quality' score by 'alice'"):
        tree_import(tree=tree)
    # Unknown authors are nobody: two of their scores on one target are two scores.
    tree = renamed(tree_export(session_id="s1"), "dup")
    tree["annotations"][0]["author"] = tree["annotations"][1]["author"] = None
    assert tree_import(tree=tree).imported == ["dup"]
    assert not AgentSession.objects.filter(pk="dup-none").exists()


def test_a_target_of_a_branch_the_tree_lacks(reviewed):
    """The target check is against the imported tree, not the database: a branch that
    exists in the database under the same session id elsewhere does not count."""
    tree = renamed(tree_export(session_id="s1"), "short")
    tree["structure"] = [row for row in tree["structure"] if row["branch_id"] == "main"]
    tree["usage"] = [row for row in tree["usage"] if row["branch_id"] == "main"]
    with pytest.raises(TreeError, match="branch 'alt' has no rows in this tree"):
        tree_import(tree=tree)
