"""``DELETE /api/v1/annotations/{id}/`` by a moderator (``conversations.delete_annotation`` +
view, or a superuser): someone else's annotation goes, with ``?reason=`` in the audit trail;
an annotator who is not the author still gets 403 (JSON), never a 500; a moderator still may
not PATCH someone else's."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client

from conversations import permissions, reviews
from conversations.models import Annotation, AuditEntry
from conversations.reviews import Target, comment_add, token_create
from tests.conftest import grant

from .conftest import API, SID, Caller

pytestmark = pytest.mark.django_db


@pytest.fixture
def moderator(db, django_user_model, tokens):
    user = grant(
        django_user_model.objects.create_user(username="mod"),
        "view_agentsession",
        permissions.MODERATE_CODENAME,
    )
    return Caller(Client(), token_create(user=user, name="moderation")[1]), user


@pytest.fixture
def note(trip, users):
    return comment_add(user=users["annotator"], target=Target(SID, "main", 1), body="Spam link.")


def test_a_moderator_deletes_someone_elses_with_a_reason(note, moderator):
    caller, user = moderator
    url = f"{API}/annotations/{note.pk}/?reason={quote('link spam')}"
    response = caller.send("DELETE", url)
    assert response.status_code == 204
    assert not Annotation.objects.filter(pk=note.pk).exists()
    entry = AuditEntry.objects.get(object_id=note.pk, action="moderated")
    assert entry.actor == user and entry.before["author"] == "annotator"
    assert entry.after == {"reason": "link spam"}
    again = caller.send("DELETE", f"{API}/annotations/{note.pk}/")
    assert again.status_code == 404 and again.json()["field"] == "annotation_id"


def test_staff_superusers_moderate(note, caller):
    assert caller("staff").send("DELETE", f"{API}/annotations/{note.pk}/").status_code == 204
    assert AuditEntry.objects.get(object_id=note.pk, action="moderated").after == {"reason": ""}


@pytest.mark.parametrize("kind", ["other_annotator", "viewer", "nobody"])
def test_everyone_else_gets_the_same_403(note, caller, kind):
    response = caller(kind).send("DELETE", f"{API}/annotations/{note.pk}/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
    assert Annotation.objects.filter(pk=note.pk).exists()


def test_anonymous_and_revoked_are_401(note, caller):
    for kind in ("anonymous", "revoked"):
        assert caller(kind).send("DELETE", f"{API}/annotations/{note.pk}/").status_code == 401
    assert Annotation.objects.filter(pk=note.pk).exists()


def test_a_moderator_may_not_change_someone_elses(note, moderator, caller, users):
    caller_mod, _ = moderator
    # A moderator without the annotate permission is refused as any non-annotator is...
    patch = caller_mod.send("PATCH", f"{API}/annotations/{note.pk}/", {"body": "x"})
    assert patch.status_code == 403
    # ...and with it (staff), PATCH stays the author's.
    staff = caller("staff").send("PATCH", f"{API}/annotations/{note.pk}/", {"body": "x"})
    assert staff.status_code == 403 and staff.json()["detail"] == reviews.NOT_AUTHOR
    assert Annotation.objects.get(pk=note.pk).body == "Spam link."


def test_bad_reasons_are_client_errors(note, moderator):
    caller, _ = moderator
    long = "r" * (reviews.MAX_REASON_CHARS + 1)
    too_long = caller.send("DELETE", f"{API}/annotations/{note.pk}/?reason={long}")
    assert too_long.status_code == 422
    nul = caller.send("DELETE", f"{API}/annotations/{note.pk}/?reason=a%00b")
    assert nul.status_code in (400, 422), nul.content
    assert nul["Content-Type"].startswith("application/json")
    assert Annotation.objects.filter(pk=note.pk).exists()


def test_authors_still_delete_their_own(note, caller):
    assert caller("annotator").send("DELETE", f"{API}/annotations/{note.pk}/").status_code == 204
    assert AuditEntry.objects.get(object_id=note.pk, action="deleted").after is None


def test_the_openapi_document_describes_the_reason(caller):
    doc = caller("viewer").get(f"{API}/openapi.json").json()
    delete = doc["paths"]["/api/v1/annotations/{annotation_id}/"]["delete"]
    assert [p["name"] for p in delete["parameters"]] == ["annotation_id", "reason"]
    assert "moderator" in delete["summary"]
