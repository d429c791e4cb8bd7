"""conversations.reviews: scores, comments, tags, review statuses, the queue, API tokens, and
annotations following their target through every write path (services, ``DjangoSession``,
the PostgreSQL ``forkview_pop`` function and the Python ``SessionWriter.remove_row``).

Real databases (run on SQLite and PostgreSQL), real ``DjangoSession`` writes, and one real
``Runner`` conversation on the scripted model; no mocks.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel, assistant_message
from django.db import connection
from django.utils import timezone

from conversations import reviews, services
from conversations.models import (
    AgentSession,
    Annotation,
    ApiToken,
    AuditEntry,
    ReviewStatus,
    ScoreDefinition,
    SessionReview,
)
from conversations.reviews import ReviewError, Target
from conversations.session import DjangoSession
from tests.support.builders import async_to_sync
from tests.support.trees import call, tree_session

pytestmark = pytest.mark.django_db


# ---- Fixtures --------------------------------------------------------------------------


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw-alice-1")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw-bob-1")


@pytest.fixture
def helpful(db):
    return ScoreDefinition.objects.create(name="helpful", kind="boolean")


@pytest.fixture
def quality(db):
    return ScoreDefinition.objects.create(name="quality", kind="numeric", min_value=1, max_value=5)


@pytest.fixture
def failure(db):
    return ScoreDefinition.objects.create(
        name="failure-mode",
        kind="categorical",
        labels=["hallucination", "wrong tool", "incomplete", "tone", "other"],
    )


@pytest.fixture
def s1(db):
    """main: turns 1-3; alt: turn 1 (shared) + its own turn 2."""
    return tree_session("s1")


def annotations(session_id: str = "s1") -> list[tuple[Any, ...]]:
    return sorted(
        Annotation.objects.filter(session_id=session_id).values_list(
            "kind", "branch_id", "turn", "label", "body"
        )
    )


def audit(session_id: str = "s1") -> list[tuple[str, str]]:
    return list(
        AuditEntry.objects.filter(session_id=session_id)
        .order_by("id")
        .values_list("action", "kind")
    )


# ---- Scores: each kind, hostile values --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [(1, 1.0), (0, 0.0), (True, 1.0), (False, 0.0), ("up", 1.0), ("down", 0.0), (1.0, 1.0)],
)
def test_boolean_values(s1, alice, helpful, value, stored):
    score = reviews.score_set(
        user=alice, target=Target("s1", "main", 1), definition=helpful, value=value
    )
    assert (score.value, score.label) == (stored, "")


@pytest.mark.parametrize(
    "value", [2, -1, 0.5, "yes", "", None, float("nan"), float("inf"), [1], {"v": 1}, "UP"]
)
def test_boolean_refuses(s1, alice, helpful, value):
    with pytest.raises(ReviewError) as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition=helpful, value=value)
    assert caught.value.field == "value"
    assert "thumbs" in str(caught.value)
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(("value", "stored"), [(1, 1.0), (5, 5.0), (3.5, 3.5), ("4", 4.0)])
def test_numeric_values(s1, alice, quality, value, stored):
    score = reviews.score_set(
        user=alice, target=Target("s1", "alt"), definition=quality, value=value
    )
    assert score.value == stored


@pytest.mark.parametrize(
    "value",
    [
        0,
        5.0001,
        -3,
        float("nan"),
        float("inf"),
        float("-inf"),
        "nan",
        "inf",
        "1e400",
        "three",
        "",
        True,
        False,
        None,
        [3],
    ],
)
def test_numeric_refuses(s1, alice, quality, value):
    with pytest.raises(ReviewError) as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition=quality, value=value)
    assert caught.value.field == "value"
    assert str(caught.value) == "'quality' takes a number from 1 to 5."
    assert not Annotation.objects.exists()


def test_numeric_refuses_an_integer_too_large_for_a_float(s1, alice, quality):
    """``float(10**400)`` raises OverflowError: a JSON body can carry such an integer, and it
    must be refused like any other value out of range, not escape as a 500."""
    with pytest.raises(ReviewError) as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition=quality, value=10**400)
    assert caught.value.field == "value"


@pytest.mark.parametrize(
    ("value", "stored", "label"),
    [("hallucination", 0.0, "hallucination"), ("other", 4.0, "other"), (2, 2.0, "incomplete")],
)
def test_categorical_by_label_and_index(s1, alice, failure, value, stored, label):
    score = reviews.score_set(
        user=alice, target=Target("s1", "main", 2), definition="failure-mode", value=value
    )
    assert (score.value, score.label) == (stored, label)


@pytest.mark.parametrize(
    "value", [5, -1, True, 1.0, "Hallucination", " tone", "", None, float("nan"), ["tone"]]
)
def test_categorical_refuses(s1, alice, failure, value):
    with pytest.raises(ReviewError) as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition=failure, value=value)
    assert caught.value.field == "value"
    assert "hallucination, wrong tool, incomplete, tone, other" in str(caught.value)


def test_unknown_and_archived_definitions(s1, alice, helpful):
    with pytest.raises(ReviewError, match="no score definition 'nope'") as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition="nope", value=1)
    assert caught.value.field == "definition"
    helpful.archived = True
    helpful.save()
    with pytest.raises(ReviewError, match="archived") as caught:
        reviews.score_set(user=alice, target=Target("s1"), definition="helpful", value=1)
    assert caught.value.field == "definition"


def test_one_score_per_author_and_target(s1, alice, bob, quality):
    target = Target("s1", "main", 2)
    first = reviews.score_set(user=alice, target=target, definition=quality, value=2, comment="meh")
    again = reviews.score_set(user=alice, target=target, definition=quality, value=4)
    assert again.pk == first.pk
    assert (again.value, again.body) == (4.0, "meh")  # comment=None keeps the comment
    cleared = reviews.score_set(user=alice, target=target, definition=quality, value=4, comment="")
    assert cleared.body == ""
    theirs = reviews.score_set(user=bob, target=target, definition=quality, value=1)
    assert theirs.pk != first.pk
    assert Annotation.objects.filter(kind="score").count() == 2
    assert audit() == [
        ("created", "score"),
        ("updated", "score"),
        ("updated", "score"),
        ("created", "score"),
    ]


# ---- Targets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "field", "needle"),
    [
        (Target("nope"), "session_id", "Session 'nope' does not exist"),
        (Target("s1", "ghost"), "branch_id", "Branch 'ghost' does not exist"),
        (Target("s1", "ghost", 1), "branch_id", "Branch 'ghost' does not exist"),
        (Target("s1", "main", 9), "turn", "has no turn 9"),
        (Target("s1", "alt", 3), "turn", "has no turn 3"),
        (Target("s1", "", 2), "branch_id", "give the branch too"),
    ],
)
def test_missing_targets_are_refused(s1, alice, helpful, target, field, needle):
    for write in (
        lambda: reviews.score_set(user=alice, target=target, definition=helpful, value=1),
        lambda: reviews.comment_add(user=alice, target=target, body="x"),
        lambda: reviews.tag_add(user=alice, target=target, tag="x"),
    ):
        with pytest.raises(ReviewError, match=needle) as caught:
            write()
        assert caught.value.field == field
    assert not Annotation.objects.exists()
    assert not AuditEntry.objects.exists()


def test_target_kinds(s1, alice):
    assert Target("s1").kind == "session"
    assert Target("s1", "alt").kind == "branch"
    assert Target("s1", "alt", 2).kind == "turn"
    note = reviews.comment_add(user=alice, target=Target("s1", "alt", 2), body="ok")
    assert Target.of(note) == Target("s1", "alt", 2)


# ---- Comments ------------------------------------------------------------------------------


def test_comment_markdown_is_stored_as_written(s1, alice):
    body = "**Wrong** city: see [docs](https://example.com)\n\n- one\n- two\n<script>x</script>"
    note = reviews.comment_add(user=alice, target=Target("s1", "main", 1), body=body)
    note.refresh_from_db()
    assert note.body == body  # rendering sanitises it (templatetags), storage keeps it


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * (reviews.MAX_BODY_CHARS + 1), "longer than 20,000"),
        ("bad \x00 nul", "NUL"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("bell \x07", "control character"),
    ],
)
def test_comment_refuses(s1, alice, body, needle):
    with pytest.raises(ReviewError, match=needle) as caught:
        reviews.comment_add(user=alice, target=Target("s1"), body=body)
    assert caught.value.field == "body"
    assert not Annotation.objects.exists()


def test_comment_at_the_limit_is_kept(s1, alice):
    body = "é" * reviews.MAX_BODY_CHARS
    note = reviews.comment_add(user=alice, target=Target("s1"), body=body)
    assert Annotation.objects.get(pk=note.pk).body == body


def test_score_comment_is_checked(s1, alice, helpful):
    with pytest.raises(ReviewError) as caught:
        reviews.score_set(
            user=alice, target=Target("s1"), definition=helpful, value=1, comment="a\x00b"
        )
    assert caught.value.field == "body"
    with pytest.raises(ReviewError, match="longer than"):
        reviews.score_set(
            user=alice,
            target=Target("s1"),
            definition=helpful,
            value=1,
            comment="x" * (reviews.MAX_BODY_CHARS + 1),
        )
    assert not Annotation.objects.exists()


# ---- Tags -----------------------------------------------------------------------------------


def test_tags_one_per_target_whoever_adds_it(s1, alice, bob):
    reviews.tag_add(user=alice, target=Target("s1", "main", 1), tag="needs-citation")
    with pytest.raises(ReviewError, match="already has the tag 'needs-citation'") as caught:
        reviews.tag_add(user=bob, target=Target("s1", "main", 1), tag="needs-citation")
    assert caught.value.field == "label"
    # The same tag elsewhere, and a tag differing in case, are other tags.
    reviews.tag_add(user=bob, target=Target("s1", "main", 2), tag="needs-citation")
    reviews.tag_add(user=bob, target=Target("s1", "main", 1), tag="Needs-Citation")
    assert Annotation.objects.filter(kind="tag").count() == 3
    assert audit() == [("created", "tag")] * 3


@pytest.mark.parametrize(
    ("tag", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" padded", "without spaces"),
        ("padded ", "without spaces"),
        ("x" * (reviews.MAX_TAG_CHARS + 1), "at most 64"),
        ("a\x00b", "NUL"),
        ("\udfff", "lone surrogate"),
        ("bell\x07", "control character"),
    ],
)
def test_tag_refuses(s1, alice, tag, needle):
    with pytest.raises(ReviewError, match=needle) as caught:
        reviews.tag_add(user=alice, target=Target("s1"), tag=tag)
    assert caught.value.field == "label"
    assert not Annotation.objects.exists()


# ---- Update and delete: the author only, audited -------------------------------------------


def test_only_the_author_updates_or_deletes(s1, alice, bob, quality):
    score = reviews.score_set(user=alice, target=Target("s1"), definition=quality, value=3)
    for write in (
        lambda: reviews.annotation_update(user=bob, annotation_id=score.pk, value=1),
        lambda: reviews.annotation_delete(user=bob, annotation_id=score.pk),
    ):
        with pytest.raises(ReviewError, match="Only the author"):
            write()
    score.refresh_from_db()
    assert score.value == 3.0
    with pytest.raises(reviews.AnnotationMissing, match="Annotation 999999 does not exist"):
        reviews.annotation_delete(user=alice, annotation_id=999999)
    with pytest.raises(reviews.AnnotationMissing):
        reviews.annotation_update(user=alice, annotation_id=999999, body="x")


def test_an_orphaned_annotation_is_nobodys(s1, alice, quality):
    """The author's account deleted: the annotation stays (author null), and nobody,
    not even a user without a primary key, may change it."""
    score = reviews.score_set(user=alice, target=Target("s1"), definition=quality, value=3)
    alice.delete()
    score.refresh_from_db()
    assert score.author_id is None
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(ReviewError, match="Only the author"):
        reviews.annotation_delete(user=AnonymousUser(), annotation_id=score.pk)


def test_update_each_kind_with_audit(s1, alice, quality, failure):
    score = reviews.score_set(
        user=alice, target=Target("s1", "main", 1), definition=failure, value="tone"
    )
    note = reviews.comment_add(user=alice, target=Target("s1", "main", 1), body="first")
    tag = reviews.tag_add(user=alice, target=Target("s1", "main", 1), tag="slow")
    reviews.annotation_update(user=alice, annotation_id=score.pk, value=0, body="why")
    reviews.annotation_update(user=alice, annotation_id=note.pk, body="second")
    reviews.annotation_update(user=alice, annotation_id=tag.pk, label="fast")
    score.refresh_from_db()
    assert (score.value, score.label, score.body) == (0.0, "hallucination", "why")
    assert Annotation.objects.get(pk=note.pk).body == "second"
    assert Annotation.objects.get(pk=tag.pk).label == "fast"
    updates = AuditEntry.objects.filter(action="updated").order_by("id")
    assert [(e.before["label"], e.after["label"]) for e in updates] == [
        ("tone", "hallucination"),
        ("", ""),
        ("slow", "fast"),
    ]
    assert [(e.before["body"], e.after["body"]) for e in updates][:2] == [
        ("", "why"),
        ("first", "second"),
    ]
    assert {e.actor_id for e in updates} == {alice.pk}
    assert all(e.object_id for e in updates)


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        ("score", {"value": 9}, "value"),
        ("score", {"value": float("nan")}, "value"),
        ("score", {"body": "\x00"}, "body"),
        ("comment", {"body": ""}, "body"),
        ("comment", {"body": "x" * (reviews.MAX_BODY_CHARS + 1)}, "body"),
        ("tag", {"label": " x"}, "label"),
        ("tag", {"label": "taken"}, "label"),
    ],
)
def test_update_refuses_bad_values(s1, alice, quality, kind, change, field):
    target = Target("s1", "main", 3)
    reviews.tag_add(user=alice, target=target, tag="taken")
    made = {
        "score": lambda: reviews.score_set(user=alice, target=target, definition=quality, value=2),
        "comment": lambda: reviews.comment_add(user=alice, target=target, body="keep"),
        "tag": lambda: reviews.tag_add(user=alice, target=target, tag="mine"),
    }[kind]()
    entries = AuditEntry.objects.count()
    with pytest.raises(ReviewError) as caught:
        reviews.annotation_update(user=alice, annotation_id=made.pk, **change)
    assert caught.value.field == field
    fresh = Annotation.objects.get(pk=made.pk)
    assert (fresh.value, fresh.body, fresh.label) == (made.value, made.body, made.label)
    assert AuditEntry.objects.count() == entries


def test_delete_is_audited_with_the_before_state(s1, alice, helpful):
    score = reviews.score_set(
        user=alice, target=Target("s1", "alt", 2), definition=helpful, value=0, comment="no"
    )
    reviews.annotation_delete(user=alice, annotation_id=score.pk)
    assert not Annotation.objects.exists()
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry is not None
    assert (entry.action, entry.kind, entry.object_id, entry.after) == (
        "deleted",
        "score",
        score.pk,
        None,
    )
    assert entry.before == {
        "kind": "score",
        "session_id": "s1",
        "branch_id": "alt",
        "turn": 2,
        "definition": "helpful",
        "value": 0.0,
        "label": "",
        "body": "no",
        "author": "alice",
    }


def test_every_write_is_audited(s1, alice, helpful):
    target = Target("s1", "main", 2)
    score = reviews.score_set(user=alice, target=target, definition=helpful, value=1)
    note = reviews.comment_add(user=alice, target=target, body="hello")
    tag = reviews.tag_add(user=alice, target=target, tag="t")
    reviews.annotation_update(user=alice, annotation_id=note.pk, body="hi")
    for made in (score, note, tag):
        reviews.annotation_delete(user=alice, annotation_id=made.pk)
    reviews.review_status_set(user=alice, session_id="s1", status=ReviewStatus.IN_REVIEW)
    reviews.review_status_set(user=alice, session_id="s1", status=ReviewStatus.REVIEWED)
    assert audit() == [
        ("created", "score"),
        ("created", "comment"),
        ("created", "tag"),
        ("updated", "comment"),
        ("deleted", "score"),
        ("deleted", "comment"),
        ("deleted", "tag"),
        ("created", "review"),
        ("updated", "review"),
    ]
    created, updated = AuditEntry.objects.filter(kind="review").order_by("id")
    assert (created.before, created.after) == (None, {"status": "in_review", "assignee": None})
    assert (updated.before, updated.after) == (
        {"status": "in_review", "assignee": None},
        {"status": "reviewed", "assignee": None},
    )


# ---- Review status and the queue -----------------------------------------------------------


def test_review_status_and_assignee(s1, alice, bob):
    review = reviews.review_status_set(
        user=alice, session_id="s1", status="needs_fix", assignee=bob
    )
    assert (review.status, review.assignee_id, review.updated_by_id) == (
        "needs_fix",
        bob.pk,
        alice.pk,
    )
    # The status alone keeps the assignee; assignee=None unassigns.
    reviews.review_status_set(user=bob, session_id="s1", status="in_review")
    assert SessionReview.objects.get().assignee_id == bob.pk
    reviews.review_status_set(user=bob, session_id="s1", assignee=None)
    assert SessionReview.objects.get().status == "in_review"
    assert SessionReview.objects.get().assignee_id is None


@pytest.mark.parametrize("status", ["done", "", "REVIEWED", "reviewed\x00"])
def test_review_status_refuses(s1, alice, status):
    with pytest.raises(ReviewError, match="Unknown review status") as caught:
        reviews.review_status_set(user=alice, session_id="s1", status=status)
    assert caught.value.field == "status"
    with pytest.raises(ReviewError, match="does not exist") as caught:
        reviews.review_status_set(user=alice, session_id="ghost", status="reviewed")
    assert caught.value.field == "session_id"
    assert not SessionReview.objects.exists()
    assert not AuditEntry.objects.exists()


def _sessions(*names: str) -> None:
    """One-turn sessions created in this order, a second apart."""
    start = timezone.now() - timedelta(days=1)
    for n, name in enumerate(names):
        call(DjangoSession(session_id=name), "add_items", [{"role": "user", "content": name}])
        AgentSession.objects.filter(pk=name).update(created_at=start + timedelta(seconds=n))


def test_review_next_order_and_exclusions(alice, bob):
    _sessions("a-mine", "b-free", "c-theirs", "d-reviewed", "e-fix", "f-free")
    reviews.review_status_set(user=alice, session_id="a-mine", status="in_review", assignee=alice)
    reviews.review_status_set(user=bob, session_id="c-theirs", status="in_review", assignee=bob)
    reviews.review_status_set(user=bob, session_id="d-reviewed", status="reviewed")
    reviews.review_status_set(user=bob, session_id="e-fix", status="needs_fix")

    def queue(user: Any) -> list[str]:
        found, after = [], None
        while (after := reviews.review_next(user=user, after=after)) is not None:
            found.append(after)
        return found

    assert queue(alice) == ["a-mine", "b-free", "e-fix", "f-free"]
    assert queue(bob) == ["b-free", "c-theirs", "e-fix", "f-free"]
    assert reviews.review_next(user=alice, after="b-free") == "e-fix"
    # Reviewing one takes it off everyone's queue, even the assignee's.
    reviews.review_status_set(user=alice, session_id="a-mine", status="reviewed")
    assert queue(alice) == ["b-free", "e-fix", "f-free"]
    # An unknown `after` starts from the beginning.
    assert reviews.review_next(user=alice, after="ghost") == "b-free"


def test_review_next_ties_break_on_the_id(alice):
    _sessions("z", "y", "x")
    AgentSession.objects.update(created_at=timezone.now())
    assert reviews.review_next(user=alice) == "x"
    assert reviews.review_next(user=alice, after="x") == "y"
    assert reviews.review_next(user=alice, after="y") == "z"
    assert reviews.review_next(user=alice, after="z") is None


def test_review_next_empty(alice):
    assert reviews.review_next(user=alice) is None


# ---- API tokens -----------------------------------------------------------------------------


def test_token_is_hashed_at_rest(alice):
    token, raw = reviews.token_create(user=alice, name="  ci  ")
    assert raw.startswith("fv_") and len(raw) > 40
    assert token.name == "ci"
    assert token.prefix == raw[:10]
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw not in {str(v) for v in stored.values()}
    assert all(raw[10:] not in str(v) for v in stored.values())
    assert reviews.token_authenticate(raw=raw) == alice
    assert ApiToken.objects.get().last_used_at is not None
    # The database holds no trace of the token itself.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM forkview_api_tokens")
        assert raw not in repr(cursor.fetchall())


def test_token_revoked_inactive_and_forged(alice, bob):
    token, raw = reviews.token_create(user=alice, name="laptop")
    other, other_raw = reviews.token_create(user=bob, name="laptop")
    assert raw != other_raw
    for forged in (
        "",
        "fv_",
        raw[:-1],
        raw + "x",
        raw.upper(),
        "Bearer " + raw,
        "fv_\ud800",
        "fv_" + "a" * 300,
        "fv_" + raw[3:][::-1],
    ):
        assert reviews.token_authenticate(raw=forged) is None
    reviews.token_revoke(token=token)
    revoked_at = ApiToken.objects.get(pk=token.pk).revoked_at
    assert revoked_at is not None
    assert reviews.token_authenticate(raw=raw) is None
    reviews.token_revoke(token=token)  # twice: the first time stays
    assert ApiToken.objects.get(pk=token.pk).revoked_at == revoked_at
    bob.is_active = False
    bob.save()
    assert reviews.token_authenticate(raw=other_raw) is None


@pytest.mark.parametrize(("name", "needle"), [("", "name"), ("   ", "name"), ("x" * 101, "100")])
def test_token_name_refused(alice, name, needle):
    with pytest.raises(ReviewError, match=needle) as caught:
        reviews.token_create(user=alice, name=name)
    assert caught.value.field == "name"
    assert not ApiToken.objects.exists()


def test_token_records_use_at_most_once_a_minute(alice):
    token, raw = reviews.token_create(user=alice, name="ci")
    reviews.token_authenticate(raw=raw)
    first = ApiToken.objects.get().last_used_at
    reviews.token_authenticate(raw=raw)
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=5))
    reviews.token_authenticate(raw=raw)
    assert ApiToken.objects.get().last_used_at > first - timedelta(minutes=1)


# ---- Definitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"kind": "boolean", "min_value": None, "max_value": None, "labels": []}, None),
        ({"kind": "numeric", "min_value": 1, "max_value": 5, "labels": []}, None),
        ({"kind": "numeric", "min_value": None, "max_value": 5, "labels": []}, "min_value"),
        ({"kind": "numeric", "min_value": 5, "max_value": 5, "labels": []}, "max_value"),
        ({"kind": "numeric", "min_value": 0, "max_value": math.inf, "labels": []}, "max_value"),
        ({"kind": "numeric", "min_value": math.nan, "max_value": 1, "labels": []}, "max_value"),
        ({"kind": "numeric", "min_value": 0, "max_value": 1, "labels": ["a"]}, "labels"),
        ({"kind": "boolean", "min_value": None, "max_value": None, "labels": ["a"]}, "labels"),
        ({"kind": "categorical", "min_value": None, "max_value": None, "labels": ["a", "b"]}, None),
        ({"kind": "categorical", "min_value": None, "max_value": None, "labels": ["a"]}, "labels"),
        ({"kind": "categorical", "min_value": None, "max_value": None, "labels": "ab"}, "labels"),
        (
            {"kind": "categorical", "min_value": None, "max_value": None, "labels": ["a", "a"]},
            "labels",
        ),
        (
            {"kind": "categorical", "min_value": None, "max_value": None, "labels": ["a", " "]},
            "labels",
        ),
        (
            {"kind": "categorical", "min_value": None, "max_value": None, "labels": ["a", 1]},
            "labels",
        ),
    ],
)
def test_definition_problem(spec, problem):
    found = reviews.definition_problem(**spec)
    assert (found[0] if found else None) == problem


def test_a_definition_in_use_is_protected(s1, alice, helpful):
    from django.db.models import ProtectedError

    reviews.score_set(user=alice, target=Target("s1"), definition=helpful, value=1)
    with pytest.raises(ProtectedError):
        helpful.delete()


# ---- Annotations follow their target ---------------------------------------------------------


def _annotate_everything(user: Any, definition: ScoreDefinition) -> None:
    """A score, a comment and a tag on the session, each branch and each turn of s1."""
    for target in (
        Target("s1"),
        Target("s1", "main"),
        Target("s1", "alt"),
        *(Target("s1", "main", turn) for turn in (1, 2, 3)),
        *(Target("s1", "alt", turn) for turn in (1, 2)),
    ):
        reviews.score_set(user=user, target=target, definition=definition, value=1)
        reviews.comment_add(user=user, target=target, body=f"on {target}")
        reviews.tag_add(user=user, target=target, tag="seen")


def _targets(session_id: str = "s1") -> list[tuple[str, int]]:
    return sorted(
        set(Annotation.objects.filter(session_id=session_id).values_list("branch_id", "turn"))
    )


def test_branch_rename_moves_them(s1, alice, helpful):
    _annotate_everything(alice, helpful)
    services.branch_rename(session_id="s1", old="alt", new="lyon")
    assert _targets() == [
        ("", 0),
        ("lyon", 0),
        ("lyon", 1),
        ("lyon", 2),
        ("main", 0),
        ("main", 1),
        ("main", 2),
        ("main", 3),
    ]
    assert Annotation.objects.count() == 24
    # They are the renamed branch's now: scoring it again updates, not duplicates.
    reviews.score_set(user=alice, target=Target("s1", "lyon", 2), definition=helpful, value=0)
    assert Annotation.objects.filter(kind="score", branch_id="lyon", turn=2).get().value == 0.0


def test_branch_delete_deletes_only_that_branch(s1, alice, helpful):
    _annotate_everything(alice, helpful)
    services.branch_delete(session_id="s1", branch_id="alt")
    assert _targets() == [("", 0), ("main", 0), ("main", 1), ("main", 2), ("main", 3)]


def test_session_delete_deletes_them_and_the_review(s1, alice, helpful):
    _annotate_everything(alice, helpful)
    tree_session("s2")
    reviews.comment_add(user=alice, target=Target("s2", "main", 1), body="other session")
    reviews.review_status_set(user=alice, session_id="s1", status="reviewed")
    reviews.review_status_set(user=alice, session_id="s2", status="in_review")
    services.session_delete(session_id="s1")
    assert not Annotation.objects.filter(session_id="s1").exists()
    assert list(SessionReview.objects.values_list("session_id", flat=True)) == ["s2"]
    assert annotations("s2") == [("comment", "main", 1, "", "other session")]


def test_session_duplicate_copies_them(s1, alice, bob, helpful, failure):
    _annotate_everything(alice, helpful)
    reviews.score_set(user=bob, target=Target("s1", "alt", 2), definition=failure, value="tone")
    reviews.review_status_set(user=alice, session_id="s1", status="reviewed", assignee=bob)
    services.session_duplicate(session_id="s1", new_session_id="copy")

    def content(session_id: str) -> list[tuple[Any, ...]]:
        return sorted(
            Annotation.objects.filter(session_id=session_id).values_list(
                "kind", "branch_id", "turn", "author_id", "definition_id", "value", "label", "body"
            )
        )

    assert content("copy") == content("s1")
    assert len(content("copy")) == 25
    # The copy's review starts over; the original keeps its own.
    assert not SessionReview.objects.filter(pk="copy").exists()
    assert SessionReview.objects.get(pk="s1").status == "reviewed"
    # Independent rows: deleting the original leaves the copy's.
    services.session_delete(session_id="s1")
    assert len(content("copy")) == 25


def test_session_duplicate_keeps_the_annotation_times(s1, alice, helpful):
    """reviews.follow_copy says "same authors and times"; ``bulk_create`` applies
    ``auto_now_add`` / ``auto_now``, so the copies must get their times back afterwards."""
    note = reviews.comment_add(user=alice, target=Target("s1", "main", 1), body="old note")
    long_ago = timezone.now() - timedelta(days=30)
    Annotation.objects.filter(pk=note.pk).update(created_at=long_ago, updated_at=long_ago)
    services.session_duplicate(session_id="s1", new_session_id="copy")
    copied = Annotation.objects.get(session_id="copy")
    assert (copied.created_at, copied.updated_at) == (long_ago, long_ago)


def test_follow_moves_are_audited(s1, alice, helpful):
    """Every change in the audit trail (issue 15): a rename moves annotations, a duplicate
    copies them, a delete deletes them; AuditEntry.action names "moved" and "copied"."""
    reviews.comment_add(user=alice, target=Target("s1", "alt", 2), body="x")
    before = AuditEntry.objects.count()
    services.branch_rename(session_id="s1", old="alt", new="lyon")
    services.session_duplicate(session_id="s1", new_session_id="copy")
    services.session_delete(session_id="copy")
    actions = list(AuditEntry.objects.order_by("id")[before:].values_list("action", "session_id"))
    assert ("moved", "s1") in actions
    assert ("copied", "copy") in actions
    assert ("deleted", "copy") in actions


def test_django_session_delete_branch_and_clear(s1, alice, helpful):
    _annotate_everything(alice, helpful)
    session = DjangoSession(session_id="s1")
    call(session, "delete_branch", "alt")
    assert _targets() == [("", 0), ("main", 0), ("main", 1), ("main", 2), ("main", 3)]
    call(session, "clear_session")
    assert not Annotation.objects.filter(session_id="s1").exists()


def _pop_turn(session: DjangoSession) -> list[Any]:
    """Pop items until the branch's newest user message is gone."""
    popped = []
    while True:
        item = call(session, "pop_item")
        popped.append(item)
        if item is None or (isinstance(item, dict) and item.get("role") == "user"):
            return popped


