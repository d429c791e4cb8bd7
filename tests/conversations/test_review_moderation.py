"""Moderation (conversations.reviews.annotation_delete): a moderator (view +
``conversations.delete_annotation``, or a superuser) deletes someone else's annotation, never
changes it; each such delete is audited in the same transaction (the moderator as actor, the
author in the before-state, the reason); authors keep their rights; anyone else is refused
with the author-only ``ReviewError``."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from conversations import permissions, reviews
from conversations.models import Annotation, AuditEntry, ScoreDefinition
from conversations.reviews import ReviewError, Target
from tests.conftest import grant
from tests.support.builders import Writer

pytestmark = pytest.mark.django_db

SID = "mod/s1"


@pytest.fixture
def session(db):
    Writer(SID).turns(2)
    ScoreDefinition.objects.create(name="helpful", kind="boolean")
    return SID


def _user(django_user_model, name: str, *codenames: str, **flags):
    user = django_user_model.objects.create_user(username=name, **flags)
    return grant(user, *codenames)


@pytest.fixture
def author(django_user_model):
    return _user(django_user_model, "author", "view_agentsession", "annotate")


@pytest.fixture
def annotator(django_user_model):
    return _user(django_user_model, "annotator", "view_agentsession", "annotate")


@pytest.fixture
def moderator(django_user_model):
    return _user(django_user_model, "moderator", "view_agentsession", permissions.MODERATE_CODENAME)


@pytest.fixture
def comment(session, author):
    return reviews.comment_add(user=author, target=Target(SID, "main", 1), body="Off topic.")


def _trail(annotation_id: int) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(object_id=annotation_id).order_by("id"))


def test_the_permission_needs_no_migration():
    # Django's own model permission on Annotation: it exists without a migration of ours.
    assert permissions.MODERATE == "conversations.delete_annotation"
    assert Permission.objects.filter(
        content_type__app_label="conversations", codename=permissions.MODERATE_CODENAME
    ).exists()
    call_command("makemigrations", "conversations", "--check", "--dry-run", verbosity=0)


def test_who_may_moderate(django_user_model, moderator, annotator):
    assert permissions.can_moderate(moderator)
    assert not permissions.can_moderate(annotator)
    assert not permissions.can_moderate(None)
    blind = _user(django_user_model, "blind", permissions.MODERATE_CODENAME)  # no view
    assert not permissions.can_moderate(blind)
    root = django_user_model.objects.create_superuser(username="root")
    assert permissions.can_moderate(root)
    asleep = _user(
        django_user_model,
        "asleep",
        "view_agentsession",
        permissions.MODERATE_CODENAME,
        is_active=False,
    )
    assert not permissions.can_moderate(asleep)


def test_a_moderator_deletes_someone_elses_comment_audited(comment, moderator):
    reviews.annotation_delete(user=moderator, annotation_id=comment.pk, reason=" spam ")
    assert not Annotation.objects.filter(pk=comment.pk).exists()
    created, deleted = _trail(comment.pk)
    assert created.action == "created"
    assert deleted.action == "moderated" and deleted.actor == moderator
    assert deleted.kind == "comment" and deleted.session_id == SID
    assert deleted.before["author"] == "author" and deleted.before["body"] == "Off topic."
    assert deleted.after == {"reason": "spam"}  # trimmed


def test_without_a_reason_the_after_state_says_so(comment, moderator):
    reviews.annotation_delete(user=moderator, annotation_id=comment.pk)
    assert _trail(comment.pk)[-1].after == {"reason": ""}


def test_a_superuser_moderates_scores_and_tags(session, author, django_user_model):
    root = django_user_model.objects.create_superuser(username="root")
    score = reviews.score_set(
        user=author, target=Target(SID, "main", 2), definition="helpful", value=1
    )
    tag = reviews.tag_add(user=author, target=Target(SID), tag="needs-context")
    for annotation in (score, tag):
        reviews.annotation_delete(user=root, annotation_id=annotation.pk, reason="cleanup")
        entry = _trail(annotation.pk)[-1]
        assert (entry.action, entry.actor) == ("moderated", root)
        assert entry.after == {"reason": "cleanup"}
    assert not Annotation.objects.exists()


def test_an_annotator_who_is_not_the_author_is_refused(comment, annotator):
    with pytest.raises(ReviewError) as refused:
        reviews.annotation_delete(user=annotator, annotation_id=comment.pk)
    assert str(refused.value) == reviews.NOT_AUTHOR
    assert Annotation.objects.filter(pk=comment.pk).exists()
    assert [e.action for e in _trail(comment.pk)] == ["created"]


def test_a_moderator_may_not_change_someone_elses(comment, moderator):
    with pytest.raises(ReviewError, match="Only the author"):
        reviews.annotation_update(user=moderator, annotation_id=comment.pk, body="Edited.")
    assert Annotation.objects.get(pk=comment.pk).body == "Off topic."


def test_authors_keep_their_rights(comment, author):
    reviews.annotation_update(user=author, annotation_id=comment.pk, body="Off topic, twice.")
    reviews.annotation_delete(user=author, annotation_id=comment.pk)
    entry = _trail(comment.pk)[-1]
    assert (entry.action, entry.actor, entry.after) == ("deleted", author, None)


def test_an_author_may_give_a_reason_too(comment, author):
    reviews.annotation_delete(user=author, annotation_id=comment.pk, reason="Duplicate.")
    entry = _trail(comment.pk)[-1]
    assert (entry.action, entry.after) == ("deleted", {"reason": "Duplicate."})


@pytest.mark.parametrize(
    "reason",
    ["x" * (reviews.MAX_REASON_CHARS + 1), "nul\x00byte"],
    ids=["too-long", "nul"],
)
def test_a_bad_reason_is_refused_before_anything_is_deleted(comment, moderator, reason):
    with pytest.raises(ReviewError) as refused:
        reviews.annotation_delete(user=moderator, annotation_id=comment.pk, reason=reason)
    assert refused.value.field == "reason"
    assert Annotation.objects.filter(pk=comment.pk).exists()
    assert len(_trail(comment.pk)) == 1


def test_the_longest_reason_is_kept_whole(comment, moderator):
    reason = "r" * reviews.MAX_REASON_CHARS
    reviews.annotation_delete(user=moderator, annotation_id=comment.pk, reason=reason)
    assert _trail(comment.pk)[-1].after == {"reason": reason}


def test_a_missing_annotation_is_annotation_missing(session, moderator):
    with pytest.raises(reviews.AnnotationMissing):
        reviews.annotation_delete(user=moderator, annotation_id=987654)


def test_the_delete_and_its_audit_entry_are_one_transaction(comment, moderator, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the audit write failed")

    monkeypatch.setattr(reviews, "_audit", broken)
    with pytest.raises(RuntimeError):
        reviews.annotation_delete(user=moderator, annotation_id=comment.pk, reason="spam")
    assert Annotation.objects.filter(pk=comment.pk).exists()  # rolled back with the audit
