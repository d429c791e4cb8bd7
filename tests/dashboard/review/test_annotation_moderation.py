"""Moderation on the session page and in the admin: a moderator (view +
``conversations.delete_annotation``, or a superuser) sees a delete control on other people's
comments and tags and deletes them (with an optional reason, audited); nobody else sees it or
may use the route (the same 403 as before); the admin deletes through ``reviews`` too (audited,
with the reason typed on its confirmation page). The page's queries stay constant."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from conversations import permissions, reviews
from conversations.models import Annotation, AuditEntry
from conversations.reviews import Target
from dashboard.links import session_url
from tests.conftest import grant
from tests.dashboard.review import test_annotate_views as _views

pytestmark = pytest.mark.django_db

# test_annotate_views' fixtures (its session, definitions and two sizes of annotated sessions).
session = _views.session
definitions = _views.definitions
sizes = _views.sizes
_count = _views._count

SID = "review/s1"  # test_annotate_views' session
MODERATE = 'data-action="moderate"'


def _user(django_user_model, name: str, *codenames: str, **flags):
    user = django_user_model.objects.create_user(username=name, password=f"{name}-pass-1", **flags)
    return grant(user, *codenames)


@pytest.fixture
def author(db, django_user_model):
    return _user(django_user_model, "author", "view_agentsession", "annotate")


@pytest.fixture
def annotator(db, django_user_model):
    return _user(django_user_model, "ann", "view_agentsession", "annotate")


@pytest.fixture
def moderator(db, django_user_model):
    """A moderator who also annotates (their own notes keep the author's controls)."""
    return _user(
        django_user_model,
        "mod",
        "view_agentsession",
        "annotate",
        permissions.MODERATE_CODENAME,
    )


@pytest.fixture
def notes(session, definitions, author, moderator):
    target = Target(SID, "main", 1)
    return {
        "theirs": reviews.comment_add(user=author, target=target, body="Buy *cheap* watches"),
        "tag": reviews.tag_add(user=author, target=target, tag="spam"),
        "mine": reviews.comment_add(user=moderator, target=target, body="Mine."),
    }


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _delete(client: Client, annotation_id: int, body=None):
    url = reverse("annotation_delete", kwargs={"session_id": SID, "annotation_id": annotation_id})
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def _comment_block(page: str, annotation_id: int) -> str:
    start = page.index(f'<li class="note-comment" data-note-id="{annotation_id}">')
    return page[start : page.index("</li>", start)]


# ---- The page --------------------------------------------------------------------------------


def test_a_moderator_sees_the_control_on_other_peoples_notes_only(notes, moderator):
    page = _client(moderator).get(session_url(SID, "main")).content.decode()
    assert 'data-can-moderate="true"' in page
    theirs = _comment_block(page, notes["theirs"].pk)
    assert MODERATE in theirs and 'data-author="author"' in theirs and "Delete (moderate)" in theirs
    assert 'data-action="edit"' not in theirs  # moderators delete, never edit
    mine = _comment_block(page, notes["mine"].pk)
    assert MODERATE not in mine and 'data-action="edit"' in mine
    assert f'data-action="moderate" data-id="{notes["tag"].pk}"' in page  # the tag chip's ×


@pytest.mark.parametrize("who", ["annotator", "viewer"])
def test_nobody_else_sees_it(notes, annotator, django_user_model, who):
    user = annotator if who == "annotator" else _user(django_user_model, "v", "view_agentsession")
    page = _client(user).get(session_url(SID, "main")).content.decode()
    assert 'data-can-moderate="false"' in page and MODERATE not in page
    assert "Buy <em>cheap</em> watches" in page  # the comment itself shows


def test_a_moderator_deletes_someone_elses_comment_with_a_reason(notes, moderator):
    response = _delete(_client(moderator), notes["theirs"].pk, {"reason": "spam"})
    assert response.status_code == 200
    data = response.json()
    assert data["ok"] is True and data["target"] == {"branch_id": "main", "turn": 1, "kind": "turn"}
    assert "cheap" not in data["html"]["bar"] and "Mine." in data["html"]["bar"]
    assert MODERATE in data["html"]["bar"]  # the tag is still someone else's
    assert not Annotation.objects.filter(pk=notes["theirs"].pk).exists()
    entry = AuditEntry.objects.get(object_id=notes["theirs"].pk, action="moderated")
    assert entry.actor == moderator and entry.before["author"] == "author"
    assert entry.after == {"reason": "spam"}


def test_a_moderator_removes_someone_elses_tag_without_a_reason(notes, moderator):
    assert _delete(_client(moderator), notes["tag"].pk).status_code == 200
    assert AuditEntry.objects.get(object_id=notes["tag"].pk, action="moderated").after == {
        "reason": ""
    }


def test_a_moderator_who_does_not_annotate_may_still_moderate(notes, django_user_model):
    only = _user(django_user_model, "only", "view_agentsession", permissions.MODERATE_CODENAME)
    page = _client(only).get(session_url(SID, "main")).content.decode()
    assert 'data-can-annotate="false"' in page and MODERATE in page
    assert _delete(_client(only), notes["theirs"].pk).status_code == 200


def test_an_annotator_gets_the_same_403_as_before(notes, annotator):
    response = _delete(_client(annotator), notes["theirs"].pk, {"reason": "mine now"})
    assert response.status_code == 403
    assert response.json() == {"error": reviews.NOT_AUTHOR, "field": None}
    assert Annotation.objects.filter(pk=notes["theirs"].pk).exists()
    assert not AuditEntry.objects.filter(action="moderated").exists()


def test_a_viewer_and_anonymous_are_refused(notes, django_user_model):
    viewer = _user(django_user_model, "v", "view_agentsession")
    assert _delete(_client(viewer), notes["theirs"].pk).status_code == 403
    anonymous = _delete(_client(), notes["theirs"].pk)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert Annotation.objects.filter(pk=notes["theirs"].pk).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x" * (reviews.MAX_REASON_CHARS + 1)}, "reason"),
        ({"reason": 5}, "reason"),
        ({"reason": "a\x00b"}, "reason"),
    ],
    ids=["too-long", "not-a-string", "nul"],
)
def test_bad_reasons_are_400_with_the_field(notes, moderator, body, field):
    response = _delete(_client(moderator), notes["theirs"].pk, body)
    assert response.status_code == 400 and response.json()["field"] == field
    assert Annotation.objects.filter(pk=notes["theirs"].pk).exists()