def test_pop_item_deletes_a_whole_turns_annotations_only(s1, alice, bob, helpful):
    """On PostgreSQL through forkview_pop (migration 0008), on SQLite through
    SessionWriter.remove_row: the popped turn's annotations go, no one else's."""
    _annotate_everything(alice, helpful)
    reviews.comment_add(user=bob, target=Target("s1", "main", 3), body="bob's")
    main = DjangoSession(session_id="s1")
    call(main, "switch_to_branch", "main")
    # The assistant reply alone: turn 3 still has its user message, annotations stay.
    assert call(main, "pop_item")["role"] == "assistant"
    assert ("main", 3) in _targets()
    popped = _pop_turn(main)
    assert popped[-1]["role"] == "user"
    assert ("main", 3) not in _targets()
    assert _targets() == [
        ("", 0),
        ("alt", 0),
        ("alt", 1),
        ("alt", 2),
        ("main", 0),
        ("main", 1),
        ("main", 2),
    ]
    # alt shares main's turn 1 rows; popping alt's own turn 2 leaves main's turns alone.
    alt = DjangoSession(session_id="s1")
    call(alt, "switch_to_branch", "alt")
    _pop_turn(alt)
    assert ("alt", 2) not in _targets()
    assert ("main", 2) in _targets() and ("alt", 1) in _targets()
    # Branch and session annotations are never a turn's.
    assert ("alt", 0) in _targets() and ("", 0) in _targets()


def test_pop_item_path_matches_the_vendor(s1):
    session = DjangoSession(session_id="s1")
    assert bool(session._sql.pop_function) == (connection.vendor == "postgresql")


# ---- A real run on the scripted model --------------------------------------------------------


def test_a_real_runner_conversation_scored_then_branch_deleted(alice, helpful, quality):
    """A conversation written by the SDK's Runner (scripted model): score its turns, fork it,
    score the fork, rename the fork, pop its last turn, delete it."""
    set_tracing_disabled(True)
    try:
        model = ScriptedModel(
            [
                ModelStep(output=[assistant_message("Paris is sunny.", item_id="m1")]),
                ModelStep(output=[assistant_message("Lyon is cloudy.", item_id="m2")]),
                ModelStep(output=[assistant_message("Nice is warm.", item_id="m3")]),
                ModelStep(output=[assistant_message("Lille is wet.", item_id="m4")]),
            ]
        )
        agent = Agent(name="forecaster", instructions="Be terse.", model=model)
        session = DjangoSession(session_id="run")

        async def converse() -> str:
            await Runner.run(agent, "Paris?", session=session)
            await Runner.run(agent, "Lyon?", session=session)
            branch = await session.create_branch_from_turn(2, "south")
            await Runner.run(agent, "Nice?", session=session)
            await Runner.run(agent, "Lille?", session=session)
            return branch

        branch = async_to_sync(converse)()
        model.assert_complete()
    finally:
        set_tracing_disabled(False)
    for turn in (1, 2):
        reviews.score_set(
            user=alice, target=Target("run", "main", turn), definition=helpful, value=1
        )
    for turn, value in ((1, 1), (2, 5), (3, 2)):
        reviews.score_set(
            user=alice, target=Target("run", branch, turn), definition=quality, value=value
        )
    with pytest.raises(ReviewError, match="has no turn 4"):
        reviews.score_set(user=alice, target=Target("run", branch, 4), definition=quality, value=1)
    services.branch_rename(session_id="run", old=branch, new="south-coast")
    assert _targets("run") == [
        ("main", 1),
        ("main", 2),
        ("south-coast", 1),
        ("south-coast", 2),
        ("south-coast", 3),
    ]
    fork = DjangoSession(session_id="run")
    call(fork, "switch_to_branch", "south-coast")
    _pop_turn(fork)
    assert _targets("run") == [("main", 1), ("main", 2), ("south-coast", 1), ("south-coast", 2)]
    call(fork, "delete_branch", "south-coast", True)
    assert _targets("run") == [("main", 1), ("main", 2)]