def test_an_unknown_annotation_is_404_for_a_moderator(notes, moderator):
    assert _delete(_client(moderator), 987654).status_code == 404


def test_the_moderator_page_runs_constant_queries(sizes, django_user_model):
    mod = _user(
        django_user_model, "m2", "view_agentsession", "annotate", permissions.MODERATE_CODENAME
    )
    client = _client(mod)
    small, large = (_count(client, session_url(sid, "main")) for sid in ("small", "large"))
    assert small == large
    # No query more than an annotator's page (the permission cache is already loaded).
    assert large == _count(_client(sizes), session_url("large", "main"))
    assert 'data-can-moderate="true"' in client.get(session_url("large", "main")).content.decode()


# ---- The admin -------------------------------------------------------------------------------


@pytest.fixture
def staff_moderator(db, django_user_model):
    return _user(
        django_user_model,
        "staffmod",
        "view_agentsession",
        permissions.MODERATE_CODENAME,
        "view_annotation",
        is_staff=True,
    )


def _admin_delete_url(annotation_id: int) -> str:
    return reverse("admin:conversations_annotation_delete", args=[annotation_id])


def test_admin_delete_asks_a_reason_and_audits(notes, staff_moderator):
    client = _client(staff_moderator)
    url = _admin_delete_url(notes["theirs"].pk)
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert 'name="reason"' in text and "by <strong>author</strong>" in text
    done = client.post(url, {"post": "yes", "reason": "off-topic advert"})
    assert done.status_code == 302
    assert not Annotation.objects.filter(pk=notes["theirs"].pk).exists()
    entry = AuditEntry.objects.get(object_id=notes["theirs"].pk, action="moderated")
    assert entry.actor == staff_moderator and entry.after == {"reason": "off-topic advert"}


def test_admin_refuses_a_bad_reason_without_deleting(notes, staff_moderator):
    client = _client(staff_moderator)
    url = _admin_delete_url(notes["theirs"].pk)
    response = client.post(url, {"post": "yes", "reason": "r" * 600})
    assert response.status_code == 302 and response["Location"] == url
    assert Annotation.objects.filter(pk=notes["theirs"].pk).exists()
    follow = client.get(url).content.decode()
    assert "The reason is longer than" in follow


def test_admin_staff_without_the_permission_may_not_delete(notes, django_user_model):
    staff = _user(
        django_user_model, "plainstaff", "view_agentsession", "view_annotation", is_staff=True
    )
    client = _client(staff)
    url = _admin_delete_url(notes["theirs"].pk)
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Annotation.objects.filter(pk=notes["theirs"].pk).exists()
    listing = client.get(reverse("admin:conversations_annotation_changelist")).content.decode()
    assert "delete_selected" not in listing


def test_admin_bulk_delete_goes_through_reviews(notes, django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password="root-pass-1")
    client = _client(root)
    ids = [notes["theirs"].pk, notes["tag"].pk]
    response = client.post(
        reverse("admin:conversations_annotation_changelist"),
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert not Annotation.objects.filter(pk__in=ids).exists()
    moderated = AuditEntry.objects.filter(action="moderated", object_id__in=ids)
    assert moderated.count() == 2 and {e.actor for e in moderated} == {root}
